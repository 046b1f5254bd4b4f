//! The name a client gave its file, made fit for display. It is never part
//! of a path (media keys are ids), but it is shown in the API, in emails and
//! in `Content-Disposition`, so nothing in it may steer what shows it.

use std::fmt;

/// Longest name kept, in characters.
pub const MAX_CHARS: usize = 255;
const FALLBACK: &str = "video";

/// A file name without any directory part, control or invisible formatting
/// characters, surrounding blanks, or excess length; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filename(String);

/// Characters that change how the text around them is shown without being
/// seen themselves: bidirectional overrides (which can make `exe.mp4` look
/// like `mp4.exe`), zero-width characters, the byte-order mark.
pub(super) fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

impl Filename {
    /// Cleans what the client sent (`None` when it sent no name).
    pub fn clean(raw: Option<&str>) -> Self {
        let base = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
        let kept: String = base
            .chars()
            .filter(|c| !c.is_control() && !is_invisible_format(*c))
            .take(MAX_CHARS)
            .collect();
        let kept = kept.trim();
        if kept.is_empty() || kept.chars().all(|c| c == '.') {
            Self(FALLBACK.to_owned())
        } else {
            Self(kept.to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Filename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let clean = |raw: Option<&str>| Filename::clean(raw).0;
        assert_eq!(clean(Some("holiday.mp4")), "holiday.mp4");
        assert_eq!(clean(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean(Some("C:\\Users\\x\\clip.mov")), "clip.mov");
        assert_eq!(clean(Some("a\u{0}b\nc.mp4")), "abc.mp4");
        assert_eq!(clean(Some("evil\u{202E}4pm.exe")), "evil4pm.exe");
        assert_eq!(clean(Some("..")), "video");
        assert_eq!(clean(Some("...")), "video");
        assert_eq!(clean(None), "video");
        assert_eq!(clean(Some("  ")), "video");
        assert_eq!(clean(Some("été 🎬.mkv")), "été 🎬.mkv");
        assert_eq!(clean(Some(&"x".repeat(300))).chars().count(), MAX_CHARS);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever arrives, what is kept is a single displayable name.
        #[test]
        fn any_input_gives_a_safe_name(raw in any::<Option<String>>()) {
            let name = Filename::clean(raw.as_deref());
            let s = name.as_str();
            prop_assert!(!s.is_empty());
            prop_assert!(s.chars().count() <= MAX_CHARS);
            prop_assert!(!s.contains('/') && !s.contains('\\'));
            prop_assert!(!s.chars().any(|c| c.is_control() || is_invisible_format(c)));
            prop_assert!(s != "." && s != "..");
            prop_assert_eq!(s.trim(), s);
            // cleaning is idempotent: a stored name stays as it is
            prop_assert_eq!(Filename::clean(Some(s)), name.clone());
        }

        /// A plain name survives unchanged.
        #[test]
        fn plain_names_are_kept(raw in "[A-Za-z0-9][A-Za-z0-9 _.-]{0,60}[A-Za-z0-9]") {
            prop_assume!(!raw.chars().all(|c| c == '.'));
            let name = Filename::clean(Some(&raw));
            prop_assert_eq!(name.as_str(), raw.as_str());
        }
    }
}
