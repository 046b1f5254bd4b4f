//! `POST /api/v1/videos`: the upload is streamed straight into the media
//! store with bounded memory, counted against the size limit as it arrives,
//! probed with ffprobe, and only then committed as `queued` and answered
//! 202. Whatever goes wrong before that (too large, not a video, the client
//! went away), a guard deletes the file and the row: nothing half-written
//! stays behind.

use std::time::Duration;

use bytes::Buf;
use futures::TryStreamExt;
use ractor::call_t;
use tokio::io::AsyncWriteExt;
use warp::filters::multipart::{FormData, Part};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::videos::{Links, VideoEnvelope, video_json};
use super::{ApiError, State, authentication, error, with_state};
use crate::auth::Principal;
use crate::db::{self, changes::Topic, jobs::NewJob};
use crate::domain::{Filename, FrameOptions, IdempotencyKey, JobId, RawOptions, UserId};
use crate::media::{self, MediaError};
use crate::storage::MediaStore;
use crate::supervisor;
use crate::upload::{StoredUpload, Ticket, UploadMsg};

/// Multipart framing and option fields on top of the file itself.
const MULTIPART_SLACK: u64 = 64 * 1024;
/// Longest option field value we read.
const FIELD_LIMIT: usize = 1024;
const FILE_FIELD: &str = "video";
/// First and longest pause between attempts to remove a refused upload
/// while the database is unreachable.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);
const CLEANUP_RETRY_MAX: Duration = Duration::from_secs(30);
/// The most of a refused upload that is read before answering.
const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

pub fn routes(state: State) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("videos")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authentication(state))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::header::optional::<String>("content-type"))
        .and_then(admit)
        .untuple_one()
        .and(warp::multipart::form().max_length(None))
        .and_then(upload)
}

/// What the checks before the body produce.
struct Admitted {
    state: State,
    principal: Principal,
    options: RawOptions,
    key: Option<IdempotencyKey>,
    ticket: Ticket,
}

/// An upload refused before its body was read, and how much of the body to
/// read before answering: a client still sending a modest request then
/// reads its answer instead of a reset connection, while a huge one is cut
/// short at once.
struct Refused {
    error: ApiError,
    drain: usize,
    idle: Duration,
}

impl Refused {
    fn new(error: ApiError, length: Option<u64>, idle: Duration) -> Self {
        let drain = match length {
            Some(n) => n.min(DRAIN_LIMIT as u64) as usize,
            // chunked: read a little, it may be all there is
            None => DRAIN_LIMIT,
        };
        Self { error, drain, idle }
    }
}

/// Everything that can be refused before a byte of the body is read. Only a
/// body that is not multipart is refused here; other refusals are answered
/// by [`upload`] (see [`Refused`]).
async fn admit(
    state: State,
    principal: Result<Principal, ApiError>,
    query: String,
    key: Option<String>,
    length: Option<u64>,
    content_type: Option<String>,
) -> Result<(Result<Admitted, Refused>,), Rejection> {
    // a form without its boundary cannot be read: refused like any other
    // body that is not a form
    let is_multipart = content_type.as_deref().is_some_and(|ct| {
        let ct = ct.trim_start().to_ascii_lowercase();
        ct.starts_with("multipart/form-data") && ct.contains("boundary=")
    });
    let idle = Duration::from_secs(state.settings.tuning.upload_idle_secs);
    // Who is asking comes first. A refusal is answered after reading the
    // body (within a budget) when it is a form that can be read.
    let principal = match principal {
        Ok(principal) => principal,
        Err(e) if !is_multipart => return Err(e.into()),
        Err(e) => return Ok((Err(Refused::new(e, length, idle)),)),
    };
    if !is_multipart {
        return Err(ApiError::InvalidMultipart(format!(
            "send multipart/form-data with the file in a field named `{FILE_FIELD}`"
        ))
        .into());
    }
    // Too large by its own account. A big body is answered before it is
    // touched (a client sending `Expect: 100-continue` then sends nothing at
    // all; others may see the connection close as they write); a modest one
    // is read and dropped first, so its client gets the 413 cleanly.
    let limit = state.settings.max_upload_bytes;
    if let Some(n) = length.filter(|n| *n > limit.saturating_add(MULTIPART_SLACK)) {
        metrics::counter!("vp_uploads_total", "result" => "too_large").increment(1);
        let too_large = ApiError::TooLarge { limit };
        if n > DRAIN_LIMIT as u64 {
            return Err(too_large.into());
        }
        return Ok((Err(Refused::new(too_large, length, idle)),));
    }
    let admission = check_admission(state, principal, query, key).await;
    Ok((admission.map_err(|e| Refused::new(e, length, idle)),))
}

async fn check_admission(
    state: State,
    principal: Principal,
    query: String,
    key: Option<String>,
) -> Result<Admitted, ApiError> {
    let mut options = RawOptions::default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        options.insert(&name, &value)?;
    }
    let key = key.as_deref().map(IdempotencyKey::parse).transpose()?;
    // a user's backlog lives in PostgreSQL, but not without bound
    let pending = db::jobs::count_pending_for_owner(&state.pool, principal.user_id).await?;
    if pending >= i64::from(state.settings.tuning.max_queued_per_user) {
        metrics::counter!("vp_uploads_refused_total", "reason" => "user_backlog").increment(1);
        return Err(ApiError::TooManyQueued {
            limit: state.settings.tuning.max_queued_per_user,
        });
    }
    let busy = |secs| ApiError::Unavailable {
        retry_after_secs: secs,
    };
    let upload = supervisor::upload().ok_or(busy(5))?;
    let ticket = call_t!(upload, UploadMsg::Admit, 5_000)
        .map_err(|_| busy(5))?
        .map_err(|b| busy(b.retry_after_secs))?;
    Ok(Admitted {
        state,
        principal,
        options,
        key,
        ticket,
    })
}

/// Reads and discards the rest of the body, up to `budget` bytes. A client
/// that stops sending is not waited for longer than `idle`.
async fn drain(form: &mut FormData, mut budget: usize, idle: Duration) {
    loop {
        let Ok(Ok(Some(mut part))) = tokio::time::timeout(idle, form.try_next()).await else {
            return;
        };
        loop {
            match tokio::time::timeout(idle, part.data()).await {
                Ok(Some(Ok(chunk))) => {
                    budget = budget.saturating_sub(chunk.remaining());
                    if budget == 0 {
                        return;
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => return,
            }
        }
    }
}

/// Deletes the row and file of an upload that did not make it, unless disarmed.
struct Cleanup {
    id: JobId,
    owner: UserId,
    state: State,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (id, owner, state) = (self.id, self.owner, self.state.clone());
        // Drop cannot wait; the runtime finishes the cleanup. A crash (or a
        // runtime already gone) is covered by the stale-upload sweep at start-up.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // The row first, and the file only if the row was still
            // `uploading`: a commit that raced in made it a queued job
            // whose file must stay. A database that is away (the likely
            // reason the upload failed) is waited for.
            let mut pause = CLEANUP_RETRY;
            loop {
                match db::jobs::delete_uploading(&state.pool, id).await {
                    Ok(true) => {
                        // the owner's next list, on this node, goes without it
                        state.changes.touch(Topic::Owner(owner));
                        if let Err(e) = state.store.delete_job(id).await {
                            tracing::warn!(job_id = %id, error = %e, "could not delete refused upload's file");
                        }
                        return;
                    }
                    Ok(false) => return,
                    Err(e) if e.is_unavailable() => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(CLEANUP_RETRY_MAX);
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %id, error = %e, "could not delete refused upload's row");
                        return;
                    }
                }
            }
        });
    }
}

/// The upload form, for the API's description: the file and the frame
/// options (which may also come as query parameters).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // never built: it describes what `receive` reads
pub(super) struct UploadForm {
    /// The video file.
    #[schema(value_type = String, format = Binary)]
    video: Vec<u8>,
    /// Seconds between frames, from 0.04 (default 1).
    interval: Option<String>,
    /// Instead of interval: that many frames, evenly spaced.
    count: Option<String>,
    /// The most frames to take (default and cap from the configuration).
    max_frames: Option<String>,
    /// `jpg` (default) or `png`.
    format: Option<String>,
    /// Scale to this width in pixels (16 to 8192), keeping the aspect ratio.
    width: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/videos", tag = "videos",
    security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gives the same video"),
        ("interval" = Option<String>, Query), ("count" = Option<String>, Query),
        ("max_frames" = Option<String>, Query), ("format" = Option<String>, Query),
        ("width" = Option<String>, Query),
    ),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Stored and queued", body = VideoEnvelope,
            headers(("location" = String, description = "The video's URL"))),
        (status = 400, description = "Not a multipart form, or no `video` part", body = ErrorBody),
        (status = 408, description = "The client stopped sending", body = ErrorBody),
        (status = 409, description = "`upload_in_progress`: the first attempt with this key still streams", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media`: not a video; nothing kept", body = ErrorBody),
        (status = 422, description = "Bad frame options", body = ErrorBody),
        (status = 429, description = "`too_many_queued`", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`", body = ErrorBody),
    ))]
async fn upload(
    admitted: Result<Admitted, Refused>,
    mut form: FormData,
) -> Result<warp::reply::Response, Rejection> {
    let (result, budget, idle) = match admitted {
        Ok(admitted) => {
            let idle = Duration::from_secs(admitted.state.settings.tuning.upload_idle_secs);
            (receive(admitted, &mut form).await, DRAIN_LIMIT, idle)
        }
        Err(refused) => (Err(refused.error), refused.drain, refused.idle),
    };
    // Whatever was not read of the body is read now, within a budget, so the
    // client gets its answer on a clean connection; past the budget the
    // connection is closed rather than reused (the server layer says so).
    drain(&mut form, budget, idle).await;
    Ok(match result {
        Ok(response) => response,
        Err(e) => error::error_reply(&e),
    })
}

/// Streams the file into the store and queues the job.
async fn receive(
    admitted: Admitted,
    form: &mut FormData,
) -> Result<warp::reply::Response, ApiError> {
    let Admitted {
        state,
        principal,
        mut options,
        key,
        ticket: _ticket,
    } = admitted;
    let frames_cap = state.settings.tuning.max_frames;

    // a retry of an upload that was accepted before gets the same video
    if let Some(key) = &key
        && let Some(existing) =
            db::jobs::find_by_idempotency_key(&state.pool, principal.user_id, key)
                .await
                .map_err(ApiError::from)?
    {
        return existing_upload(&state, &principal, &existing);
    }

    let mut stored: Option<(Cleanup, u64)> = None;
    while let Some(part) = form.try_next().await.map_err(multipart_error)? {
        if part.name() == FILE_FIELD {
            if stored.is_some() {
                return Err(ApiError::InvalidField {
                    field: FILE_FIELD.into(),
                    message: "send one video per upload".into(),
                });
            }
            // options sent before the file are checked before it is streamed
            let options_json = options_json(&options, frames_cap)?;
            let filename = Filename::clean(part.filename());
            let id = JobId::new();
            let new = NewJob {
                id,
                user_id: principal.user_id,
                filename: filename.as_str(),
                options: &options_json,
                max_attempts: state.settings.tuning.job_max_attempts as i32,
                node: &state.node,
                idempotency_key: key.as_ref(),
            };
            let job = match db::jobs::insert_uploading(&state.pool, new)
                .await
                .map_err(ApiError::from)?
            {
                Ok(job) => job,
                // the same key raced in from a concurrent retry
                Err(existing) => return existing_upload(&state, &principal, &existing),
            };
            let cleanup = Cleanup {
                id: job.id,
                owner: principal.user_id,
                state: state.clone(),
                armed: true,
            };
            let size = stream_to_store(&state, job.id, part).await?;
            stored = Some((cleanup, size));
        } else {
            let name = part.name().to_owned();
            let value = read_field(part).await?;
            options.insert(&name, &value).map_err(ApiError::from)?;
        }
    }
    let Some((mut cleanup, size)) = stored else {
        return Err(ApiError::InvalidField {
            field: FILE_FIELD.into(),
            message: format!("the form has no file field named `{FILE_FIELD}`"),
        });
    };
    let id = cleanup.id;
    // the final options, with any fields sent after the file
    let options_json = options_json(&options, frames_cap)?;
    if size == 0 {
        return Err(ApiError::UnsupportedMedia("the file is empty".into()));
    }

    let local = state
        .store
        .local_input(&MediaStore::source_key(id))
        .await
        .map_err(ApiError::from)?;
    let probe_timeout = Duration::from_secs(state.settings.tuning.probe_timeout_secs);
    let info = match media::probe(
        &state.settings.tuning.ffprobe_path,
        &local.path(),
        probe_timeout,
    )
    .await
    {
        Ok(info) => info,
        Err(e) => {
            e.record("probe");
            return Err(probe_refusal(id, e));
        }
    };
    let info_json = serde_json::to_value(&info).map_err(|e| ApiError::Internal(e.to_string()))?;

    let upload = supervisor::upload().ok_or(ApiError::Unavailable {
        retry_after_secs: 5,
    })?;
    let stored = StoredUpload {
        job: id,
        size_bytes: size as i64,
        media_info: info_json,
        options: options_json,
    };
    let job = call_t!(upload, UploadMsg::Commit, 30_000, stored)
        .map_err(|_| ApiError::Unavailable {
            retry_after_secs: 5,
        })?
        .map_err(|e| match e {
            // deleted by its owner while it streamed
            db::DbError::Transition(_) => ApiError::NotFound,
            other => other.into(),
        })?;
    cleanup.armed = false;
    metrics::counter!("vp_uploads_total", "result" => "accepted").increment(1);
    metrics::counter!("vp_upload_bytes_total").increment(size);
    tracing::info!(job_id = %id, size, "upload queued");
    Ok(accepted(&state, &principal, &job))
}

fn options_json(raw: &RawOptions, frames_cap: u32) -> Result<serde_json::Value, ApiError> {
    let parsed = FrameOptions::parse(raw, frames_cap)?;
    serde_json::to_value(parsed).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The answer to a retry with a known Idempotency-Key: the same video once
/// it is stored; while the first attempt still streams, a conflict.
fn existing_upload(
    state: &State,
    principal: &Principal,
    job: &db::jobs::JobRow,
) -> Result<warp::reply::Response, ApiError> {
    if job.state == crate::jobs::JobState::Uploading {
        return Err(ApiError::UploadInProgress);
    }
    Ok(accepted(state, principal, job))
}

fn accepted(state: &State, principal: &Principal, job: &db::jobs::JobRow) -> warp::reply::Response {
    state.changes.touch(Topic::Owner(principal.user_id));
    let location = format!("/api/v1/videos/{}", job.id);
    let json = video_json(job, &Links::new(state, principal));
    let reply = warp::reply::with_status(warp::reply::json(&json), StatusCode::ACCEPTED);
    warp::reply::with_header(reply, "location", location).into_response()
}

/// The answer to an upload ffprobe could not read.
fn probe_refusal(id: JobId, e: MediaError) -> ApiError {
    match e {
        MediaError::NotAVideo(_) => {
            metrics::counter!("vp_uploads_total", "result" => "not_a_video").increment(1);
            tracing::info!(job_id = %id, reason = %e.reason(), "upload refused: not a video");
            ApiError::UnsupportedMedia(e.reason())
        }
        // ffprobe could not run or finish here (overload, environment): the
        // file may be fine, so the client is asked to come back
        e => {
            metrics::counter!("vp_uploads_total", "result" => "probe_unavailable").increment(1);
            tracing::warn!(job_id = %id, error = %e, "upload refused: probing failed");
            ApiError::Unavailable {
                retry_after_secs: 10,
            }
        }
    }
}

/// Streams the file part into the store, refusing it past the size limit.
async fn stream_to_store(state: &State, id: JobId, mut part: Part) -> Result<u64, ApiError> {
    let limit = state.settings.max_upload_bytes;
    let mut writer = state.store.writer(&MediaStore::source_key(id));
    let mut size = 0u64;
    let idle = Duration::from_secs(state.settings.tuning.upload_idle_secs);
    // a client that stops sending must not hold its upload place for ever
    while let Some(chunk) = tokio::time::timeout(idle, part.data())
        .await
        .map_err(|_| ApiError::RequestTimeout)?
    {
        let mut chunk = chunk.map_err(multipart_error)?;
        size += chunk.remaining() as u64;
        if size > limit {
            metrics::counter!("vp_uploads_total", "result" => "too_large").increment(1);
            return Err(ApiError::TooLarge { limit });
        }
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        writer
            .write_all(&bytes)
            .await
            .map_err(|e| cannot_store(id, &e))?;
    }
    // completes the object: it appears under its name only now, fsynced
    writer.shutdown().await.map_err(|e| cannot_store(id, &e))?;
    Ok(size)
}

/// The media store refused the bytes (disk full, read-only, failing): the
/// upload is refused with 507 and its guard removes what was written.
fn cannot_store(id: JobId, e: &std::io::Error) -> ApiError {
    tracing::error!(job_id = %id, error = %e, kind = ?e.kind(), "the media store refused an upload");
    metrics::counter!("vp_uploads_total", "result" => "storage_failed").increment(1);
    ApiError::InsufficientStorage
}

async fn read_field(mut part: Part) -> Result<String, ApiError> {
    let mut value = Vec::new();
    while let Some(chunk) = part.data().await {
        let chunk = chunk.map_err(multipart_error)?;
        if value.len() + chunk.remaining() > FIELD_LIMIT {
            return Err(ApiError::InvalidField {
                field: part.name().to_owned(),
                message: format!("field `{}` is too long", part.name()),
            });
        }
        value.extend_from_slice(chunk.chunk());
    }
    String::from_utf8(value).map_err(|_| ApiError::InvalidField {
        field: part.name().to_owned(),
        message: format!("field `{}` is not UTF-8", part.name()),
    })
}

fn multipart_error(e: warp::Error) -> ApiError {
    ApiError::InvalidMultipart(format!("the multipart body is malformed: {e}"))
}
