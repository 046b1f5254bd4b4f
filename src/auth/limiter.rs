//! Sign-in throttling: after too many failures for one email within a window,
//! further attempts are refused with a retry time, whatever the password.

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
}
