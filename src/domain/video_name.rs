//! The name a video is shown by, as its owner chose it (a rename). Like a
//! file name it is shown in the page, in emails and as the name of its zip
//! in an archive, so it carries nothing that steers what shows it.

use std::fmt;

use super::InvalidInput;
use super::filename::{MAX_CHARS, is_invisible_format};

/// 1 to 255 characters, no control or invisible formatting characters,
/// no surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoName(String);

impl VideoName {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = raw.trim();
        let bad = |why: &str| Err(InvalidInput(format!("name {why}")));
        if name.is_empty() {
            return bad("must not be empty");
        }
        if name.chars().count() > MAX_CHARS {
            return bad(&format!("must be at most {MAX_CHARS} characters"));
        }
        if name
            .chars()
            .any(|c| c.is_control() || is_invisible_format(c))
        {
            return bad("must not hold control or invisible characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VideoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(VideoName::parse("  Holiday ").unwrap().as_str(), "Holiday");
        assert!(VideoName::parse("ação 🎬").is_ok());
        for bad in ["", "   ", "a\u{202E}b", "line\nbreak", &"x".repeat(256)] {
            assert!(VideoName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            VideoName::parse(&"é".repeat(255)).is_ok(),
            "characters, not bytes"
        );
    }
}
