//! Request metrics: `vp_http_request_seconds{route, method, status}`, the time
//! from a request's arrival to its answer's head (a download or an event
//! stream goes on after that). Routes are the API's own patterns, so no
//! client can add label values.

use std::time::Instant;

use warp::http::{Method, StatusCode};

/// The route pattern `path` belongs to; anything else is `other`.
pub fn route(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        [] | [""] => "/",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        // the page's few files: a bounded set, named by their own paths
        ["assets", "app.js"] => "/assets/app.js",
        ["assets", "app.css"] => "/assets/app.css",
        ["assets", "icon.svg"] => "/assets/icon.svg",
        ["api", "v1", "events"] => "/api/v1/events",
        ["api", "v1", "openapi.json"] => "/api/v1/openapi.json",
        ["api", "v1", "users"] => "/api/v1/users",
        ["api", "v1", "sessions"] => "/api/v1/sessions",
        ["api", "v1", "me"] => "/api/v1/me",
        ["api", "v1", "videos"] => "/api/v1/videos",
        ["api", "v1", "videos", _] => "/api/v1/videos/{id}",
        ["api", "v1", "videos", _, "frames.zip"] => "/api/v1/videos/{id}/frames.zip",
        ["api", "v1", "videos", _, "events"] => "/api/v1/videos/{id}/events",
        _ => "other",
    }
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

/// One request being timed.
pub struct Timing {
    started: Instant,
    route: &'static str,
    method: &'static str,
}

impl Timing {
    pub fn start(method_: &Method, path: &str) -> Self {
        Self {
            started: Instant::now(),
            route: route(path),
            method: method(method_),
        }
    }

    pub fn answered(self, status: StatusCode) {
        metrics::histogram!(
            "vp_http_request_seconds",
            "route" => self.route,
            "method" => self.method,
            "status" => status.as_str().to_owned(),
        )
        .record(self.started.elapsed().as_secs_f64());
    }
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
        assert_eq!(route("/api/v1/videos/a/b/c"), "other");
    }
}
