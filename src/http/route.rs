//! The API's routes, listed once in [`ROUTES`]: each path pattern with the
//! endpoints served there by method. Dispatch (`super::routes`), the
//! metric label of a request (`observe`) and the paths of the OpenAPI
//! document (`openapi`) all come from this list, so they cannot disagree.
//!
//! Patterns are the OpenAPI document's paths (`{id}` is one path segment);
//! a pattern is also the bounded label a request is counted under.

use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::{Filter, Rejection};

/// What a request is answered by, past its path and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
    Metrics,
    OpenApi,
    CreateUser,
    SignIn,
    SignOut,
    GetMe,
    PatchMe,
    ResendVerification,
    VerifyEmail,
    RequestReset,
    ResetPassword,
    Upload,
    ListVideos,
    ShowVideo,
    RenameVideo,
    DeleteVideo,
    ReprocessVideo,
    DeleteVideos,
    CreateArchive,
    DownloadArchive,
    ChangePassword,
    Download,
    ListFrames,
    Frame,
    Thumbnail,
    ContactSheet,
    VideoEvents,
    UserEvents,
}

impl Endpoint {
    /// Whether the OpenAPI document describes it: the document does not
    /// describe itself.
    #[cfg(test)]
    pub fn described(self) -> bool {
        self != Endpoint::OpenApi
    }

    /// Its path pattern; the handlers' OpenAPI annotations take it from here.
    pub fn pattern(self) -> &'static str {
        ROUTES
            .iter()
            .find(|r| r.serves.iter().any(|(_, e)| *e == self))
            .map_or("", |r| r.pattern)
    }
}

/// The requests for a route with an `{id}`, extracting it: what the
/// endpoints served there start from.
pub type WithId = BoxedFilter<(String,)>;

/// The requests for a route with an `{id}` and an `{index}`, extracting both.
pub type WithIdAndIndex = BoxedFilter<(String, String)>;

/// One path pattern and what it serves.
pub struct Route {
    /// The OpenAPI path, e.g. `/api/v1/videos/{id}`.
    pub pattern: &'static str,
    /// The endpoint for each method; any other method is a 405.
    pub serves: &'static [(Method, Endpoint)],
}

const fn route(pattern: &'static str, serves: &'static [(Method, Endpoint)]) -> Route {
    Route { pattern, serves }
}

/// Every route of the API. HEAD is listed where it is served; the document
/// describes it under GET.
pub static ROUTES: &[Route] = {
    use Endpoint::*;
    const GET: Method = Method::GET;
    const HEAD: Method = Method::HEAD;
    const POST: Method = Method::POST;
    const PATCH: Method = Method::PATCH;
    const DELETE: Method = Method::DELETE;
    &[
        route("/healthz", &[(GET, Health)]),
        route("/readyz", &[(GET, Ready)]),
        route("/metrics", &[(GET, Metrics)]),
        route("/api/v1/openapi.json", &[(GET, OpenApi)]),
        route("/api/v1/users", &[(POST, CreateUser)]),
        route("/api/v1/sessions", &[(POST, SignIn), (DELETE, SignOut)]),
        route("/api/v1/me", &[(GET, GetMe), (PATCH, PatchMe)]),
        route("/api/v1/me/password", &[(POST, ChangePassword)]),
        route(
            "/api/v1/me/verification-email",
            &[(POST, ResendVerification)],
        ),
        route("/api/v1/email-verifications", &[(POST, VerifyEmail)]),
        route("/api/v1/password-resets", &[(POST, RequestReset)]),
        route("/api/v1/password-resets/confirm", &[(POST, ResetPassword)]),
        route("/api/v1/videos", &[(POST, Upload), (GET, ListVideos)]),
        // before `{id}`, which their paths would match too
        route("/api/v1/videos/delete", &[(POST, DeleteVideos)]),
        route(
            "/api/v1/videos/archive",
            &[(POST, CreateArchive), (GET, DownloadArchive)],
        ),
        route(
            "/api/v1/videos/{id}",
            &[
                (GET, ShowVideo),
                (PATCH, RenameVideo),
                (DELETE, DeleteVideo),
            ],
        ),
        route("/api/v1/videos/{id}/reprocess", &[(POST, ReprocessVideo)]),
        route(
            "/api/v1/videos/{id}/frames.zip",
            &[(GET, Download), (HEAD, Download)],
        ),
        route("/api/v1/videos/{id}/frames", &[(GET, ListFrames)]),
        route("/api/v1/videos/{id}/frames/{index}", &[(GET, Frame)]),
        route(
            "/api/v1/videos/{id}/frames/{index}/thumbnail",
            &[(GET, Thumbnail)],
        ),
        route("/api/v1/videos/{id}/contact-sheet", &[(GET, ContactSheet)]),
        route("/api/v1/videos/{id}/events", &[(GET, VideoEvents)]),
        route("/api/v1/events", &[(GET, UserEvents)]),
    ]
};

/// The pattern's segments, `None` for a parameter.
fn pattern_segments(pattern: &str) -> impl Iterator<Item = Option<&str>> {
    pattern[1..]
        .split('/')
        .map(|s| (!s.starts_with('{')).then_some(s))
}

impl Route {
    /// The values of the pattern's parameters in `path`, if `path` is this
    /// route's. Matched as warp matches a path: segment by segment, raw
    /// (not percent-decoded), a parameter never empty, one trailing slash
    /// allowed.
    pub fn parameters<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut given = path.split('/');
        let mut parameters = Vec::new();
        for expected in pattern_segments(self.pattern) {
            let segment = given.next()?;
            match expected {
                Some(literal) if literal == segment => {}
                None if !segment.is_empty() => parameters.push(segment),
                _ => return None,
            }
        }
        given.next().is_none().then_some(parameters)
    }

    /// How many parameters the pattern has.
    fn arity(&self) -> usize {
        pattern_segments(self.pattern)
            .filter(Option::is_none)
            .count()
    }

    /// Requests for this route by `method`, extracting its two parameters
    /// (the `{id}` and the `{index}`).
    pub fn with_id_and_index(&'static self, method: Method) -> WithIdAndIndex {
        assert_eq!(self.arity(), 2, "{} takes two parameters", self.pattern);
        self.matching(method)
            .map(|mut parameters: Vec<String>| {
                let index = parameters.swap_remove(1);
                (parameters.swap_remove(0), index)
            })
            .untuple_one()
            .boxed()
    }

    /// Requests for this route by `method`, extracting nothing: for a
    /// pattern without parameters.
    pub fn exact(
        &'static self,
        method: Method,
    ) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
        assert_eq!(self.arity(), 0, "{} has parameters", self.pattern);
        self.matching(method).map(|_| ()).untuple_one()
    }

    /// Requests for this route by `method`, extracting its one parameter
    /// (the `{id}`).
    pub fn with_id(&'static self, method: Method) -> WithId {
        assert_eq!(self.arity(), 1, "{} takes one parameter", self.pattern);
        self.matching(method)
            .map(|mut parameters: Vec<String>| parameters.swap_remove(0))
            .boxed()
    }

    /// The path first, then the method, as `warp::path!(…).and(warp::get())`
    /// would: a known path with another method is a 405, an unknown one 404.
    fn matching(
        &'static self,
        method: Method,
    ) -> impl Filter<Extract = (Vec<String>,), Error = Rejection> + Clone + use<> {
        warp::path::full()
            .and_then(move |path: warp::path::FullPath| async move {
                self.parameters(path.as_str())
                    .map(|p| p.into_iter().map(str::to_owned).collect::<Vec<_>>())
                    .ok_or_else(warp::reject::not_found)
            })
            .and(method_filter(&method))
    }
}

/// warp's own filter for `method`, so that a refusal combines with the
/// other routes' as warp's does.
fn method_filter(method: &Method) -> BoxedFilter<()> {
    match *method {
        Method::GET => warp::get().boxed(),
        Method::HEAD => warp::head().boxed(),
        Method::POST => warp::post().boxed(),
        Method::PATCH => warp::patch().boxed(),
        Method::DELETE => warp::delete().boxed(),
        Method::PUT => warp::put().boxed(),
        Method::OPTIONS => warp::options().boxed(),
        _ => panic!("no route is served by {method}"),
    }
}

/// The route `path` belongs to, whatever the method.
pub fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.parameters(path).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path of `route`, its `{id}` filled in.
    fn example(route: &Route) -> String {
        route
            .pattern
            .replace("{id}", "6f1c2b9e-0a4b-4c1e-9d53-2f6a7b8c9d0e")
            .replace("{index}", "12")
    }

    #[test]
    fn every_route_is_found_by_its_own_paths_only() {
        for route in ROUTES {
            let path = example(route);
            for path in [path.clone(), format!("{path}/")] {
                let found = find(&path).map(|r| r.pattern);
                assert_eq!(found, Some(route.pattern), "{path}");
            }
            for other in [
                format!("{path}//"),
                format!("{path}/x"),
                format!("/x{path}"),
            ] {
                assert_ne!(
                    find(&other).map(|r| r.pattern),
                    Some(route.pattern),
                    "{other}"
                );
            }
            assert_eq!(route.parameters(&path).unwrap().len(), route.arity());
        }
        assert!(find("/api/v1/videos//events").is_none(), "an empty id");
        assert!(find("/api/v1").is_none());
        assert!(find("").is_none());
    }

    #[test]
    fn every_endpoint_is_served_once_and_its_pattern_is_its_route() {
        let mut seen = Vec::new();
        for route in ROUTES {
            assert!(route.pattern.starts_with('/'), "{}", route.pattern);
            for (method, endpoint) in route.serves {
                assert!(!seen.contains(&(method, endpoint)), "{method} {endpoint:?}");
                seen.push((method, endpoint));
                assert_eq!(endpoint.pattern(), route.pattern, "{endpoint:?}");
                // building the filter checks the pattern's parameters and the method
                match route.arity() {
                    0 => drop(route.exact(method.clone())),
                    1 => drop(route.with_id(method.clone())),
                    _ => drop(route.with_id_and_index(method.clone())),
                }
            }
        }
        let patterns: Vec<_> = ROUTES.iter().map(|r| r.pattern).collect();
        for (i, p) in patterns.iter().enumerate() {
            assert!(!patterns[i + 1..].contains(p), "{p} listed twice");
        }
    }
}
