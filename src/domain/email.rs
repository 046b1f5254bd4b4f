use std::fmt;

use super::InvalidInput;

/// A syntactically valid address, lower-cased so that sign-in and the
/// uniqueness check do not depend on how the user typed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let s = raw.trim().to_lowercase();
        let bad = || {
            // echo what was sent only when it is short and printable
            let shown = raw.trim();
            if shown.len() <= 254 && !shown.chars().any(char::is_control) {
                InvalidInput(format!("`{shown}` is not a valid email address"))
            } else {
                InvalidInput("that is not a valid email address".into())
            }
        };
        if s.is_empty() || s.len() > 254 {
            return Err(bad());
        }
        // lettre's parser implements the RFC 5322 address grammar we send to.
        let address: lettre::Address = s.parse().map_err(|_| bad())?;
        if !address.domain().contains('.') && address.domain() != "localhost" {
            return Err(bad());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an email read back from the database, which only holds parsed values.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        assert!(Email::parse("ops@localhost").is_ok());
    }

    #[test]
    fn refuses_garbage() {
        for raw in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "a b@example.com",
            "ann@nodot",
            "a@b@c.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(260))).is_err());
    }
}
