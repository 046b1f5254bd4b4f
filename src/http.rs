//! The HTTP API (v1). Routes are thin: parse the request into domain types,
//! call the module that owns the work, shape the answer. Every error goes
//! through `error::recover`. Which route answers a request is `route`'s
//! table: dispatch here, the metric labels and the OpenAPI paths follow it.

mod accounts;
mod archive;
mod body_end;
mod client;
mod connections;
mod download;
mod email_links;
pub mod error;
mod events;
pub use events::Feeds;
mod frames;
mod hygiene;
mod observe;
mod openapi;
pub use hygiene::ClientAddr;
mod ops;
mod page;
mod rendered;
mod route;
mod server;
pub mod starting;
pub use rendered::Rendered;
pub use server::serve;
mod upload;
mod videos;

use std::sync::Arc;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::{Filter, Rejection, Reply};

use route::Endpoint;

use crate::auth::{Credentials, Principal, SessionTokens, SharedAuthenticator, SignInLimits};
use crate::settings::Settings;
use crate::storage::MediaStore;
pub use error::ApiError;

/// Entry points for the fuzz targets (`fuzz/`), built only by `cargo fuzz`.
#[cfg(fuzzing)]
pub mod fuzzing {
    /// Reads `body` as an upload's form (boundary `XBOUNDARY`); the parts
    /// read, or the status of the refusal.
    pub async fn read_upload_form(body: &[u8]) -> Result<usize, u16> {
        super::upload::read_form_for_fuzzing(body).await
    }
}

/// What the routes share.
pub struct AppState {
    pub pool: Pool,
    pub store: MediaStore,
    pub sessions: Arc<SessionTokens>,
    pub authenticator: SharedAuthenticator,
    pub limiter: SignInLimits,
    pub settings: Arc<Settings>,
    /// Where verification and reset links point, how long they last.
    pub links: crate::accounts::LinkPolicy,
    /// This node's actors (readiness asks whether they run; account emails
    /// wake the notifier).
    pub actors: crate::supervisor::Actors,
    pub node: String,
    pub metrics: PrometheusHandle,
    /// Changes heard from the database: this node's own writes are recorded
    /// here too, so its next read sees them.
    pub changes: Arc<crate::db::changes::Changes>,
    /// The users' pages of videos, kept while unchanged.
    pub pages: crate::db::pages::Pages,
    /// List answers, kept while their page is unchanged and their links young.
    pub rendered: Rendered,
    /// The users' live event streams, one feed per user.
    pub feeds: Arc<events::Feeds>,
    /// The cluster as this node sees it; None when running alone.
    pub cluster: Option<crate::cluster::ClusterView>,
    /// Admits, stores, probes and queues uploads (`http::upload` parses and answers).
    pub uploads: crate::upload::Uploads,
}

pub type State = Arc<AppState>;

/// Largest JSON body any route accepts.
const JSON_LIMIT: u64 = 64 * 1024;

pub fn routes(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    let api = route::ROUTES
        .iter()
        .flat_map(|route| {
            route
                .serves
                .iter()
                .map(|(method, endpoint)| dispatch(route, method.clone(), *endpoint, &state))
        })
        .reduce(|one, other| one.or(other).unify().boxed())
        .expect("the API has routes");
    api.or(page::routes()).recover(error::recover)
}

/// The filter answering `endpoint` at `route` for `method`.
fn dispatch(
    route: &'static route::Route,
    method: Method,
    endpoint: Endpoint,
    state: &State,
) -> BoxedFilter<(warp::reply::Response,)> {
    use Endpoint::*;
    let s = state.clone();
    let at = || route.exact(method.clone());
    let with_id = || route.with_id(method.clone());
    let with_index = || route.with_id_and_index(method.clone());
    match endpoint {
        Health => answer(at().and(ops::health_route())),
        Ready => answer(at().and(ops::ready_route(s))),
        Metrics => answer(at().and(ops::metrics_route(s))),
        OpenApi => answer(at().and(openapi::openapi_route())),
        CreateUser => answer(at().and(accounts::create_user_route(s))),
        SignIn => answer(at().and(accounts::sign_in_route(s))),
        SignOut => answer(at().and(accounts::sign_out_route(s))),
        GetMe => answer(at().and(accounts::get_me_route(s))),
        PatchMe => answer(at().and(accounts::patch_me_route(s))),
        ResendVerification => answer(at().and(email_links::resend_verification_route(s))),
        VerifyEmail => answer(at().and(email_links::verify_email_route(s))),
        RequestReset => answer(at().and(email_links::request_reset_route(s))),
        ResetPassword => answer(at().and(email_links::reset_password_route(s))),
        Upload => answer(at().and(upload::upload_route(s))),
        ListVideos => answer(at().and(videos::list_route(s))),
        ShowVideo => answer(videos::show_route(with_id(), s)),
        RenameVideo => answer(videos::rename_route(with_id(), s)),
        DeleteVideo => answer(videos::delete_route(with_id(), s)),
        ReprocessVideo => answer(videos::reprocess_route(with_id(), s)),
        DeleteVideos => answer(at().and(videos::delete_many_route(s))),
        CreateArchive => answer(at().and(archive::create_route(s))),
        DownloadArchive => answer(at().and(archive::download_route(s))),
        ChangePassword => answer(at().and(accounts::change_password_route(s))),
        Download => answer(download::download_route(with_id(), s)),
        ListFrames => answer(frames::list_route(with_id(), s)),
        Frame => answer(frames::frame_route(with_index(), s)),
        Thumbnail => answer(frames::thumbnail_route(with_index(), s)),
        ContactSheet => answer(frames::sheet_route(with_id(), s)),
        VideoEvents => answer(events::video_events_route(with_id(), s)),
        UserEvents => answer(at().and(events::user_events_route(s))),
    }
}

fn answer(
    filter: impl Filter<Extract = (impl Reply + 'static,), Error = Rejection>
    + Clone
    + Send
    + Sync
    + 'static,
) -> BoxedFilter<(warp::reply::Response,)> {
    filter.map(Reply::into_response).boxed()
}

/// Whether an `If-None-Match` header names `etag` (quoted): the client has
/// this version. Weak tags compare equal, as RFC 9110 asks of this header.
fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|tags| {
        tags.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
    })
}

fn with_state(
    state: State,
) -> impl Filter<Extract = (State,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The state and the authenticated caller: what most endpoints start from.
fn signed_in(state: State) -> impl Filter<Extract = (State, Principal), Error = Rejection> + Clone {
    with_state(state.clone()).and(authenticated(state))
}

/// The authenticated caller, or a 401 (503 when the check cannot be made).
fn authenticated(state: State) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    authentication(state).and_then(|caller: Result<Principal, ApiError>| async move {
        caller.map_err(Rejection::from)
    })
}

/// The caller, or why not, without rejecting: for routes that must read the
/// body before answering (an upload refused mid-send would break the
/// client's connection).
fn authentication(
    state: State,
) -> impl Filter<Extract = (Result<Principal, ApiError>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").then(move |header: Option<String>| {
        let state = state.clone();
        async move {
            let credentials = header.as_deref().and_then(Credentials::from_header);
            authenticate(&state, credentials).await
        }
    })
}

/// Checks what the caller presented; nothing presented is a 401.
async fn authenticate(
    state: &State,
    credentials: Option<Credentials>,
) -> Result<Principal, ApiError> {
    let credentials = credentials.ok_or(crate::auth::AuthError::Missing)?;
    Ok(state.authenticator.authenticate(&credentials).await?)
}

/// A JSON body of at most [`JSON_LIMIT`] bytes that arrives whole within
/// `json_body_secs` (a body that stops half-way is a 408, not a connection
/// held open): malformed JSON is a 400, well-formed JSON of the wrong shape
/// (unknown or mistyped fields) a 422; without a Content-Length, 411.
fn json_body<T: DeserializeOwned + Send>(
    state: &State,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone + use<T> {
    let within = std::time::Duration::from_secs(state.settings.tuning.json_body_secs);
    warp::body::content_length_limit(JSON_LIMIT)
        .and(warp::body::stream())
        .and_then(move |body| async move {
            let body = tokio::time::timeout(within, whole_body(body))
                .await
                .map_err(|_| Rejection::from(ApiError::RequestTimeout))??;
            serde_json::from_slice::<T>(&body).map_err(|e| {
                Rejection::from(match e.classify() {
                    serde_json::error::Category::Data => {
                        ApiError::InvalidInput(format!("the JSON body does not fit: {e}"))
                    }
                    _ => ApiError::BadRequest(format!("malformed JSON body: {e}")),
                })
            })
        })
}

/// A small body, read whole (at most [`JSON_LIMIT`] bytes).
async fn whole_body(
    body: impl futures::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
) -> Result<Vec<u8>, Rejection> {
    use futures::StreamExt;
    let mut body = std::pin::pin!(body);
    let mut whole = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            Rejection::from(ApiError::BadRequest(format!(
                "the body could not be read: {e}"
            )))
        })?;
        if (whole.len() + chunk.remaining()) as u64 > JSON_LIMIT {
            return Err(ApiError::BodyTooLarge { limit: JSON_LIMIT }.into());
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            whole.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(whole)
}
