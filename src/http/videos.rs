//! Listing, showing, renaming, processing again and deleting the caller's
//! videos (one or several at once).

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::route::{Endpoint, WithId};
use super::upload::accepted;
use super::{ApiError, State, json_body, signed_in};
use crate::auth::{LinkScope, Principal};
use crate::db::changes::Topic;
use crate::db::jobs::{ListFilter, Order};
use crate::db::pages::{Page, PageKey};
use crate::db::{self, jobs::JobRow, outbox::Delivery};
use crate::domain::{FrameOptions, IdempotencyKey, JobId, RawOptions, StoredOptions, VideoName};
use crate::jobs::{FailureCode, JobState};
use crate::media::MediaSummary;
use crate::supervisor;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;
/// The longest text a list is searched for, in characters.
const MAX_QUERY_CHARS: usize = 100;
/// The most videos one bulk call acts on.
pub(super) const MAX_SELECTION: usize = 100;

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

pub fn rename_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(signed_in(state.clone()))
        .and(json_body(&state))
        .and_then(rename)
}

pub fn reprocess_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(signed_in(state.clone()))
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(json_body(&state))
        .and_then(reprocess)
}

pub fn delete_many_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state.clone())
        .and(json_body(&state))
        .and_then(delete_many)
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
    /// Why it failed, in words (the tool's, for "details").
    error: Option<String>,
    /// Why it failed, as a code to branch on and translate.
    error_code: Option<FailureCode>,
    /// The name shown: the file's, until its owner renames it.
    name: String,
    /// The video this one was processed again from, while it exists.
    source_id: Option<String>,
    /// What the probe found, once the upload is stored.
    media: Option<MediaSummary>,
    /// When it ended (done or failed).
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// When its zip and upload go (retention), once it ended.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Its place in the queue (1 is next), while queued.
    queue_position: Option<i64>,
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

    /// A link to one zip of these videos' zips (see `http::archive`).
    pub(super) fn archive_url(&self, videos: &[JobId]) -> Option<String> {
        match &self.principal.session {
            Some(session) => self.state.sessions.archive_link(session, videos),
            None => Some(crate::auth::archive_path(videos)),
        }
    }

    /// When `job`'s media goes: when it went, or retention after it ended.
    fn expires_at(&self, job: &JobRow) -> Option<DateTime<Utc>> {
        let retention = chrono::Duration::days(i64::from(self.state.settings.retention_days));
        match (job.expired_at, job.state, job.finished_at) {
            (Some(at), _, _) => Some(at),
            (None, JobState::Done | JobState::Failed, Some(finished)) => Some(finished + retention),
            _ => None,
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
            error_code: job.error_code,
            name: job.display_name().to_owned(),
            source_id: job.source_id.map(|id| id.to_string()),
            media: job.media.clone(),
            finished_at: job.finished_at.map(rfc3339),
            expires_at: links.expires_at(job).map(rfc3339),
            queue_position: None,
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

/// Views of `jobs` (rows of `page`) with the delivery state of their
/// notifications and the queued ones' places in the queue.
fn views(
    jobs: &[JobRow],
    page: &Page,
    positions: &HashMap<JobId, i64>,
    links: &Links<'_>,
) -> Vec<VideoView> {
    jobs.iter()
        .map(|job| {
            let mut view = VideoView::new(job, links);
            view.notifications = Some(page.deliveries.get(&job.id).cloned().unwrap_or_default());
            view.queue_position = positions.get(&job.id).copied();
            view
        })
        .collect()
}

/// The places in the queue of those of `jobs` that are queued: one read
/// for a whole list, none when nothing in it waits.
async fn queue_positions(state: &State, jobs: &[JobRow]) -> Result<HashMap<JobId, i64>, ApiError> {
    let queued: Vec<JobId> = jobs
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .map(|j| j.id)
        .collect();
    if queued.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(db::jobs::queue_positions(&state.pool, &queued).await?)
}

/// One video as `show` answers it: with its notifications and its place
/// in the queue.
async fn one_video(
    state: &State,
    principal: &Principal,
    job: JobRow,
) -> Result<VideoEnvelope, ApiError> {
    let page = db::pages::with_deliveries(&state.pool, vec![job]).await?;
    let positions = queue_positions(state, &page.rows).await?;
    let video = views(&page.rows, &page, &positions, &Links::new(state, principal))
        .pop()
        .ok_or(ApiError::NotFound)?;
    Ok(VideoEnvelope { video })
}

/// One video: `{"video": {...}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VideoEnvelope {
    video: VideoView,
}

/// A page of videos, in the order asked for.
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
    status: Option<String>,
    q: Option<String>,
    order: Option<String>,
}

impl ListQuery {
    /// The filter asked for: states (a comma list, empty for all), the
    /// text searched for in names, the order.
    fn filter(&self) -> Result<ListFilter, ApiError> {
        let mut states = Vec::new();
        for name in self.status.iter().flat_map(|s| s.split(',')) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let state = *JobState::ALL
                .iter()
                .find(|s| s.as_str() == name)
                .ok_or_else(|| ApiError::InvalidField {
                    field: "status".into(),
                    message: format!(
                        "`{name}` is no status; use uploading, queued, processing, done, failed or cancelled"
                    ),
                })?;
            states.push(state);
        }
        // one key for one set, whatever the order it was written in
        states.sort_by_key(|s| JobState::ALL.iter().position(|a| a == s));
        states.dedup();
        let name_contains = match self.q.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
                return Err(ApiError::InvalidField {
                    field: "q".into(),
                    message: format!("q must be at most {MAX_QUERY_CHARS} characters"),
                });
            }
            Some(q) => Some(q.to_owned()),
        };
        let order = match self.order.as_deref() {
            None | Some("newest") => Order::Newest,
            Some("oldest") => Order::Oldest,
            Some(_) => {
                return Err(ApiError::InvalidField {
                    field: "order".into(),
                    message: "order must be newest or oldest".into(),
                });
            }
        };
        Ok(ListFilter {
            states,
            name_contains,
            order,
        })
    }
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
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (in the same order)"),
        ("status" = Option<String>, Query, description = "Only these states, a comma list, e.g. `done,failed`"),
        ("q" = Option<String>, Query, description = "Only names holding this text, in any case (at most 100 characters)"),
        ("order" = Option<String>, Query, description = "`newest` (default) or `oldest` first"),
    ),
    responses(
        (status = 200, description = "The caller's videos, newest (or oldest) first", body = VideoList),
        (status = 422, description = "Bad limit, cursor, status or order, or an unknown parameter", body = ErrorBody),
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
        filter: query.filter()?,
        cursor,
        limit: limit + 1,
    };
    let page = state
        .pages
        .get(&state.pool, principal.user_id, which.clone())
        .await
        .map_err(ApiError::from)?;
    let caller = match &principal.session {
        Some(session) => session.id.clone(),
        None => principal.user_id.0.as_bytes().as_slice().into(),
    };
    let shown = &page.rows[..page.rows.len().min(limit as usize)];
    // places in the queue move with other users' jobs, which spoil no
    // page of this user's: a list with queued videos is rendered afresh
    let positions = queue_positions(&state, shown).await?;
    let render = || {
        let next_cursor = if page.rows.len() > shown.len() {
            shown.last().map(encode_cursor)
        } else {
            None
        };
        let list = VideoList {
            videos: views(shown, &page, &positions, &Links::new(&state, &principal)),
            next_cursor,
        };
        serde_json::to_vec(&list).map(Bytes::from)
    };
    let body = if positions.is_empty() {
        state.rendered.get_or_render(caller, which, &page, render)
    } else {
        render()
    };
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
    Ok(warp::reply::json(
        &one_video(&state, &principal, job).await?,
    ))
}

/// A new display name.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Rename {
    /// 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
}

#[utoipa::path(patch, path = Endpoint::RenameVideo.pattern(), tag = "videos",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The video's id")),
    request_body = Rename,
    responses(
        (status = 200, description = "The video, renamed (its file name stays)", body = VideoEnvelope),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
        (status = 422, description = "`invalid_input`: no name, an empty one, or one over 255 characters", body = ErrorBody),
    ))]
async fn rename(
    id: String,
    state: State,
    principal: Principal,
    body: Rename,
) -> Result<impl Reply, Rejection> {
    let name = body
        .name
        .ok_or_else(|| ApiError::InvalidInput("name is required".into()))?;
    let name = VideoName::parse(&name).map_err(ApiError::from)?;
    let id = JobId::parse(&id).ok_or(ApiError::NotFound)?;
    let job = db::jobs::rename_for_owner(&state.pool, principal.user_id, id, &name)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound)?;
    state.changes.touch(Topic::Owner(principal.user_id));
    Ok(warp::reply::json(
        &one_video(&state, &principal, job).await?,
    ))
}

/// The frame options of a video made again, as the upload's fields (each
/// a string or a number); absent ones take their defaults, as on upload.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // never built: it describes what `reprocess` reads
pub(super) struct ReprocessOptions {
    /// Seconds between frames, from 0.04 (default 1).
    interval: Option<f64>,
    /// Instead of interval: that many frames, evenly spaced.
    count: Option<u32>,
    /// The most frames to take (default and cap from the configuration).
    max_frames: Option<u32>,
    /// `jpg` (default) or `png`.
    format: Option<String>,
    /// Scale to this width in pixels (16 to 8192), keeping the aspect ratio.
    width: Option<u32>,
}

/// The options of a JSON body, as the upload's form would give them.
fn raw_options(body: serde_json::Map<String, serde_json::Value>) -> Result<RawOptions, ApiError> {
    use serde_json::Value;
    let mut raw = RawOptions::default();
    for (name, value) in body {
        let value = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(ApiError::InvalidField {
                    message: format!("{name} must be a string or a number"),
                    field: name,
                });
            }
        };
        raw.insert(&name, &value)?;
    }
    Ok(raw)
}

#[utoipa::path(post, path = Endpoint::ReprocessVideo.pattern(), tag = "videos",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The done or failed video whose upload is used"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gives the same video"),
    ),
    request_body = ReprocessOptions,
    responses(
        (status = 202, description = "A new video, queued, made from the stored upload; `source_id` names the original", body = VideoEnvelope,
            headers(("location" = String, description = "The new video's URL"))),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
        (status = 409, description = "`not_ready`: the video is still uploading, queued or processing", body = ErrorBody),
        (status = 410, description = "`expired`: its upload was deleted after the retention period", body = ErrorBody),
        (status = 422, description = "Bad frame options (`invalid_input`, with the field), or a video that would cost more than one job may (`over_budget`)", body = ErrorBody),
        (status = 429, description = "`too_many_queued` or `too_many_uploads`, as for an upload", body = ErrorBody),
        (status = 507, description = "`quota_exceeded`: the copy of the upload does not fit in the caller's storage", body = ErrorBody),
    ))]
async fn reprocess(
    id: String,
    state: State,
    principal: Principal,
    key: Option<String>,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<impl Reply, Rejection> {
    let frames_cap = state.uploads.limits().max_frames;
    let options = FrameOptions::parse(&raw_options(body)?, frames_cap).map_err(ApiError::from)?;
    let key = key
        .as_deref()
        .map(IdempotencyKey::parse)
        .transpose()
        .map_err(ApiError::from)?;
    // the same checks as an upload's, before anything is made
    let admitted = state
        .uploads
        .admit(principal.user_id)
        .await
        .map_err(ApiError::from)?;
    if let Some(key) = &key
        && let Some(existing) = admitted.find_existing(key).await.map_err(ApiError::from)?
    {
        return Ok(accepted(&state, &principal, &existing));
    }
    let source = find_own(&state, &principal, &id).await?;
    let queued = admitted
        .copy_of(&source, options, key)
        .await
        .map_err(ApiError::from)?;
    Ok(accepted(&state, &principal, &queued))
}

/// Videos to act on at once: their ids, 1 to 100.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Selection {
    #[schema(min_items = 1, max_items = 100)]
    ids: Option<Vec<String>>,
}

impl Selection {
    /// The ids, each once, in the order given.
    pub(super) fn ids(self) -> Result<Vec<JobId>, ApiError> {
        let bad = |message: String| ApiError::InvalidField {
            field: "ids".into(),
            message,
        };
        let raw = self.ids.unwrap_or_default();
        if raw.is_empty() || raw.len() > MAX_SELECTION {
            return Err(bad(format!("ids must list 1 to {MAX_SELECTION} videos")));
        }
        let mut ids = Vec::with_capacity(raw.len());
        for id in &raw {
            let id = JobId::parse(id).ok_or_else(|| bad(format!("`{id}` is no video id")))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// What a bulk delete removed.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Deleted {
    /// The caller's videos among those asked for, now gone.
    deleted: Vec<String>,
}

#[utoipa::path(post, path = Endpoint::DeleteVideos.pattern(), tag = "videos",
    security(("bearer" = [])),
    request_body = Selection,
    responses(
        (status = 200, description = "Each of the caller's videos among `ids` cancelled if running and deleted; others' and unknown ids are left out", body = Deleted),
        (status = 422, description = "`invalid_input`: no ids, more than 100, or one that is no id", body = ErrorBody),
    ))]
async fn delete_many(
    state: State,
    principal: Principal,
    body: Selection,
) -> Result<impl Reply, Rejection> {
    let ids = body.ids()?;
    let mut deleted = Vec::with_capacity(ids.len());
    for job in db::jobs::get_many_for_owner(&state.pool, principal.user_id, &ids)
        .await
        .map_err(ApiError::from)?
    {
        if remove(&state, &principal, job.id).await? {
            deleted.push(job.id.to_string());
        }
    }
    Ok(warp::reply::json(&Deleted { deleted }))
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
    if !remove(&state, &principal, job.id).await? {
        return Err(ApiError::NotFound.into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels the caller's video `id` if it runs, deletes its media, then its
/// rows; false when there was no such video.
async fn remove(state: &State, principal: &Principal, id: JobId) -> Result<bool, ApiError> {
    let Some(before) =
        db::jobs::cancel_for_owner(&state.pool, principal.user_id, id, &state.node).await?
    else {
        return Ok(false);
    };
    if before == JobState::Processing {
        supervisor::cancel_job(id);
    }
    state.store.delete_job(id).await?;
    // An upload still streaming finds its row gone when it commits, and its
    // guard removes the file.
    db::jobs::delete_for_owner(&state.pool, principal.user_id, id).await?;
    state.changes.touch(Topic::Owner(principal.user_id));
    tracing::info!(job_id = %id, was = ?before, "video deleted");
    Ok(true)
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
