//! What every answer carries, whatever route made it: security headers, and
//! CORS for the origins an operator allowed (none by default, so browsers
//! keep other sites' pages away from the API). Applied around the routes,
//! so no route can forget them.

use std::net::SocketAddr;
use std::sync::Arc;

use warp::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use warp::http::{Method, Request, StatusCode};

/// The address the connection came from, put on each request for the routes.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Headers set on every answer unless the route set its own.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    // the API serves no page: nothing may load, frame or submit from an answer
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),
];

const ALLOWED_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, range";
const EXPOSED_HEADERS: &str =
    "location, retry-after, content-disposition, content-range, x-request-id";

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Arc<Vec<String>>,
}

impl Cors {
    pub fn new(origins: &[String]) -> Self {
        Self {
            origins: Arc::new(
                origins
                    .iter()
                    .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        }
    }

    /// The request's `Origin` when it is allowed.
    pub fn origin_of<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&text).then(|| origin.clone())
    }

    /// The answer to a CORS preflight from an allowed origin; other requests
    /// go to the routes.
    pub fn preflight<B>(&self, req: &Request<B>) -> Option<warp::reply::Response> {
        if req.method() != Method::OPTIONS
            || !req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let origin = self.origin_of(req)?;
        let mut response = warp::reply::Response::default();
        *response.status_mut() = StatusCode::NO_CONTENT;
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        Some(response)
    }

    /// CORS headers for the answer to `origin` (when it was allowed).
    pub fn decorate(origin: Option<HeaderValue>, headers: &mut HeaderMap) {
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

/// Adds the security headers a route did not set itself; API answers are
/// never stored by a browser or a proxy.
pub fn secure(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(HeaderName::from_static(name))
            .or_insert(HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, origin: Option<&str>, preflight: bool) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/api/v1/me");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        if preflight {
            b = b.header("access-control-request-method", "GET");
        }
        b.body(()).unwrap()
    }

    #[test]
    fn closed_unless_configured() {
        let closed = Cors::default();
        let req = request(Method::OPTIONS, Some("https://app.example"), true);
        assert!(closed.preflight(&req).is_none());
        assert!(closed.origin_of(&req).is_none());
    }

    #[test]
    fn allowed_origins_get_preflights_and_headers() {
        let cors = Cors::new(&["https://App.example/".to_owned()]);
        let ok = request(Method::OPTIONS, Some("https://app.example"), true);
        let answer = cors.preflight(&ok).unwrap();
        assert_eq!(answer.status(), 204);
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            "https://app.example"
        );
        let other = request(Method::OPTIONS, Some("https://evil.example"), true);
        assert!(cors.preflight(&other).is_none());
        let get = request(Method::GET, Some("https://app.example"), false);
        assert!(cors.preflight(&get).is_none(), "not a preflight");
        let mut headers = HeaderMap::new();
        Cors::decorate(cors.origin_of(&get), &mut headers);
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example"
        );
    }

    #[test]
    fn security_headers_do_not_override_a_route() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cache-control",
            HeaderValue::from_static("private, max-age=60"),
        );
        secure(&mut headers);
        assert_eq!(headers["cache-control"], "private, max-age=60");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}
