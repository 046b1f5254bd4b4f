//! `GET /api/v1/videos/{id}/events`: server-sent events with the video each
//! time its status or progress changes, ending after a final state.

use std::time::Duration;

use std::convert::Infallible;

use tokio::sync::mpsc::Sender;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::videos::{Links, VideoView, find_own};
use super::{State, authenticated, with_state};
use crate::auth::Principal;
use crate::db;
use crate::domain::JobId;
use crate::jobs::JobState;

/// How often a watched job is looked at.
const POLL: Duration = Duration::from_millis(250);

pub fn routes(state: State) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("videos" / String / "events")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .and_then(events)
}

async fn events(id: String, state: State, principal: Principal) -> Result<impl Reply, Rejection> {
    let job = find_own(&state, &principal, &id).await?;
    // warp needs a Sync stream: a task watches the job and feeds a channel;
    // it stops when the client goes away (the send fails).
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(watch(state, principal, job.id, tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(warp::sse::reply(
        warp::sse::keep_alive()
            .interval(Duration::from_secs(15))
            .stream(stream),
    ))
}

async fn watch(
    state: State,
    principal: Principal,
    id: JobId,
    tx: Sender<Result<Event, Infallible>>,
) {
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
            let event = Event::default()
                .event("video")
                .json_data(serde_json::json!({ "video": VideoView::new(&job, &links) }))
                .unwrap_or_else(|_| Event::default().comment("unserialisable"));
            if tx.send(Ok(event)).await.is_err() || job.state.is_terminal() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tx.closed() => return,
        }
    }
}
