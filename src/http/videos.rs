//! Listing, showing and deleting the caller's videos.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::route::{Endpoint, WithId};
use super::{ApiError, State, signed_in};
use crate::auth::{LinkScope, Principal};
use crate::db::changes::Topic;
use crate::db::pages::{Page, PageKey};
use crate::db::{self, jobs::JobRow, outbox::Delivery};
use crate::domain::{JobId, StoredOptions};
use crate::jobs::JobState;
use crate::supervisor;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

// What each endpoint takes from a request, past the path (and id) and
// method that `route::ROUTES` gives it.

pub fn list_route(state: State) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state)
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and_then(list)
}

pub fn show_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(signed_in(state)).and_then(show)
}

pub fn delete_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(signed_in(state)).and_then(delete)
}

/// A video as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VideoView {
    id: String,
    filename: String,
    status: JobState,
    /// 0 to 1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    progress: f32,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    size_bytes: Option<i64>,
    /// The frame options in force (interval or count, max_frames, format, width).
    #[schema(value_type = Object)]
    options: StoredOptions,
    /// How many frames the zip holds, once done.
    frames: Option<i32>,
    zip_bytes: Option<i64>,
    /// Why it failed.
    error: Option<String>,
    /// A link to the zip for 15 minutes that needs no header, once done.
    download_url: Option<String>,
    /// A link to the contact sheet (a JPEG grid of thumbnails with their
    /// timestamps) for 15 minutes that needs no header, once done.
    contact_sheet_url: Option<String>,
    /// The list of the frames, once done.
    frames_url: Option<String>,
    /// Emails about this video and their delivery state (detail and list).
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<Vec<Delivery>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Makes a caller's download links: each reads one zip, for a short time,
/// without the caller's token (see `auth::SessionTokens::download_link`).
pub struct Links<'a> {
    state: &'a State,
    principal: &'a Principal,
}

impl<'a> Links<'a> {
    pub fn new(state: &'a State, principal: &'a Principal) -> Self {
        Self { state, principal }
    }

    fn download_url(&self, id: JobId) -> Option<String> {
        match &self.principal.session {
            Some(session) => self.state.sessions.download_link(session, id),
            // a caller without a session token uses its own credentials
            None => Some(format!("/api/v1/videos/{id}/frames.zip")),
        }
    }

    fn contact_sheet_url(&self, id: JobId) -> Option<String> {
        let path = format!("/api/v1/videos/{id}/contact-sheet");
        match &self.principal.session {
            Some(session) => {
                let token = self
                    .state
                    .sessions
                    .link_token(session, id, LinkScope::Frames)?;
                Some(format!("{path}?token={token}"))
            }
            None => Some(path),
        }
    }
}

impl VideoView {
    pub fn new(job: &JobRow, links: &Links<'_>) -> Self {
        let ready = job.state == JobState::Done && job.expired_at.is_none();
        Self {
            id: job.id.to_string(),
            filename: job.filename.clone(),
            status: job.state,
            progress: if job.state == JobState::Done {
                1.0
            } else {
                job.progress
            },
            created_at: rfc3339(job.created_at),
            updated_at: rfc3339(job.updated_at),
            size_bytes: job.size_bytes,
            options: job.options.clone(),
            frames: job.frames,
            zip_bytes: job.zip_bytes,
            error: job.error.clone(),
            download_url: if ready {
                links.download_url(job.id)
            } else {
                None
            },
            contact_sheet_url: if ready {
                links.contact_sheet_url(job.id)
            } else {
                None
            },
            frames_url: ready.then(|| format!("/api/v1/videos/{}/frames", job.id)),
            notifications: None,
        }
    }
}

/// Views of `jobs` (rows of `page`) with the delivery state of their notifications.
fn views(jobs: &[JobRow], page: &Page, links: &Links<'_>) -> Vec<VideoView> {
    jobs.iter()
        .map(|job| {
            let mut view = VideoView::new(job, links);
            view.notifications = Some(page.deliveries.get(&job.id).cloned().unwrap_or_default());
            view
        })
        .collect()
}

/// One video: `{"video": {...}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VideoEnvelope {
    video: VideoView,
}

/// A page of videos, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct VideoList {
    videos: Vec<VideoView>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

pub fn video_json(job: &JobRow, links: &Links<'_>) -> VideoEnvelope {
    VideoEnvelope {
        video: VideoView::new(job, links),
    }
}

/// The caller's video `id`; anything else (bad id, another user's) is a 404.
pub async fn find_own(state: &State, principal: &Principal, id: &str) -> Result<JobRow, ApiError> {
    let id = JobId::parse(id).ok_or(ApiError::NotFound)?;
    db::jobs::get_for_owner(&state.pool, principal.user_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// Cursors are `<created_at µs>.<id>` of the last video of the previous page.
fn encode_cursor(job: &JobRow) -> String {
    format!("{}.{}", job.created_at.timestamp_micros(), job.id)
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, JobId), ApiError> {
    let bad = || ApiError::InvalidInput("cursor is not one this API gave out".into());
    let (micros, id) = raw.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = Utc.timestamp_micros(micros).single().ok_or_else(bad)?;
    Ok((at, JobId::parse(id).ok_or_else(bad)?))
}

#[utoipa::path(get, path = Endpoint::ListVideos.pattern(), tag = "videos",
    security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, default 20"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "The caller's videos, newest first", body = VideoList),
        (status = 422, description = "Bad limit or cursor, or an unknown parameter", body = ErrorBody),
    ))]
async fn list(
    state: State,
    principal: Principal,
    raw_query: String,
) -> Result<impl Reply, Rejection> {
    let query: ListQuery = parse_query(&raw_query)?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(
                    ApiError::InvalidInput(format!("limit must be from 1 to {MAX_LIMIT}")).into(),
                );
            }
        },
    };
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    // one more than asked tells whether there is a next page
    let which = PageKey {
        cursor,
        limit: limit + 1,
    };
    let page = state
        .pages
        .get(&state.pool, principal.user_id, which)
        .await
        .map_err(ApiError::from)?;
    let caller = match &principal.session {
        Some(session) => session.id.clone(),
        None => principal.user_id.0.as_bytes().as_slice().into(),
    };
    let body = state.rendered.get_or_render(caller, which, &page, || {
        let shown = &page.rows[..page.rows.len().min(limit as usize)];
        let next_cursor = if page.rows.len() > shown.len() {
            shown.last().map(encode_cursor)
        } else {
            None
        };
        let list = VideoList {
            videos: views(shown, &page, &Links::new(&state, &principal)),
            next_cursor,
        };
        serde_json::to_vec(&list).map(Bytes::from)
    });
    let body = body.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(warp::http::Response::builder()
        .header(warp::http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))?)
}

pub(super) fn parse_query<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let pairs: serde_json::Map<String, serde_json::Value> =
        url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|e| ApiError::InvalidInput(format!("bad query: {e}")))
}

#[utoipa::path(get, path = Endpoint::ShowVideo.pattern(), tag = "videos",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The video's id")),
    responses(
        (status = 200, description = "The video, with its notifications", body = VideoEnvelope),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
    ))]
async fn show(id: String, state: State, principal: Principal) -> Result<impl Reply, Rejection> {
    let job = find_own(&state, &principal, &id).await?;
    let page = db::pages::with_deliveries(&state.pool, vec![job])
        .await
        .map_err(ApiError::from)?;
    let video = views(&page.rows, &page, &Links::new(&state, &principal))
        .pop()
        .ok_or(ApiError::NotFound)?;
    Ok(warp::reply::json(&VideoEnvelope { video }))
}

/// Cancels a running job, deletes its media, then its rows. If the media
/// cannot be deleted the row stays (cancelled) so the call can be repeated.
#[utoipa::path(delete, path = Endpoint::DeleteVideo.pattern(), tag = "videos",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The video's id")),
    responses(
        (status = 204, description = "Cancelled if running; media and rows deleted"),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
    ))]
async fn delete(id: String, state: State, principal: Principal) -> Result<impl Reply, Rejection> {
    let job = find_own(&state, &principal, &id).await?;
    let before = db::jobs::cancel_for_owner(&state.pool, principal.user_id, job.id, &state.node)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound)?;
    if before == JobState::Processing {
        supervisor::cancel_job(job.id);
    }
    state
        .store
        .delete_job(job.id)
        .await
        .map_err(ApiError::from)?;
    // An upload still streaming finds its row gone when it commits, and its
    // guard removes the file.
    db::jobs::delete_for_owner(&state.pool, principal.user_id, job.id)
        .await
        .map_err(ApiError::from)?;
    state.changes.touch(Topic::Owner(principal.user_id));
    tracing::info!(job_id = %job.id, was = ?before, "video deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let at = Utc.timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = JobId::new();
        let (a, i) = decode_cursor(&format!("{}.{}", at.timestamp_micros(), id)).unwrap();
        assert_eq!((a, i), (at, id));
        for bad in ["", "x.y", "12", "12.notanid", ".abc"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
