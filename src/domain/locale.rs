//! The languages the page and the emails speak. An account keeps one
//! (`users.locale`); sign-up takes it from the request or, failing that,
//! from the browser's `Accept-Language`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidInput;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "pt-BR")]
    PtBr,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::En, Locale::PtBr];

    /// The BCP 47 tag, as stored and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::PtBr => "pt-BR",
        }
    }

    /// Exactly one of the tags of [`Self::ALL`] (as the API takes it).
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == raw)
            .ok_or_else(|| InvalidInput("locale must be \"en\" or \"pt-BR\"".into()))
    }

    /// A stored tag; the column's CHECK admits only ours, and an unknown
    /// one (a row a later version wrote) reads as English.
    pub fn from_db(raw: &str) -> Self {
        Self::parse(raw).unwrap_or_default()
    }

    /// What a language tag of a browser means to us: any Portuguese is
    /// Brazilian Portuguese (the only one we have), anything else none.
    fn of_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("pt") {
            Some(Locale::PtBr)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Locale::En)
        } else {
            None
        }
    }

    /// The language an `Accept-Language` header prefers among ours: the
    /// tag of highest q-value we speak (the first of equals), English when
    /// none. `*` and tags we do not speak choose nothing; q=0 refuses.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let mut best: Option<(u16, Locale)> = None;
        for item in header.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| parse_q(v.trim()))
                })
                .unwrap_or(Some(1000));
            let (Some(q), Some(locale)) = (q, Self::of_tag(tag)) else {
                continue;
            };
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, locale));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed,
/// which drops its item.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" if frac.bytes().all(|b| b == b'0') => 1000,
        _ => return None,
    };
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    Some(whole + thousandths)
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tags_are_exact() {
        assert_eq!(Locale::parse("en"), Ok(Locale::En));
        assert_eq!(Locale::parse("pt-BR"), Ok(Locale::PtBr));
        for bad in ["pt", "pt-br", "fr", "", "EN"] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Locale::from_db("pt-BR"), Locale::PtBr);
        assert_eq!(Locale::from_db("xx"), Locale::En);
    }

    #[test]
    fn accept_language_is_read_by_q_value() {
        let cases = [
            (None, Locale::En),
            (Some(""), Locale::En),
            (Some("pt-BR"), Locale::PtBr),
            (Some("pt"), Locale::PtBr),
            (Some("pt-PT,pt;q=0.9"), Locale::PtBr),
            (Some("fr-FR, de;q=0.8"), Locale::En),
            (Some("en-US,en;q=0.9,pt-BR;q=0.8"), Locale::En),
            // the order of the header does not matter, the q-values do
            (Some("en;q=0.5, pt-BR;q=0.8"), Locale::PtBr),
            (Some("fr, pt-BR;q=0.3, en;q=0.2"), Locale::PtBr),
            (Some("pt-BR;q=0, en;q=0.1"), Locale::En),
            (Some("pt-BR;q=0"), Locale::En),
            (Some("*, pt;q=0.5"), Locale::PtBr),
            // a malformed q drops its item only
            (Some("pt-BR;q=2, en;q=0.1"), Locale::En),
            (Some("pt-BR;q=abc"), Locale::En),
            (Some("PT-br ; Q=1.0"), Locale::PtBr),
            (Some("en;q=0.5,pt;q=0.500"), Locale::En),
        ];
        for (header, want) in cases {
            assert_eq!(Locale::from_accept_language(header), want, "{header:?}");
        }
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.8"), Some(800));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q(""), None);
    }
}
