//! Who the client is, for limits that count per client. Behind a proxy (an
//! ingress) every connection comes from the proxy, so the proxy's header
//! names the client, but only a proxy the operator listed is believed: a
//! client talking to the node directly could put anything in that header.

use std::net::IpAddr;

use warp::http::HeaderMap;

use super::ClientAddr;
use crate::auth::address_key;
use crate::settings::Tuning;

/// The key a client is counted under: the address its trusted proxy put
/// last in `client_ip_header`, else the connection's peer.
pub fn address(peer: Option<ClientAddr>, headers: &HeaderMap, tuning: &Tuning) -> Option<String> {
    let peer = peer.map(|ClientAddr(addr)| addr.ip())?;
    let header = tuning.client_ip_header.trim();
    let trusted =
        !header.is_empty() && tuning.trusted_proxies.iter().any(|net| contains(net, peer));
    let forwarded = trusted
        .then(|| {
            headers
                .get_all(header)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|v| v.trim().parse::<IpAddr>().ok())
                .next_back()
        })
        .flatten();
    Some(address_key(forwarded.unwrap_or(peer)))
}

/// Whether `ip` is in `net`, written `address/prefix` or a single address.
/// A malformed entry contains nothing (settings validation reports it).
pub fn contains(net: &str, ip: IpAddr) -> bool {
    let Some((base, prefix)) = parse_net(net) else {
        return false;
    };
    match (base, ip) {
        (IpAddr::V4(b), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            u32::from(b) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(b), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            u128::from(b) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// `address/prefix` (or an address alone) as the base and prefix length.
pub fn parse_net(net: &str) -> Option<(IpAddr, u32)> {
    let (base, prefix) = match net.trim().split_once('/') {
        Some((b, p)) => (b.parse::<IpAddr>().ok()?, p.parse::<u32>().ok()?),
        None => {
            let b = net.trim().parse::<IpAddr>().ok()?;
            (b, if b.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if base.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((base, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains("10.0.0.0/8", ip("10.2.3.4")));
        assert!(!contains("10.0.0.0/8", ip("11.2.3.4")));
        assert!(contains("192.168.1.7", ip("192.168.1.7")));
        assert!(contains("0.0.0.0/0", ip("8.8.8.8")));
        assert!(contains("fd00::/8", ip("fd12::1")));
        assert!(!contains("fd00::/8", ip("10.0.0.1")));
        assert!(!contains("10.0.0.0/33", ip("10.0.0.1")));
        assert!(!contains("nonsense", ip("10.0.0.1")));
    }
}
