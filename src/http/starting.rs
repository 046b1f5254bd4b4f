//! What a node answers while it gets ready (applies migrations, or waits for
//! the migration job to apply them): `/healthz` says the process is up, so a
//! long migration does not fail a startup or liveness probe; `/readyz` and
//! every other path answer 503 with `Retry-After`, so no traffic comes this
//! way yet. One request per connection, its head read within a deadline;
//! connections past a small cap are closed at once.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Reply;

use super::error::{ApiError, error_reply};

/// A client gets this long to send its request head, and to take the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Connections answered at once; probes need one or two.
const MAX_OPEN: usize = 64;

/// Runs `work` while answering on `listener` as a node that is starting, and
/// returns its result; the listener is then free for the real routes.
pub async fn answer_while<T>(
    listener: &TcpListener,
    node: &str,
    work: impl Future<Output = T>,
) -> T {
    let service = warp::service(routes(node.to_owned()));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(DEADLINE);
    let mut open = JoinSet::new();
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => {
                open.abort_all();
                return out;
            }
            accepted = listener.accept() => {
                while open.try_join_next().is_some() {}
                let Ok((stream, _)) = accepted else { continue };
                if open.len() >= MAX_OPEN {
                    continue;
                }
                let connection = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                    .into_owned();
                open.spawn(async move {
                    let _ = tokio::time::timeout(DEADLINE * 2, connection).await;
                });
            }
        }
    }
}

fn routes(
    node: String,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let health = warp::path!("healthz")
        .map(|| warp::reply::json(&serde_json::json!({ "status": "starting" })).into_response());
    let ready = warp::path!("readyz").map(move || {
        let body = serde_json::json!({ "status": "starting", "node": node });
        warp::reply::with_status(warp::reply::json(&body), StatusCode::SERVICE_UNAVAILABLE)
            .into_response()
    });
    let rest = warp::any().map(|| {
        error_reply(&ApiError::Unavailable {
            retry_after_secs: crate::retry_after::BUSY_SECS,
        })
    });
    health.or(ready).unify().or(rest).unify()
}
