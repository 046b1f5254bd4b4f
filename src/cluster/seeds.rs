//! Which seed addresses to dial now: resolution and per-address back-off,
//! kept apart from the actor so the rules are testable without a network.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The first retry waits this long; each failure doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Dial attempts per address, with exponential back-off after failures.
#[derive(Debug, Default)]
pub struct Dialer {
    next: HashMap<SocketAddr, (Instant, u32)>,
}

impl Dialer {
    /// The addresses of `candidates` to dial at `now`: not connected, not
    /// ourselves, and not waiting out a back-off.
    pub fn due(
        &self,
        candidates: &[SocketAddr],
        connected: &HashSet<SocketAddr>,
        own: &HashSet<SocketAddr>,
        now: Instant,
    ) -> Vec<SocketAddr> {
        candidates
            .iter()
            .filter(|a| !connected.contains(a) && !own.contains(a))
            .filter(|a| self.next.get(a).is_none_or(|(at, _)| now >= *at))
            .copied()
            .collect()
    }

    /// A dial was started or failed: wait before the next one, longer after
    /// each failure. A dial that connects but does not become a peer (a
    /// wrong cookie) counts as a failure at the next round.
    pub fn attempted(&mut self, addr: SocketAddr, now: Instant) {
        let failures = self.next.get(&addr).map_or(0, |(_, n)| *n);
        let wait = FIRST_RETRY
            .saturating_mul(1 << failures.min(6))
            .min(MAX_RETRY);
        self.next.insert(addr, (now + wait, failures + 1));
    }

    /// The address is a live peer: the next loss is retried at once.
    pub fn connected(&mut self, addr: SocketAddr) {
        self.next.remove(&addr);
    }
}

/// `host:port` → every address it resolves to (a headless Service name
/// gives one per pod). Unresolvable seeds give nothing this round.
pub async fn resolve(seed: &str) -> Vec<SocketAddr> {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(seed)).await {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => Vec::new(),
    }
}

/// Splits `VP_CLUSTER_SEEDS`.
pub fn parse_seeds(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn dials_only_what_is_missing_and_backs_off() {
        let mut d = Dialer::default();
        let t0 = Instant::now();
        let candidates = [addr(1), addr(2), addr(3)];
        let connected = HashSet::from([addr(2)]);
        let own = HashSet::from([addr(3)]);
        assert_eq!(d.due(&candidates, &connected, &own, t0), vec![addr(1)]);

        d.attempted(addr(1), t0);
        assert!(d.due(&candidates, &connected, &own, t0).is_empty());
        assert_eq!(
            d.due(&candidates, &connected, &own, t0 + FIRST_RETRY),
            vec![addr(1)]
        );
        d.attempted(addr(1), t0 + FIRST_RETRY);
        // the second wait is twice the first
        assert!(
            d.due(&candidates, &connected, &own, t0 + FIRST_RETRY * 2)
                .is_empty()
        );
        assert_eq!(
            d.due(&candidates, &connected, &own, t0 + FIRST_RETRY * 3),
            vec![addr(1)]
        );
        for _ in 0..20 {
            d.attempted(addr(1), t0);
        }
        assert!(
            d.due(
                &candidates,
                &connected,
                &own,
                t0 + MAX_RETRY - Duration::from_millis(1)
            )
            .is_empty()
        );
        assert_eq!(
            d.due(&candidates, &connected, &own, t0 + MAX_RETRY),
            vec![addr(1)]
        );
        d.connected(addr(1));
        assert_eq!(
            d.due(&candidates, &HashSet::new(), &own, t0),
            vec![addr(1), addr(2)]
        );
    }

    #[test]
    fn seeds_are_split_and_trimmed() {
        assert_eq!(parse_seeds(Some(" a:1, b:2 ,,")), vec!["a:1", "b:2"]);
        assert!(parse_seeds(None).is_empty());
    }

    #[tokio::test]
    async fn a_name_resolves_to_all_its_addresses() {
        let addrs = resolve("localhost:4697").await;
        assert!(
            addrs
                .iter()
                .any(|a| a.ip().is_loopback() && a.port() == 4697),
            "{addrs:?}"
        );
        assert!(resolve("no-such-host.invalid:1").await.is_empty());
    }
}
