//! What each request leaves behind: a `request` span around its handling
//! (so every log line it causes names it), one log line when it is answered,
//! an `x-request-id` on the answer to quote in a report, and the metric
//! `vp_http_request_seconds{route, method, status}`: the time from arrival
//! to the answer's head (a download or an event stream goes on after that).
//! Routes are the API's own patterns (`route::ROUTES`), so no client can add
//! label values.

use std::time::Instant;

use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};

/// The route pattern `path` belongs to; anything else is `other`.
pub fn route(path: &str) -> &'static str {
    // the page's few files: a bounded set, named by their own paths
    if let Some(asset) = super::page::asset_path(path) {
        return asset;
    }
    super::route::find(path).map_or("other", |r| r.pattern)
}

fn method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The header a request id travels in, both ways.
const REQUEST_ID: &str = "x-request-id";

/// One request being timed.
pub struct Timing {
    started: Instant,
    route: &'static str,
    method: &'static str,
    id: HeaderValue,
    span: tracing::Span,
}

impl Timing {
    /// `headers` may carry the request id a proxy gave it; otherwise it
    /// gets one of its own.
    pub fn start(method_: &Method, path: &str, headers: &HeaderMap) -> Self {
        let id = headers
            .get(REQUEST_ID)
            .filter(|v| is_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        let route = route(path);
        let method = method(method_);
        // the route, not the path: paths carry ids and download tokens
        let span = tracing::info_span!(
            "request",
            id = id.to_str().unwrap_or_default(),
            method,
            route
        );
        Self {
            started: Instant::now(),
            route,
            method,
            id,
            span,
        }
    }

    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the answer's status and time, and names the request on it.
    pub fn answered(self, status: StatusCode, headers: &mut HeaderMap) {
        let elapsed = self.started.elapsed();
        metrics::histogram!(
            "vp_http_request_seconds",
            "route" => self.route,
            "method" => self.method,
            "status" => status.as_str().to_owned(),
        )
        .record(elapsed.as_secs_f64());
        let ms = elapsed.as_secs_f64() * 1000.0;
        let status = status.as_u16();
        // probes and scrapes come every few seconds: not worth a line each
        if status >= 500 {
            tracing::warn!(parent: &self.span, status, ms, "answered");
        } else if matches!(self.route, "/healthz" | "/readyz" | "/metrics") {
            tracing::debug!(parent: &self.span, status, ms, "answered");
        } else {
            tracing::info!(parent: &self.span, status, ms, "answered");
        }
        headers.insert(REQUEST_ID, self.id);
    }
}

/// 1 to 64 characters of `[A-Za-z0-9._-]`: safe to log and to send back.
fn is_request_id(raw: &[u8]) -> bool {
    (1..=64).contains(&raw.len())
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(&format!("{:016x}", rand::random::<u64>()))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_patterns_never_raw_paths() {
        let id = "6f1c2b9e-0a4b-4c1e-9d53-2f6a7b8c9d0e";
        assert_eq!(route("/"), "/");
        assert_eq!(route("/api/v1/me"), "/api/v1/me");
        assert_eq!(
            route(&format!("/api/v1/videos/{id}")),
            "/api/v1/videos/{id}"
        );
        assert_eq!(
            route(&format!("/api/v1/videos/{id}/frames.zip")),
            "/api/v1/videos/{id}/frames.zip"
        );
        assert_eq!(
            route("/api/v1/videos/x/events/"),
            "/api/v1/videos/{id}/events"
        );
        assert_eq!(route("/api/v1/events"), "/api/v1/events");
        assert_eq!(route("/assets/app.js"), "/assets/app.js");
        assert_eq!(route("/assets/other.js"), "other");
        assert_eq!(route("/wp-admin/setup.php"), "other");
    }

    #[test]
    fn request_ids_are_kept_when_safe_and_made_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("lb-42.a_b"));
        let kept = Timing::start(&Method::GET, "/healthz", &headers);
        assert_eq!(kept.id, "lb-42.a_b");
        headers.insert(REQUEST_ID, HeaderValue::from_static("a b\"x"));
        let made = Timing::start(&Method::GET, "/healthz", &headers);
        assert_eq!(made.id.len(), 16);
        assert!(is_request_id(made.id.as_bytes()));
        assert!(!is_request_id(&[b'a'; 65]));
        let mut answer = HeaderMap::new();
        made.answered(StatusCode::OK, &mut answer);
        assert_eq!(answer[REQUEST_ID].len(), 16);
        assert_eq!(route("/api/v1/videos/a/b/c"), "other");
    }
}
