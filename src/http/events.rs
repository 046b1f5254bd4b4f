//! Server-sent events, so pages and clients see changes without polling:
//! - `GET /api/v1/videos/{id}/events`: one video each time its status or
//!   progress changes, ending after a final state;
//! - `GET /api/v1/events`: every change to any of the caller's videos, for
//!   as long as the client stays (one connection for a whole page); not
//!   uploads still streaming, nor deletions (a client that deletes knows).
//!
//! Each event is `event: video` with `{"video": {...}}` as its data.

mod feeds;
pub use feeds::Feeds;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::route::{Endpoint, WithId};
use super::videos::{Links, find_own, video_json};
use super::{ApiError, State, signed_in};
use crate::auth::{Credentials, Principal};
use crate::db::jobs::JobRow;
use feeds::{Subscription, TooMany, Update};

/// A comment line that keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

type Events = Sender<Result<Event, Infallible>>;

pub fn video_events_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(caller(state)).and_then(video_events)
}

pub fn user_events_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    caller(state).and_then(user_events)
}

/// The state, the caller and what it presented.
fn caller(
    state: State,
) -> impl Filter<Extract = (State, Principal, Credentials), Error = Rejection> + Clone {
    signed_in(state).and(credentials())
}

/// What the caller presented (it was checked already): the stream's feed
/// checks it again when revocations are heard of.
fn credentials() -> impl Filter<Extract = (Credentials,), Error = Rejection> + Clone {
    warp::header::<String>("authorization").and_then(|h: String| async move {
        Credentials::from_header(&h).ok_or_else(|| {
            Rejection::from(ApiError::Unauthorized(
                "missing or malformed Authorization header".into(),
            ))
        })
    })
}

fn subscribed(sub: Result<Subscription, TooMany>) -> Result<Subscription, Rejection> {
    sub.map_err(|t| ApiError::TooManyStreams { limit: t.limit }.into())
}

#[utoipa::path(get, path = Endpoint::UserEvents.pattern(), tag = "videos",
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: video` with `{\"video\": {...}}` for each change to any of the caller's videos; stays open while the token holds"),
        (status = 429, description = "`too_many_streams`", body = ErrorBody)))]
async fn user_events(
    state: State,
    principal: Principal,
    credentials: Credentials,
) -> Result<impl Reply, Rejection> {
    let sub = subscribed(state.feeds.subscribe(principal.user_id, credentials, None))?;
    Ok(stream(move |tx| watch_user(state, principal, sub, tx)))
}

#[utoipa::path(get, path = Endpoint::VideoEvents.pattern(), tag = "videos",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The video's id")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "`event: video` with `{\"video\": {...}}` at each change of status or progress; ends after a final state"),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
        (status = 429, description = "`too_many_streams`", body = ErrorBody),
    ))]
async fn video_events(
    id: String,
    state: State,
    principal: Principal,
    credentials: Credentials,
) -> Result<impl Reply, Rejection> {
    let job = find_own(&state, &principal, &id).await?;
    let sub = subscribed(
        state
            .feeds
            .subscribe(principal.user_id, credentials, Some(job.id)),
    )?;
    Ok(stream(move |tx| {
        watch_video(state, principal, job, sub, tx)
    }))
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

/// The next update of a stream's feed; None when the stream must end: its
/// token no longer holds, or it fell too far behind (its client reconnects
/// and lists again).
async fn next(sub: &mut Subscription) -> Option<Update> {
    if let Some(update) = sub.replay.pop() {
        return Some(update);
    }
    tokio::select! {
        () = sub.closed.cancelled() => None,
        // lagged or closed: the stream ends
        update = sub.updates.recv() => update.ok(),
    }
}

async fn watch_video(
    state: State,
    principal: Principal,
    job: JobRow,
    mut sub: Subscription,
    tx: Events,
) {
    let links = Links::new(&state, &principal);
    let id = job.id;
    sub.replay.reverse();
    let mut last = (job.updated_at, job.state, job.progress);
    if tx.send(Ok(video_event(&job, &links))).await.is_err() || job.state.is_terminal() {
        return;
    }
    while let Some(update) = next(&mut sub).await {
        match update {
            Update::Changed(job) if job.id == id => {
                // the replay may hold older versions than the first read
                if job.updated_at < last.0 || (job.state, job.progress) == (last.1, last.2) {
                    continue;
                }
                last = (job.updated_at, job.state, job.progress);
                if tx.send(Ok(video_event(&job, &links))).await.is_err() || job.state.is_terminal()
                {
                    return;
                }
            }
            // deleted: the stream ends
            Update::Gone(gone) if gone == id => return,
            _ => {}
        }
    }
}

async fn watch_user(state: State, principal: Principal, mut sub: Subscription, tx: Events) {
    let links = Links::new(&state, &principal);
    sub.replay.reverse();
    while let Some(update) = next(&mut sub).await {
        if let Update::Changed(job) = update
            && tx.send(Ok(video_event(&job, &links))).await.is_err()
        {
            return;
        }
    }
}
