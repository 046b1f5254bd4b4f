//! `POST /api/v1/videos`: the upload is streamed straight into the media
//! store with bounded memory, counted against the size limit as it arrives,
//! probed with ffprobe, and only then committed as `queued` and answered
//! 202. Whatever goes wrong before that (too large, not a video, the client
//! went away), a guard deletes the file and the row: nothing half-written
//! stays behind.

mod form;

use std::time::Duration;

use ractor::call_t;
use tokio::io::AsyncWriteExt;
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
use crate::upload::{Busy, StoredUpload, Ticket, UploadMsg};
use form::{Form, MULTIPART_SLACK, Pace, Part, RawBody};

const FILE_FIELD: &str = "video";
/// First and longest pause between attempts to remove a refused upload
/// while the database is unreachable.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);
const CLEANUP_RETRY_MAX: Duration = Duration::from_secs(30);
/// The most of a refused upload that is read before answering.
const DRAIN_LIMIT: u64 = 32 * 1024 * 1024;
/// How long a refused upload's client gets to finish sending: past it, the
/// answer goes out and the connection is closed.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// How long the answer to a refused upload waits for its row to be removed
/// (a list right after the answer must not show it); past that, the guard
/// goes on removing it in the background.
const CLEANUP_WAIT: Duration = Duration::from_secs(5);

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
        .and(warp::body::stream().map(form::raw_body))
        .and_then(upload)
}

/// What the checks before the body produce.
struct Admitted {
    state: State,
    principal: Principal,
    options: RawOptions,
    key: Option<IdempotencyKey>,
    ticket: Ticket,
    boundary: String,
    /// Bytes the user's storage quota still has room for.
    room: u64,
}

/// An upload refused before its body was read, and how much of the body to
/// read before answering: a client still sending a modest request then
/// reads its answer instead of a reset connection, while a huge one is cut
/// short at once.
struct Refused {
    error: ApiError,
    drain: u64,
    pace: Pace,
}

impl Refused {
    fn new(error: ApiError, length: Option<u64>, pace: Pace) -> Self {
        let drain = match length {
            Some(n) => n.min(DRAIN_LIMIT),
            // chunked: read a little, it may be all there is
            None => DRAIN_LIMIT,
        };
        // the drain is held to its own time budget too
        let pace = Pace {
            grace: pace.grace.min(DRAIN_TIME),
            idle: pace.idle.min(DRAIN_TIME),
            min_rate: pace.min_rate.max(DRAIN_LIMIT / DRAIN_TIME.as_secs()),
        };
        Self { error, drain, pace }
    }
}

/// How fast an upload's body must come, from the settings.
fn pace(state: &State) -> Pace {
    let t = &state.settings.tuning;
    Pace {
        idle: Duration::from_secs(t.upload_idle_secs),
        min_rate: t.upload_min_rate_bytes,
        grace: Duration::from_secs(t.upload_grace_secs),
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
    let boundary = content_type.as_deref().and_then(|ct| {
        let is_form = ct
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data");
        is_form.then(|| multer::parse_boundary(ct).ok()).flatten()
    });
    let is_multipart = boundary.is_some();
    let pace = pace(&state);
    // Who is asking comes first. A refusal is answered after reading the
    // body (within a budget) when it is a form that can be read.
    let principal = match principal {
        Ok(principal) => principal,
        Err(e) if !is_multipart => return Err(e.into()),
        Err(e) => return Ok((Err(Refused::new(e, length, pace)),)),
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
        if n > DRAIN_LIMIT {
            return Err(too_large.into());
        }
        return Ok((Err(Refused::new(too_large, length, pace)),));
    }
    let boundary = boundary.unwrap_or_default();
    let admission = check_admission(state, principal, query, key, boundary)
        .await
        .and_then(|a| match length {
            // too large for the quota by its own account
            Some(n) if n > a.room.saturating_add(MULTIPART_SLACK) => Err(a.over_quota()),
            _ => Ok(a),
        });
    Ok((admission.map_err(|e| Refused::new(e, length, pace)),))
}

async fn check_admission(
    state: State,
    principal: Principal,
    query: String,
    key: Option<String>,
    boundary: String,
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
    // what the user's videos keep already
    let quota = state.settings.tuning.max_storage_per_user;
    let used = db::jobs::bytes_kept_by_owner(&state.pool, principal.user_id).await?;
    if used >= quota {
        metrics::counter!("vp_uploads_refused_total", "reason" => "quota").increment(1);
        return Err(ApiError::QuotaExceeded { used, quota });
    }
    let busy = |secs| ApiError::Unavailable {
        retry_after_secs: secs,
    };
    let upload = supervisor::upload().ok_or(busy(5))?;
    let ticket = call_t!(upload, UploadMsg::Admit, 5_000, principal.user_id)
        .map_err(|_| busy(5))?
        .map_err(|b| match b {
            Busy::Node { retry_after_secs } => busy(retry_after_secs),
            Busy::User { limit } => ApiError::TooManyUploads { limit },
        })?;
    Ok(Admitted {
        state,
        principal,
        options,
        key,
        ticket,
        boundary,
        room: quota - used,
    })
}

impl Admitted {
    /// The refusal of an upload larger than the room left in the quota.
    fn over_quota(&self) -> ApiError {
        let quota = self.state.settings.tuning.max_storage_per_user;
        metrics::counter!("vp_uploads_refused_total", "reason" => "quota").increment(1);
        ApiError::QuotaExceeded {
            used: quota - self.room,
            quota,
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

/// Removes an upload that did not make it: the row first, and the file only
/// if the row was still `uploading` (a commit that raced in made it a queued
/// job whose file must stay).
async fn remove_upload(state: &State, id: JobId, owner: UserId) -> Result<(), db::DbError> {
    if db::jobs::delete_uploading(&state.pool, id).await? {
        // the owner's next list, on this node, goes without it
        state.changes.touch(Topic::Owner(owner));
        if let Err(e) = state.store.delete_job(id).await {
            tracing::warn!(job_id = %id, error = %e, "could not delete refused upload's file");
        }
    }
    Ok(())
}

impl Cleanup {
    /// Removes the upload before its refusal is answered, so a list read
    /// right after the answer does not show it. A database that does not
    /// answer in time leaves the rest to the guard.
    async fn now(mut self) {
        let removed = tokio::time::timeout(
            CLEANUP_WAIT,
            remove_upload(&self.state, self.id, self.owner),
        )
        .await;
        if let Ok(Ok(())) = removed {
            self.armed = false;
        }
    }
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
            // a database that is away (the likely reason the upload
            // failed) is waited for
            let mut pause = CLEANUP_RETRY;
            loop {
                match remove_upload(&state, id, owner).await {
                    Ok(()) => return,
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
        (status = 408, description = "`request_timeout`: the client stopped sending, or sent slower than the minimum rate", body = ErrorBody),
        (status = 409, description = "`upload_in_progress`: the first attempt with this key still streams", body = ErrorBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media`: not a video; nothing kept", body = ErrorBody),
        (status = 422, description = "Bad frame options (`invalid_input`), or a video that would cost more than one job may (`over_budget`)", body = ErrorBody),
        (status = 429, description = "`too_many_uploads` (this user streams as many uploads as allowed) or `too_many_queued`", body = ErrorBody),
        (status = 507, description = "`insufficient_storage` (the media store refused the bytes) or `quota_exceeded` (the user's videos keep their whole storage quota)", body = ErrorBody),
    ))]
async fn upload(
    admitted: Result<Admitted, Refused>,
    body: RawBody,
) -> Result<warp::reply::Response, Rejection> {
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refused) => {
            // refused before the body: its bytes are dropped unparsed,
            // within a budget, so the client reads its answer on a clean
            // connection; past the budget the connection is closed rather
            // than reused (the server layer says so)
            form::drain_raw(body, refused.drain, refused.pace).await;
            return Ok(error::error_reply(&refused.error));
        }
    };
    // the upload limit, or the room left in the quota when that is less
    let max = admitted.state.settings.max_upload_bytes;
    let limit = max.min(admitted.room);
    let over_quota = (limit < max).then(|| admitted.over_quota());
    let mut form = Form::new(
        body,
        &admitted.boundary,
        FILE_FIELD,
        limit,
        pace(&admitted.state),
    );
    let mut cleanup = None;
    let result = match (receive(admitted, &mut form, &mut cleanup).await, over_quota) {
        (Err(ApiError::TooLarge { .. }), Some(over_quota)) => Err(over_quota),
        (result, _) => result,
    };
    if result.is_err() {
        // the rest of the form, within the same deadlines, then the upload
        // is gone before its refusal is answered
        form.drain(DRAIN_LIMIT).await;
        if let Some(cleanup) = cleanup {
            Cleanup::now(cleanup).await;
        }
    }
    Ok(match result {
        Ok(response) => response,
        Err(e) => error::error_reply(&e),
    })
}

/// Streams the file into the store and queues the job. The guard of a
/// stored file is left in `cleanup` for the caller to run on a refusal.
async fn receive(
    admitted: Admitted,
    form: &mut Form,
    cleanup: &mut Option<Cleanup>,
) -> Result<warp::reply::Response, ApiError> {
    let Admitted {
        state,
        principal,
        mut options,
        key,
        ticket: _ticket,
        boundary: _,
        room: _,
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

    let mut size = None;
    while let Some(part) = form.next_part().await? {
        if part.name() != FILE_FIELD {
            let name = part.name().to_owned();
            let value = form.text(part).await?;
            options.insert(&name, &value).map_err(ApiError::from)?;
            continue;
        }
        if size.is_some() {
            return Err(ApiError::InvalidField {
                field: FILE_FIELD.into(),
                message: "send one video per upload".into(),
            });
        }
        // options sent before the file are checked before it is streamed
        let early_options = FrameOptions::parse(&options, frames_cap)?;
        let filename = Filename::clean(part.filename());
        let new = NewJob {
            id: JobId::new(),
            user_id: principal.user_id,
            filename: filename.as_str(),
            options: &early_options,
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
        *cleanup = Some(Cleanup {
            id: job.id,
            owner: principal.user_id,
            state: state.clone(),
            armed: true,
        });
        size = Some(stream_to_store(&state, job.id, form, part).await?);
    }
    let (Some(size), Some(guard)) = (size, cleanup.as_mut()) else {
        return Err(ApiError::InvalidField {
            field: FILE_FIELD.into(),
            message: format!("the form has no file field named `{FILE_FIELD}`"),
        });
    };
    let id = guard.id;
    // the final options, with any fields sent after the file
    let options = FrameOptions::parse(&options, frames_cap)?;
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
    // what the job would cost, before it is queued
    if let Err(over) = crate::media::Budget::of(&state.settings.tuning).plan(
        &info,
        options.spacing(),
        options.max_frames,
        options.width,
    ) {
        metrics::counter!("vp_uploads_total", "result" => "over_budget").increment(1);
        tracing::info!(job_id = %id, reason = %over, "upload refused: over budget");
        return Err(ApiError::OverBudget(over.sentence()));
    }
    let upload = supervisor::upload().ok_or(ApiError::Unavailable {
        retry_after_secs: 5,
    })?;
    let stored = StoredUpload {
        job: id,
        size_bytes: size as i64,
        media_info: info,
        options,
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
    guard.armed = false;
    metrics::counter!("vp_uploads_total", "result" => "accepted").increment(1);
    metrics::counter!("vp_upload_bytes_total").increment(size);
    tracing::info!(job_id = %id, size, "upload queued");
    Ok(accepted(&state, &principal, &job))
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

/// Streams the file part into the store; the form holds it to the size
/// limit and the deadlines.
async fn stream_to_store(
    state: &State,
    id: JobId,
    form: &Form,
    mut part: Part,
) -> Result<u64, ApiError> {
    let mut writer = state.store.writer(&MediaStore::source_key(id));
    let mut size = 0u64;
    while let Some(chunk) = form.chunk(&mut part).await? {
        size += chunk.len() as u64;
        writer
            .write_all(&chunk)
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

/// Reads `body` as a form the way [`receive`] does, dropping the file's
/// bytes: the parts read, or the status of the refusal (see `http::fuzzing`).
#[cfg(fuzzing)]
pub(super) async fn read_form_for_fuzzing(body: &[u8]) -> Result<usize, u16> {
    let chunks: Vec<Result<bytes::Bytes, warp::Error>> = body
        .chunks(4096)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let pace = Pace {
        idle: Duration::from_secs(1),
        min_rate: 1,
        grace: Duration::from_secs(1),
    };
    let mut form = Form::new(
        Box::pin(futures::stream::iter(chunks)),
        "XBOUNDARY",
        FILE_FIELD,
        1 << 20,
        pace,
    );
    let mut parts = 0;
    let status = |e: ApiError| e.status().as_u16();
    while let Some(mut part) = form.next_part().await.map_err(status)? {
        parts += 1;
        if part.name() == FILE_FIELD {
            while form.chunk(&mut part).await.map_err(status)?.is_some() {}
        } else {
            let name = part.name().to_owned();
            let value = form.text(part).await.map_err(status)?;
            RawOptions::default()
                .insert(&name, &value)
                .map_err(|e| status(e.into()))?;
        }
    }
    Ok(parts)
}
