//! Sending one webhook event: a JSON POST to the user's URL, signed with
//! HMAC-SHA256 under the user's webhook key so the receiver can tell it came
//! from us and was not replayed later.
//!
//! Headers: `X-VP-Event` (the type), `X-VP-Delivery` (the outbox row id, the
//! same on every retry), `X-VP-Timestamp` (Unix seconds) and
//! `X-VP-Signature: sha256=<hex>` over `"{timestamp}.{body}"`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::outbox::Pending;

/// A receiver gets this long to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    internal_allowed: bool,
}

/// Addresses a webhook may not reach unless the operator allows it: a
/// user's URL must not make the node call into its own pod (sidecars, the
/// node's own API) or network (other pods, the cloud's metadata service).
/// Only global unicast addresses are outside.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                // carrier-grade NAT 100.64/10, IETF 192.0.0/24,
                // benchmarking 198.18/15, reserved 240/4
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xfe) == 18)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            // forms that carry an IPv4 address reach that address
            if let Some(v4) = embedded_v4(v6) {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let first = s[0];
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // local-use NAT64 (64:ff9b:1::/48): a translator of the
                // network's own, the IPv4 address at no fixed place
                || (s[0], s[1], s[2]) == (0x64, 0xff9b, 1)
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local
        }
    }
}

/// The IPv4 address inside an IPv4-mapped, IPv4-translated
/// (::ffff:0:0/96), IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4
/// (2002::/16) address.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let low = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if !(hi == 0 && lo <= 1) => Some(low(hi, lo)),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// Name resolution that drops internal addresses, so a host name cannot
/// lead a webhook inside either (also when its DNS answer changes later).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // a name that does not resolve and one that resolves only
            // inside fail alike: the error a user reads must not tell
            // which names exist inside the node's network
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(|addrs| addrs.filter(|a| !is_internal(a.ip())).collect())
                .unwrap_or_default();
            if found.is_empty() {
                return Err(no_public_address(&host).into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn no_public_address(host: &str) -> String {
    format!("{host} has no public address a webhook may reach")
}

impl WebhookSender {
    /// `internal_allowed`: the operator lets webhooks reach private networks.
    pub fn new(internal_allowed: bool) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        if !internal_allowed {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            // a proxy would resolve the host itself, past the filter above
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // a redirect could point the signed body anywhere
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("videoproject/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            internal_allowed,
        })
    }

    /// Delivered means the receiver answered 2xx.
    pub async fn send(&self, pending: &Pending) -> Result<(), String> {
        let secret = pending
            .secret
            .as_deref()
            .ok_or("the webhook was removed (no signing key)")?;
        // an address in the URL is not resolved, so it is checked here
        let literal = url::Url::parse(&pending.recipient)
            .ok()
            .and_then(|u| match u.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            });
        if !self.internal_allowed && literal.is_some_and(is_internal) {
            return Err(
                "the webhook's address is internal (loopback or a private network), which webhooks may not reach"
                    .into(),
            );
        }
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
    fn internal_addresses_are_recognised() {
        for internal in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "127.0.0.1",
            "::1",
            "64:ff9b::a9fe:a9fe",
            "::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fec0::1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::ffff:0:a00:1",
            "::ffff:0:7f00:1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::5db8:d822",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "2606:4700::1111",
            "172.32.0.1",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn an_internal_name_fails_like_one_that_does_not_resolve() {
        use reqwest::dns::Resolve;
        let error = |host: &'static str| async move {
            match PublicOnly.resolve(host.parse().unwrap()).await {
                Ok(_) => panic!("{host} resolved"),
                Err(e) => e.to_string().replace(host, "HOST"),
            }
        };
        assert_eq!(
            error("localhost").await,
            error("no-such-host.invalid").await
        );
    }

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
