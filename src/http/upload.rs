//! `POST /api/v1/videos`: HTTP's side of an upload. The multipart form is
//! read within its deadlines and byte budgets (`form`), and its file is
//! handed as it arrives to the [`upload`](crate::upload) service, which
//! admits, stores, probes and queues it, removing whatever it kept when the
//! upload is refused. This module parses the request and answers it: 202
//! with the video, or the refusal, after reading what is left of the body
//! within a budget so that the client reads it on a clean connection.

mod form;

use std::time::Duration;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::route::Endpoint;
use super::videos::{Links, VideoEnvelope, video_json};
use super::{ApiError, State, authentication, error, with_state};
use crate::auth::Principal;
use crate::domain::{Filename, FrameOptions, IdempotencyKey, RawOptions};
use crate::upload::{Accepted, Admitted, NewUpload, Receiving, Started};
use form::{Form, MULTIPART_SLACK, Pace, Part, RawBody};

const FILE_FIELD: &str = "video";
/// The most of a refused upload that is read before answering.
const DRAIN_LIMIT: u64 = 32 * 1024 * 1024;
/// How long a refused upload's client gets to finish sending: past it, the
/// answer goes out and the connection is closed.
const DRAIN_TIME: Duration = Duration::from_secs(10);

pub fn upload_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state.clone())
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
struct Checked {
    state: State,
    principal: Principal,
    options: RawOptions,
    key: Option<IdempotencyKey>,
    upload: Admitted,
    boundary: String,
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
) -> Result<(Result<Checked, Refused>,), Rejection> {
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
    let file_at_least = |n: u64| n.saturating_sub(MULTIPART_SLACK);
    if let Some(n) = length
        && let Err(e) = state.uploads.check_declared(file_at_least(n))
    {
        let too_large = ApiError::from(e);
        if n > DRAIN_LIMIT {
            return Err(too_large.into());
        }
        return Ok((Err(Refused::new(too_large, length, pace)),));
    }
    let boundary = boundary.unwrap_or_default();
    let admission = check_admission(state, principal, query, key, boundary)
        .await
        .and_then(|checked| {
            // too large for the quota by its own account
            if let Some(n) = length {
                checked.upload.check_declared(file_at_least(n))?;
            }
            Ok(checked)
        });
    Ok((admission.map_err(|e| Refused::new(e, length, pace)),))
}

async fn check_admission(
    state: State,
    principal: Principal,
    query: String,
    key: Option<String>,
    boundary: String,
) -> Result<Checked, ApiError> {
    let mut options = RawOptions::default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        options.insert(&name, &value)?;
    }
    let key = key.as_deref().map(IdempotencyKey::parse).transpose()?;
    let upload = state.uploads.admit(principal.user_id).await?;
    Ok(Checked {
        state,
        principal,
        options,
        key,
        upload,
        boundary,
    })
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

#[utoipa::path(post, path = Endpoint::Upload.pattern(), tag = "videos",
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
    checked: Result<Checked, Refused>,
    body: RawBody,
) -> Result<warp::reply::Response, Rejection> {
    let checked = match checked {
        Ok(checked) => checked,
        Err(refused) => {
            // refused before the body: its bytes are dropped unparsed,
            // within a budget, so the client reads its answer on a clean
            // connection; past the budget the connection is closed rather
            // than reused (the server layer says so)
            form::drain_raw(body, refused.drain, refused.pace).await;
            return Ok(error::error_reply(&refused.error));
        }
    };
    // the form holds the file to the admitted limit; a file over it is
    // refused the way the service words it (over the quota, when the quota
    // is the limit)
    let too_large = ApiError::from(checked.upload.too_large());
    let mut form = Form::new(
        body,
        &checked.boundary,
        FILE_FIELD,
        checked.upload.limit(),
        pace(&checked.state),
    );
    let mut receiving = None;
    let result = match receive(checked, &mut form, &mut receiving).await {
        Err(ApiError::TooLarge { .. }) => Err(too_large),
        result => result,
    };
    if result.is_err() {
        // the rest of the form, within the same deadlines, then the upload
        // is gone before its refusal is answered
        form.drain(DRAIN_LIMIT).await;
        if let Some(file) = receiving {
            file.discard().await;
        }
    }
    Ok(match result {
        Ok(response) => response,
        Err(e) => error::error_reply(&e),
    })
}

/// Reads the form, handing its file to the upload service as it arrives,
/// and answers with the queued video. A file still arriving when the form
/// is refused is left in `receiving`, for the caller to discard.
async fn receive(
    checked: Checked,
    form: &mut Form,
    receiving: &mut Option<Receiving>,
) -> Result<warp::reply::Response, ApiError> {
    let Checked {
        state,
        principal,
        mut options,
        key,
        upload,
        boundary: _,
    } = checked;
    let frames_cap = state.uploads.limits().max_frames;

    // a retry of an upload that was accepted before gets the same video
    if let Some(key) = &key
        && let Some(existing) = upload.find_existing(key).await?
    {
        return Ok(accepted(&state, &principal, &existing));
    }

    let mut upload = Some(upload);
    while let Some(part) = form.next_part().await? {
        if part.name() != FILE_FIELD {
            let name = part.name().to_owned();
            let value = form.text(part).await?;
            options.insert(&name, &value)?;
            continue;
        }
        let Some(admitted) = upload.take() else {
            return Err(ApiError::InvalidField {
                field: FILE_FIELD.into(),
                message: "send one video per upload".into(),
            });
        };
        // options sent before the file are checked before it is streamed
        let file = NewUpload {
            filename: Filename::clean(part.filename()),
            options: FrameOptions::parse(&options, frames_cap)?,
            key: key.clone(),
        };
        match admitted.start(file).await? {
            Started::Existing(existing) => return Ok(accepted(&state, &principal, &existing)),
            Started::Receiving(file) => stream_file(form, part, receiving.insert(file)).await?,
        }
    }
    let Some(file) = receiving.take() else {
        return Err(ApiError::InvalidField {
            field: FILE_FIELD.into(),
            message: format!("the form has no file field named `{FILE_FIELD}`"),
        });
    };
    // the final options, with any fields sent after the file
    let options = match FrameOptions::parse(&options, frames_cap) {
        Ok(options) => options,
        Err(e) => {
            file.discard().await;
            return Err(e.into());
        }
    };
    let queued = file.finish(options).await?;
    Ok(accepted(&state, &principal, &queued))
}

/// The 202 with the video and its `Location` (a video made again answers so too).
pub(super) fn accepted(
    state: &State,
    principal: &Principal,
    upload: &Accepted,
) -> warp::reply::Response {
    let location = format!("/api/v1/videos/{}", upload.job.id);
    let json = video_json(&upload.job, &Links::new(state, principal));
    let reply = warp::reply::with_status(warp::reply::json(&json), StatusCode::ACCEPTED);
    warp::reply::with_header(reply, "location", location).into_response()
}

/// Hands the file part to the upload service chunk by chunk; the form
/// holds it to the size limit and the deadlines.
async fn stream_file(form: &Form, mut part: Part, file: &mut Receiving) -> Result<(), ApiError> {
    while let Some(chunk) = form.chunk(&mut part).await? {
        file.write(&chunk).await?;
    }
    Ok(())
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
