//! Sign-in throttling: after too many failed attempts for one account from
//! one client address, or from one client address at all, within a window,
//! further attempts from there are refused with a retry time, whatever the
//! password. The account alone is not a key: anyone could lock its owner
//! out; from another address the owner signs in as usual, while each
//! address an attacker uses gets its ten guesses.
//!
//! An attempt is counted when it starts, not when its password check ends:
//! guesses sent in parallel are counted as they arrive, so a burst cannot
//! slip past the limit while the first checks still run. A success gives its
//! count back. Counts are per node: a cluster of N nodes allows at most N
//! times as many guesses, still far too few against argon2id and passwords
//! of 8 characters or more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sign-ups (attempts, taken emails included) one client address may make
/// in an hour.
pub const SIGN_UPS_PER_HOUR: u32 = 30;

/// Password-reset requests one client address may make in an hour.
pub const RESETS_PER_HOUR: u32 = 20;

/// Keys kept before windows that have passed are forgotten.
const PRUNE_ABOVE: usize = 100_000;

pub struct SignInLimiter {
    max_attempts: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInLimiter {
    pub fn new(max_attempts: u32, window: Duration) -> Self {
        Self {
            max_attempts,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt for `key`, or `Err(retry_after)` when `key` is
    /// locked out (the refused attempt is not counted).
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        self.attempt_at(key, Instant::now())
    }

    fn attempt_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.counts.lock().expect("limiter lock");
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        let entry = map.entry(key.to_owned()).or_insert((0, now));
        let age = now.duration_since(entry.1);
        if age >= self.window {
            *entry = (0, now);
        } else if entry.0 >= self.max_attempts {
            return Err(self.window - age);
        }
        entry.0 += 1;
        Ok(())
    }

    /// Gives back the attempt of a sign-in that succeeded.
    pub fn succeeded(&self, key: &str) {
        let mut map = self.counts.lock().expect("limiter lock");
        if let Some(entry) = map.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

/// The two limits a sign-in passes: its account from its client's address,
/// and its client's address (which many people share behind one NAT, so it
/// allows more); and the sign-ups one client address may make.
pub struct SignInLimits {
    /// By account and address.
    pub account: SignInLimiter,
    pub address: SignInLimiter,
    pub sign_up: SignInLimiter,
    /// Password-reset requests, by address.
    pub reset: SignInLimiter,
}

/// The key an address is counted under: an IPv6 client usually holds a
/// whole /64, so that is one client.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// An account as counted from one address.
fn account_key(account: &str, address: Option<&str>) -> String {
    format!("{account} from {}", address.unwrap_or("anywhere"))
}

impl SignInLimits {
    pub fn new(window: Duration) -> Self {
        Self {
            account: SignInLimiter::new(10, window),
            address: SignInLimiter::new(100, window),
            sign_up: SignInLimiter::new(SIGN_UPS_PER_HOUR, Duration::from_secs(3600)),
            reset: SignInLimiter::new(RESETS_PER_HOUR, Duration::from_secs(3600)),
        }
    }

    /// Counts an attempt against both limits, or `Err(retry_after)` when
    /// either is reached.
    pub fn attempt(&self, account: &str, address: Option<&str>) -> Result<(), Duration> {
        if let Some(a) = address {
            self.address.attempt(a)?;
        }
        if let Err(wait) = self.account.attempt(&account_key(account, address)) {
            // not an attempt after all: the address keeps its count
            if let Some(a) = address {
                self.address.succeeded(a);
            }
            return Err(wait);
        }
        Ok(())
    }

    /// A success gives back its attempts; failures stay counted (one good
    /// password must not reset guesses made at other accounts).
    pub fn succeeded(&self, account: &str, address: Option<&str>) {
        self.account.succeeded(&account_key(account, address));
        if let Some(a) = address {
            self.address.succeeded(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_attempts_and_recovers_after_the_window() {
        let l = SignInLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.attempt_at("a", t0).is_ok());
        }
        let wait = l.attempt_at("a", t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.attempt_at("b", t0).is_ok(), "other keys are not affected");
        assert!(l.attempt_at("a", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_and_successes_give_theirs_back() {
        let l = SignInLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        // two checks still running: a third is refused at once
        assert!(l.attempt_at("a", t0).is_ok());
        assert!(l.attempt_at("a", t0).is_ok());
        assert!(l.attempt_at("a", t0).is_err());
        l.succeeded("a");
        assert!(l.attempt_at("a", t0).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts_and_not_reset_by_a_success() {
        let limits = SignInLimits::new(Duration::from_secs(60));
        for i in 0..100 {
            assert!(
                limits
                    .attempt(&format!("user{i}"), Some("10.0.0.1"))
                    .is_ok()
            );
        }
        limits.succeeded("user0", Some("10.0.0.1"));
        assert!(
            limits.attempt("user0", Some("10.0.0.1")).is_ok(),
            "its own back"
        );
        assert!(limits.attempt("someone", Some("10.0.0.1")).is_err());
        assert!(limits.attempt("someone", Some("10.0.0.2")).is_ok());
    }

    #[test]
    fn guesses_from_one_address_do_not_lock_the_owner_out_elsewhere() {
        let limits = SignInLimits::new(Duration::from_secs(60));
        for _ in 0..10 {
            assert!(limits.attempt("ann", Some("10.0.0.9")).is_ok());
        }
        assert!(limits.attempt("ann", Some("10.0.0.9")).is_err());
        assert!(limits.attempt("ann", Some("10.0.0.1")).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a = address_key("2001:db8:1:2::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, address_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(address_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
    }
}
