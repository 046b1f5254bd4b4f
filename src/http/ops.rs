//! Liveness, readiness and Prometheus metrics. What these read from the
//! database is read at most once a [`FRESH_FOR`], however often they are
//! asked: an open endpoint must not turn requests into queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::route::Endpoint;
use super::{State, with_state};
use crate::db;

/// How long a database reading of these endpoints is shown again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The last database readings, and when they were taken. Callers that come
/// while one reads wait for it and share its result.
#[derive(Default)]
struct Readings {
    database_up: Mutex<DatabaseUp>,
    gauges: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct DatabaseUp {
    last: Option<(Instant, bool)>,
    /// The readiness check's own connection.
    probe: Option<tokio_postgres::Client>,
}

/// A readiness check answers within this, inside a probe's timeout (3 s).
const PING_WITHIN: Duration = Duration::from_secs(2);

impl Readings {
    async fn database_up(&self, state: &State) -> bool {
        let mut up = self.database_up.lock().await;
        match up.last {
            Some((at, is_up)) if at.elapsed() < FRESH_FOR => is_up,
            _ => {
                let url = state.settings.database_url.expose();
                let ping = db::ping(url, &mut up.probe);
                let is_up = matches!(tokio::time::timeout(PING_WITHIN, ping).await, Ok(Ok(())));
                if !is_up {
                    // whatever it was doing, it is not to be trusted
                    up.probe = None;
                }
                up.last = Some((Instant::now(), is_up));
                is_up
            }
        }
    }

    /// Sets the gauges that come from the database, unless they are fresh.
    async fn refresh_gauges(&self, state: &State) {
        let mut last = self.gauges.lock().await;
        if last.is_some_and(|at| at.elapsed() < FRESH_FOR) {
            return;
        }
        database_gauges(state).await;
        *last = Some(Instant::now());
    }
}

pub fn health_route()
-> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    warp::any().map(health)
}

pub fn ready_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    with_readings(state).then(ready)
}

pub fn metrics_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    with_readings(state).then(metrics)
}

/// The state and the readings of one endpoint, kept across its requests.
fn with_readings(
    state: State,
) -> impl Filter<Extract = (State, Arc<Readings>), Error = std::convert::Infallible> + Clone {
    let readings = Arc::new(Readings::default());
    with_state(state).and(warp::any().map(move || readings.clone()))
}

#[utoipa::path(get, path = Endpoint::Health.pattern(), tag = "operations",
    responses((status = 200, description = "The process is up", body = Object)))]
fn health() -> impl Reply {
    warp::reply::json(&serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = Endpoint::Ready.pattern(), tag = "operations",
    responses(
        (status = 200, description = "Ready: database reachable, actors running; with the cluster as this node sees it", body = Object),
        (status = 503, description = "Not ready, and why", body = Object),
    ))]
async fn ready(state: State, readings: Arc<Readings>) -> warp::reply::Response {
    let database = readings.database_up(&state).await;
    let actors = state.actors.upload.get().is_some();
    let ok = database && actors;
    // a node alone is ready (the first pod has no peers): the cluster part
    // reports, it does not gate
    let cluster = state.cluster.as_ref().map(|c| {
        let peers = c.peers();
        serde_json::json!({ "joined": true, "peers": peers.len(), "peer_names": peers })
    });
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not_ready" },
        "database": database,
        "actors": actors,
        "node": state.node,
        "cluster": cluster.unwrap_or_else(|| serde_json::json!({ "joined": false, "peers": 0 })),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

#[utoipa::path(get, path = Endpoint::Metrics.pattern(), tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(state: State, readings: Arc<Readings>) -> warp::reply::Response {
    readings.refresh_gauges(&state).await;
    let text = state.metrics.render();
    warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4").into_response()
}

/// Job counts, the queue's age and waiting notifications: the database's,
/// the truth across all nodes.
async fn database_gauges(state: &State) {
    if let Ok(counts) = db::jobs::count_by_state(&state.pool).await {
        for s in crate::jobs::JobState::ALL {
            let n = counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
            metrics::gauge!("vp_jobs", "state" => s.as_str()).set(n as f64);
        }
    }
    if let Ok(age) = db::jobs::oldest_queued_age(&state.pool).await {
        metrics::gauge!("vp_queue_oldest_seconds").set(age);
    }
    // delivered and abandoned ones are counted as they happen
    // (vp_notifications_total); the waiting ones are the database's to say
    if let Ok((pending, age)) = db::outbox::pending_summary(&state.pool).await {
        metrics::gauge!("vp_notifications_pending").set(pending as f64);
        metrics::gauge!("vp_notifications_oldest_pending_seconds").set(age);
    }
}
