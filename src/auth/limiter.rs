//! Sign-in throttling: after too many failures for one email, or from one
//! client address, within a window, further attempts are refused with a
//! retry time, whatever the password. Counts are per node: a cluster of N
//! nodes allows at most N times as many guesses, still far too few to matter
//! against passwords of 8 characters or more hashed with argon2id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct SignInLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `key` is locked out now.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let map = self.failures.lock().expect("limiter lock");
        match map.get(key) {
            Some((n, since))
                if *n >= self.max_failures && now.duration_since(*since) < self.window =>
            {
                Err(self.window - now.duration_since(*since))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str) {
        self.record_failure_at(key, Instant::now());
    }

    fn record_failure_at(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().expect("limiter lock");
        // bound memory: forget windows that have passed
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        let entry = map.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, key: &str) {
        self.failures.lock().expect("limiter lock").remove(key);
    }
}

/// The two limits a sign-in passes: its account, and its client's address
/// (which many accounts share behind one NAT, so it allows more).
pub struct SignInLimits {
    pub account: SignInLimiter,
    pub address: SignInLimiter,
}

impl SignInLimits {
    pub fn new(window: Duration) -> Self {
        Self {
            account: SignInLimiter::new(10, window),
            address: SignInLimiter::new(100, window),
        }
    }

    /// `Err(retry_after)` when either the account or the address is locked out.
    pub fn check(&self, account: &str, address: Option<&str>) -> Result<(), Duration> {
        let by_address = address.map_or(Ok(()), |a| self.address.check(a));
        match (self.account.check(account), by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err(a.err().max(b.err()).unwrap_or_default()),
        }
    }

    pub fn failed(&self, account: &str, address: Option<&str>) {
        self.account.record_failure(account);
        if let Some(a) = address {
            self.address.record_failure(a);
        }
    }

    /// A success clears its account's failures, not its address's: one good
    /// password must not reset guesses made at other accounts.
    pub fn succeeded(&self, account: &str) {
        self.account.record_success(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_failures_and_recovers_after_the_window() {
        let l = SignInLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
            l.record_failure_at("a", t0);
        }
        let wait = l.check_at("a", t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.check_at("b", t0).is_ok(), "other keys are not affected");
        assert!(l.check_at("a", t0 + Duration::from_secs(61)).is_ok());
        l.record_success("a");
        assert!(l.check_at("a", t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts_and_not_reset_by_a_success() {
        let limits = SignInLimits::new(Duration::from_secs(60));
        for i in 0..100 {
            assert!(limits.check(&format!("user{i}"), Some("10.0.0.1")).is_ok());
            limits.failed(&format!("user{i}"), Some("10.0.0.1"));
        }
        limits.succeeded("user0");
        assert!(limits.check("someone", Some("10.0.0.1")).is_err());
        assert!(limits.check("someone", Some("10.0.0.2")).is_ok());
        assert!(
            limits.check("user5", None).is_ok(),
            "one failure is not a lock-out"
        );
    }
}
