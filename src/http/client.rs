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
    let trusted = !header.is_empty() && tuning.trusted_proxies.iter().any(|net| net.contains(peer));
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
