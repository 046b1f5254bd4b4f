//! The secret of a link sent by email (verify an address, reset a
//! password): 32 random bytes, shown once in the email; only its digest is
//! stored, so the table alone opens nothing.

use sha2::{Digest, Sha256};

/// A link's secret as it travels in the URL: 64 hex characters.
pub struct LinkSecret(String);

impl LinkSecret {
    const HEX_CHARS: usize = 64;

    pub fn new() -> Self {
        Self(hex::encode(rand::random::<[u8; 32]>()))
    }

    /// A secret as a client presents it; anything else opens nothing.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (raw.len() == Self::HEX_CHARS && raw.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(raw.to_ascii_lowercase()))
    }

    /// What is stored and looked up.
    pub fn digest(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Default for LinkSecret {
    fn default() -> Self {
        Self::new()
    }
}

/// Never prints the secret.
impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_survives_its_trip_through_a_url_and_nothing_else_parses() {
        let s = LinkSecret::new();
        let back = LinkSecret::parse(&s.expose().to_ascii_uppercase()).unwrap();
        assert_eq!(back.digest(), s.digest());
        assert_ne!(LinkSecret::new().digest(), s.digest());
        assert!(LinkSecret::parse("").is_none());
        assert!(LinkSecret::parse(&s.expose()[1..]).is_none());
        assert!(LinkSecret::parse(&format!("{}0", s.expose())).is_none());
        assert!(LinkSecret::parse(&"g".repeat(64)).is_none());
    }
}
