//! Sending one webhook event: a JSON POST to the user's URL, signed with
//! HMAC-SHA256 under the user's webhook key so the receiver can tell it came
//! from us and was not replayed later.
//!
//! Headers: `X-VP-Event` (the type), `X-VP-Delivery` (the outbox row id, the
//! same on every retry), `X-VP-Timestamp` (Unix seconds) and
//! `X-VP-Signature: sha256=<hex>` over `"{timestamp}.{body}"`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::outbox::Pending;

/// A receiver gets this long to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
}

impl WebhookSender {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // a redirect could point the signed body anywhere
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("videoproject/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// Delivered means the receiver answered 2xx.
    pub async fn send(&self, pending: &Pending) -> Result<(), String> {
        let secret = pending
            .secret
            .as_deref()
            .ok_or("the webhook was removed (no signing key)")?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let answer = self
            .client
            .post(&pending.recipient)
            .header("content-type", "application/json")
            .header("x-vp-event", &pending.subject)
            .header("x-vp-delivery", pending.id.to_string())
            .header("x-vp-timestamp", timestamp.to_string())
            .header(
                "x-vp-signature",
                signature(secret, timestamp, pending.body.as_bytes()),
            )
            .body(pending.body.clone())
            .send()
            .await
            .map_err(describe)?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {}", status.as_u16()))
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh webhook signing key: 32 random bytes.
pub fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The error and its causes, without the URL reqwest puts in it (it may
/// carry a token).
fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = what.to_owned();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // computed independently: Python's hmac.new(key, b"1700000000.{...}", sha256)
        let body = br#"{"type":"video.failed"}"#;
        assert_eq!(
            signature("whsec_test", 1_700_000_000, body),
            "sha256=82e43704b43f8b84e3c47ea061714d7663a7af526d92e7e1f9d59a5e81df5dc0"
        );
        // the timestamp is signed too: an old body cannot be replayed as new
        assert_ne!(
            signature("whsec_test", 1_700_000_001, body),
            signature("whsec_test", 1_700_000_000, body)
        );
    }

    #[test]
    fn secrets_are_fresh_and_long() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
    }
}
