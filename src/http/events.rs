//! Server-sent events, so pages and clients see changes without polling:
//! - `GET /api/v1/videos/{id}/events`: one video each time its status or
//!   progress changes, ending after a final state;
//! - `GET /api/v1/events`: every change to any of the caller's videos, for
//!   as long as the client stays (one connection for a whole page); not
//!   uploads still streaming, nor deletions (a client that deletes knows).
//!
//! Each event is `event: video` with `{"video": {...}}` as its data.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::Sender;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::videos::{Links, find_own, video_json};
use super::{State, authenticated, with_state};
use crate::auth::Principal;
use crate::db::{self, jobs::JobRow};
use crate::domain::JobId;
use crate::jobs::JobState;

/// How often a watched job is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How often a user's videos are looked at.
const USER_POLL: Duration = Duration::from_millis(500);
/// How far each look at a user's videos reaches back before the newest
/// change it saw: a change is stamped with its transaction's start, so one
/// that commits late can carry an earlier time than one already seen.
const OVERLAP: Duration = Duration::from_secs(5);
/// Most changes read in one query.
const BATCH: i64 = 100;
/// A comment line that keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

type Events = Sender<Result<Event, Infallible>>;

pub fn routes(state: State) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let one = warp::path!("videos" / String / "events")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and_then(video_events);
    let all = warp::path!("events")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .map(user_events);
    one.or(all)
}

#[utoipa::path(get, path = "/api/v1/events", tag = "videos",
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: video` with `{\"video\": {...}}` for each change to any of the caller's videos; stays open")))]
fn user_events(state: State, principal: Principal) -> impl Reply {
    stream(move |tx| watch_user(state, principal, tx))
}

#[utoipa::path(get, path = "/api/v1/videos/{id}/events", tag = "videos",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The video's id")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "`event: video` with `{\"video\": {...}}` at each change of status or progress; ends after a final state"),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
    ))]
async fn video_events(
    id: String,
    state: State,
    principal: Principal,
) -> Result<impl Reply, Rejection> {
    let job = find_own(&state, &principal, &id).await?;
    Ok(stream(move |tx| watch_video(state, principal, job.id, tx)))
}

/// An event stream fed by `watcher`. warp needs a Sync stream: a task runs
/// the watcher and feeds a channel; it stops when the client goes away (a
/// send fails or the channel closes).
fn stream<W, F>(watcher: W) -> impl Reply
where
    W: FnOnce(Events) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let watching = watcher(tx.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = watching => {}
            () = tx.closed() => {}
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(stream))
}

fn video_event(job: &JobRow, links: &Links<'_>) -> Event {
    Event::default()
        .event("video")
        .json_data(video_json(job, links))
        .unwrap_or_else(|_| Event::default().comment("unserialisable"))
}

async fn watch_video(state: State, principal: Principal, id: JobId, tx: Events) {
    let links = Links::new(&state, &principal);
    let mut last: Option<(JobState, f32)> = None;
    loop {
        let job = match db::jobs::get(&state.pool, id).await {
            Ok(Some(job)) => job,
            // deleted: the stream ends
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "event stream lookup failed");
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        let now = (job.state, job.progress);
        if last != Some(now) {
            last = Some(now);
            if tx.send(Ok(video_event(&job, &links))).await.is_err() || job.state.is_terminal() {
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn watch_user(state: State, principal: Principal, tx: Events) {
    let links = Links::new(&state, &principal);
    let mut changes = Changes::default();
    loop {
        match changes.next_batch(&state, &principal).await {
            Ok(batch) => {
                for job in &batch.fresh {
                    if tx.send(Ok(video_event(job, &links))).await.is_err() {
                        return;
                    }
                }
                if batch.more {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(user_id = %principal.user_id, error = %e, "event stream lookup failed");
                tokio::time::sleep(USER_POLL * 4).await;
            }
        }
        tokio::time::sleep(USER_POLL).await;
    }
}

/// What one user's stream has sent, so each change goes out once although
/// consecutive looks overlap.
#[derive(Default)]
struct Changes {
    /// The change time last sent per video, within the overlap.
    sent: HashMap<JobId, DateTime<Utc>>,
    /// Where the next query starts; None: the last [`OVERLAP`] by the
    /// database's clock (the first look, and after a quiet spell).
    after: Option<(DateTime<Utc>, JobId)>,
}

struct Batch {
    fresh: Vec<JobRow>,
    /// The query was full: read on at once.
    more: bool,
}

impl Changes {
    async fn next_batch(
        &mut self,
        state: &State,
        principal: &Principal,
    ) -> Result<Batch, db::DbError> {
        let rows =
            db::jobs::changed_for_owner(&state.pool, principal.user_id, self.after, OVERLAP, BATCH)
                .await?;
        let more = rows.len() as i64 == BATCH;
        Ok(Batch {
            fresh: self.take_fresh(rows, more),
            more,
        })
    }

    /// Keeps the rows not sent yet and moves the window on.
    fn take_fresh(&mut self, rows: Vec<JobRow>, more: bool) -> Vec<JobRow> {
        let last = rows.last().map(|j| (j.updated_at, j.id));
        let fresh: Vec<JobRow> = rows
            .into_iter()
            .filter(|job| self.sent.get(&job.id) != Some(&job.updated_at))
            .collect();
        for job in &fresh {
            self.sent.insert(job.id, job.updated_at);
        }
        if more {
            self.after = last;
            return fresh;
        }
        // the next look reaches back OVERLAP before the newest change seen
        let overlap = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
        let newest = self.sent.values().max().copied();
        self.after = newest.map(|t| (t - overlap, JobId(uuid::Uuid::nil())));
        if let Some((floor, _)) = self.after {
            self.sent.retain(|_, at| *at >= floor);
        }
        fresh
    }
}
