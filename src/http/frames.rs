//! A done video's frames on screen: the list of its frames (a page at a
//! time, from the frame index), each frame (its byte range of the stored
//! zip), its thumbnail and the contact sheet. Ownership and readiness are
//! the zip's (`download`); a frames link (`?token=`) replaces the header.
//! What is served is immutable for the attempt that made it: it is cached
//! for long, under an ETag named after the attempt.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::http::{HeaderValue, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::download::{done_zip, link_credentials, vanished};
use super::error::ErrorBody;
use super::route::{Endpoint, WithId, WithIdAndIndex};
use super::videos::find_own;
use super::{ApiError, State, authenticate, with_state};
use crate::auth::{LinkScope, Principal};
use crate::db::jobs::JobRow;
use crate::media::ImageFormat;
use crate::media::frame_index::{self, FrameRecord, legacy};
use crate::storage::{AttemptKeys, MediaStore, StorageError};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

/// What every frames request carries besides its path: the query (where a
/// frames link's token is) and the headers.
struct Asked {
    state: State,
    query: String,
    authorization: Option<String>,
    if_none_match: Option<String>,
}

fn request(state: State) -> impl Filter<Extract = (Asked,), Error = Rejection> + Clone {
    with_state(state)
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|state, query, authorization, if_none_match| Asked {
            state,
            query,
            authorization,
            if_none_match,
        })
}

pub fn list_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(request(state)).and_then(list)
}

pub fn frame_route(
    at: WithIdAndIndex,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(request(state)).and_then(frame)
}

pub fn thumbnail_route(
    at: WithIdAndIndex,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(request(state)).and_then(thumbnail)
}

pub fn sheet_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(request(state)).and_then(sheet)
}

/// A done video of the caller's, and where its attempt's objects are.
struct Ready {
    job: JobRow,
    zip: object_store::path::Path,
    beside: AttemptKeys,
    /// Names the attempt: the ETags' stem.
    attempt: String,
}

/// The caller (by a frames link or the header) and their done video `id`.
async fn ready(asked: &Asked, id: &str) -> Result<(Principal, Ready), ApiError> {
    let state = &asked.state;
    let authorization = asked.authorization.as_deref();
    let caller = link_credentials(id, &asked.query, authorization, LinkScope::Frames);
    let principal = authenticate(state, caller).await?;
    let job = find_own(state, &principal, id).await?;
    let zip = done_zip(&job)?;
    let beside = MediaStore::attempt_keys(&zip);
    let attempt = zip
        .filename()
        .and_then(|n| n.strip_suffix(".zip"))
        .unwrap_or_default()
        .to_owned();
    Ok((
        principal,
        Ready {
            job,
            zip,
            beside,
            attempt,
        },
    ))
}

/// Reads `range` of `key`; a missing object is the video's (retention, or
/// deleted meanwhile) when its zip went too, else `missing`.
async fn read(
    state: &State,
    ready: &Ready,
    key: &object_store::path::Path,
    range: Option<std::ops::Range<u64>>,
    missing: ApiError,
) -> Result<Bytes, ApiError> {
    match state.store.read_bytes(key, range).await {
        Ok(bytes) => Ok(bytes),
        Err(StorageError::NotFound) => match state.store.size(&ready.zip).await {
            Ok(_) => Err(missing),
            Err(StorageError::NotFound) => Err(vanished(state, &ready.job)),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Records `first..first + n` of the video's frame index.
async fn records(
    state: &State,
    ready: &Ready,
    first: u32,
    n: u32,
) -> Result<Vec<FrameRecord>, ApiError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let range = frame_index::records_range(first, n);
    let index = &ready.beside.index;
    let bytes = match read(state, ready, index, Some(range.clone()), ApiError::NotFound).await {
        Ok(bytes) => bytes,
        // a video finished before frame indexes has none: made once from
        // its zip's directory
        Err(ApiError::NotFound) => {
            let whole = legacy_index(state, ready).await?;
            let (start, end) = (range.start as usize, range.end as usize);
            let page = whole.get(start..end).ok_or(ApiError::NotFound)?;
            Bytes::copy_from_slice(page)
        }
        Err(e) => return Err(e),
    };
    frame_index::decode_records(&bytes).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The frame index of a zip written before indexes were, from its central
/// directory and manifest (a few range reads), stored beside it for the
/// next request. Its frames have no thumbnails.
async fn legacy_index(state: &State, ready: &Ready) -> Result<Vec<u8>, ApiError> {
    let zip = &ready.zip;
    let store = &state.store;
    let bad = |e: legacy::LegacyError| ApiError::Internal(e.to_string());
    let size = match store.size(zip).await {
        Ok(size) => size,
        Err(StorageError::NotFound) => return Err(vanished(state, &ready.job)),
        Err(e) => return Err(e.into()),
    };
    let tail = store
        .read_bytes(zip, Some(size.saturating_sub(legacy::TAIL)..size))
        .await?;
    let directory = legacy::directory_range(&tail, size).map_err(bad)?;
    let directory = store.read_bytes(zip, Some(directory)).await?;
    let entries = legacy::entries(&directory).map_err(bad)?;
    let first = entries.first().ok_or(ApiError::NotFound)?;
    let local = first.header..first.header + legacy::LOCAL_HEADER;
    let delta = legacy::local_extra_delta(first, &store.read_bytes(zip, Some(local)).await?)
        .map_err(bad)?;
    let manifest = entries
        .iter()
        .find(|e| e.name == "manifest.json" && e.size <= legacy::MAX_MANIFEST)
        .ok_or(ApiError::NotFound)?;
    let at = (manifest.header
        + legacy::LOCAL_HEADER
        + manifest.name.len() as u64
        + u64::from(manifest.extra_len))
    .saturating_add_signed(delta);
    let manifest = store.read_bytes(zip, Some(at..at + manifest.size)).await?;
    let records =
        legacy::records(&entries, &manifest, delta, frame_size(&ready.job)).map_err(bad)?;
    let index = frame_index::encode(frame_format(&ready.job), &records);
    if let Err(e) = store.put(&ready.beside.index, index.clone().into()).await {
        tracing::warn!(error = %e, job_id = %ready.job.id, "could not keep a frame index made from a zip");
    }
    Ok(index)
}

/// The frames' size from the probe and the width asked for (ffmpeg's
/// `scale=W:-2`: the height even); 0×0 when the probe is not kept.
fn frame_size(job: &JobRow) -> (u16, u16) {
    let Some(info) = &job.media_info else {
        return (0, 0);
    };
    let (w, h) = (info.video.width, info.video.height);
    let (w, h) = match job.options.frames().ok().and_then(|o| o.width) {
        Some(out) if w > 0 => {
            let scaled = f64::from(h) * f64::from(out) / f64::from(w);
            (out, ((scaled / 2.0).round() * 2.0) as u32)
        }
        _ => (w, h),
    };
    let clamp = |v: u32| v.min(u32::from(u16::MAX)) as u16;
    (clamp(w), clamp(h))
}

/// The format of the video's frames.
fn frame_format(job: &JobRow) -> ImageFormat {
    job.options
        .frames()
        .map(|o| o.format)
        .unwrap_or(ImageFormat::Jpg)
}

/// The number of frames the video's zip holds.
fn count(job: &JobRow) -> u32 {
    job.frames.unwrap_or(0).max(0) as u32
}

/// One frame in the list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FrameView {
    /// From 0, in time order.
    index: u32,
    /// Seconds from the start of the video.
    t: f64,
    /// The frame's size in bytes.
    bytes: u32,
    width: u32,
    height: u32,
    /// The frame (a link that needs no header, for `<img src>`).
    url: String,
    /// Its thumbnail, at most 320 px wide; null when it has none.
    thumbnail_url: Option<String>,
}

/// A page of a video's frames.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FrameList {
    frames: Vec<FrameView>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
    /// How many frames the video has.
    count: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    #[allow(dead_code)]
    token: Option<String>,
}

/// The page asked for: its first frame and size.
fn page(query: &ListQuery, count: u32) -> Result<(u32, u32), ApiError> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::InvalidInput(format!("limit must be from 1 to {MAX_LIMIT}"))
            })?,
    };
    // a cursor is the index of the page's first frame
    let first = match query.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|i| *i <= count)
            .ok_or_else(|| ApiError::InvalidInput("cursor is not one this API gave out".into()))?,
    };
    Ok((first, limit.min(count - first)))
}

/// The `?token=` to put in the list's links: the caller's own frames link,
/// or one made from their session; none for a caller without a session.
fn link_token(state: &State, principal: &Principal, query: &str, job: &JobRow) -> Option<String> {
    let presented = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.into_owned());
    presented.or_else(|| {
        let session = principal.session.as_ref()?;
        state
            .sessions
            .link_token(session, job.id, LinkScope::Frames)
    })
}

#[utoipa::path(get, path = Endpoint::ListFrames.pattern(), operation_id = "list_frames", tag = "frames",
    security(("bearer" = []), ("frames_link" = [])),
    params(
        ("id" = String, Path, description = "The video's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("token" = Option<String>, Query, description = "A frames link's token; replaces the header"),
    ),
    responses(
        (status = 200, description = "The video's frames in time order", body = FrameList),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
        (status = 409, description = "`not_ready`: not done (yet)", body = ErrorBody),
        (status = 410, description = "`expired`: removed after the retention time", body = ErrorBody),
        (status = 422, description = "Bad limit or cursor, or an unknown parameter", body = ErrorBody),
    ))]
async fn list(id: String, asked: Asked) -> Result<impl Reply, Rejection> {
    let (principal, ready) = ready(&asked, &id).await?;
    let (state, query) = (&asked.state, &asked.query);
    let parsed: ListQuery = super::videos::parse_query(query)?;
    let total = count(&ready.job);
    let (first, n) = page(&parsed, total)?;
    let records = records(state, &ready, first, n).await?;
    let token = link_token(state, &principal, query, &ready.job);
    let with_token = |path: String| match &token {
        Some(t) => format!("{path}?token={t}"),
        None => path,
    };
    let base = format!("/api/v1/videos/{}/frames", ready.job.id);
    let frames = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let index = first + i as u32;
            FrameView {
                index,
                t: r.t,
                bytes: r.data_len,
                width: u32::from(r.width),
                height: u32::from(r.height),
                url: with_token(format!("{base}/{index}")),
                thumbnail_url: r
                    .thumbnail()
                    .map(|_| with_token(format!("{base}/{index}/thumbnail"))),
            }
        })
        .collect();
    let next = first + n;
    Ok(warp::reply::json(&FrameList {
        frames,
        next_cursor: (next < total).then(|| next.to_string()),
        count: total,
    }))
}

/// The frame number `index` names, when the video has that frame.
fn frame_number(job: &JobRow, index: &str) -> Result<u32, ApiError> {
    index
        .parse::<u32>()
        .ok()
        .filter(|i| *i < count(job))
        .ok_or(ApiError::NotFound)
}

/// The frame `index`'s record in the video's index.
async fn one_record(state: &State, ready: &Ready, index: u32) -> Result<FrameRecord, ApiError> {
    records(state, ready, index, 1)
        .await?
        .pop()
        .ok_or(ApiError::NotFound)
}

/// An answer that is an image.
type Image = warp::reply::Response;

/// An immutable image, cached for a year under `etag`: the 304 when the
/// client has it already (answered before anything is read from the
/// store), else the image `read` gives.
async fn image<F>(
    asked: &Asked,
    etag: String,
    content_type: &'static str,
    read: F,
) -> Result<Image, ApiError>
where
    F: std::future::Future<Output = Result<Bytes, ApiError>>,
{
    let etag = format!("\"{etag}\"");
    let (status, body) = match super::etag_matches(asked.if_none_match.as_deref(), &etag) {
        true => (StatusCode::NOT_MODIFIED, Bytes::new()),
        false => (StatusCode::OK, read.await?),
    };
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    headers.insert(
        "cache-control",
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    headers.insert(
        "etag",
        HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

#[utoipa::path(get, path = Endpoint::Frame.pattern(), tag = "frames",
    security(("bearer" = []), ("frames_link" = [])),
    params(
        ("id" = String, Path, description = "The video's id"),
        ("index" = u32, Path, description = "The frame's index, from 0"),
        ("token" = Option<String>, Query, description = "A frames link's token; replaces the header"),
    ),
    responses(
        (status = 200, description = "The frame, as the zip holds it", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such video of the caller's, or no such frame", body = ErrorBody),
        (status = 409, description = "`not_ready`: not done (yet)", body = ErrorBody),
        (status = 410, description = "`expired`: removed after the retention time", body = ErrorBody),
    ))]
async fn frame(id: String, index: String, asked: Asked) -> Result<Image, Rejection> {
    Ok(frame_image(FrameImage::Frame, &id, &index, &asked).await?)
}

#[utoipa::path(get, path = Endpoint::Thumbnail.pattern(), tag = "frames",
    security(("bearer" = []), ("frames_link" = [])),
    params(
        ("id" = String, Path, description = "The video's id"),
        ("index" = u32, Path, description = "The frame's index, from 0"),
        ("token" = Option<String>, Query, description = "A frames link's token; replaces the header"),
    ),
    responses(
        (status = 200, description = "The frame's thumbnail: a JPEG at most 320 px wide", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such video of the caller's, no such frame, or a frame without a thumbnail (those of videos finished before thumbnails were made)", body = ErrorBody),
        (status = 409, description = "`not_ready`: not done (yet)", body = ErrorBody),
        (status = 410, description = "`expired`: removed after the retention time", body = ErrorBody),
    ))]
async fn thumbnail(id: String, index: String, asked: Asked) -> Result<Image, Rejection> {
    Ok(frame_image(FrameImage::Thumbnail, &id, &index, &asked).await?)
}

/// Which image of a frame a request is for.
#[derive(Clone, Copy)]
enum FrameImage {
    /// The frame, as the zip holds it.
    Frame,
    /// Its thumbnail, beside the zip (a JPEG).
    Thumbnail,
}

/// A frame's image: the frame or its thumbnail, each under its own ETag.
async fn frame_image(
    which: FrameImage,
    id: &str,
    index: &str,
    asked: &Asked,
) -> Result<Image, ApiError> {
    let (_, ready) = ready(asked, id).await?;
    let state = &asked.state;
    let index = frame_number(&ready.job, index)?;
    let (etag, content_type) = match which {
        FrameImage::Frame => {
            let content_type = match frame_format(&ready.job) {
                ImageFormat::Jpg => "image/jpeg",
                ImageFormat::Png => "image/png",
            };
            (format!("{}.{index}", ready.attempt), content_type)
        }
        FrameImage::Thumbnail => (format!("{}.{index}.thumbnail", ready.attempt), "image/jpeg"),
    };
    image(asked, etag, content_type, async {
        let record = one_record(state, &ready, index).await?;
        let (key, range) = match which {
            FrameImage::Frame => (&ready.zip, record.data()),
            FrameImage::Thumbnail => {
                let range = record.thumbnail().ok_or(ApiError::NotFound)?;
                (&ready.beside.thumbs, range)
            }
        };
        read(state, &ready, key, Some(range), ApiError::NotFound).await
    })
    .await
}

#[utoipa::path(get, path = Endpoint::ContactSheet.pattern(), tag = "frames",
    security(("bearer" = []), ("frames_link" = [])),
    params(
        ("id" = String, Path, description = "The video's id"),
        ("token" = Option<String>, Query, description = "A frames link's token (the video's contact_sheet_url); replaces the header"),
    ),
    responses(
        (status = 200, description = "A JPEG grid of up to 24 thumbnails chosen evenly across the video, each with its timestamp", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such video of the caller's (or one finished before contact sheets were made)", body = ErrorBody),
        (status = 409, description = "`not_ready`: not done (yet)", body = ErrorBody),
        (status = 410, description = "`expired`: removed after the retention time", body = ErrorBody),
    ))]
async fn sheet(id: String, asked: Asked) -> Result<Image, Rejection> {
    let (_, ready) = ready(&asked, &id).await?;
    let state = &asked.state;
    let etag = format!("{}.sheet", ready.attempt);
    let sheet = read(state, &ready, &ready.beside.sheet, None, ApiError::NotFound);
    Ok(image(&asked, etag, "image/jpeg", sheet).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, cursor: Option<&str>) -> ListQuery {
        ListQuery {
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
            token: None,
        }
    }

    #[test]
    fn pages() {
        assert_eq!(page(&query(None, None), 120).unwrap(), (0, 50));
        assert_eq!(
            page(&query(Some("200"), Some("100")), 120).unwrap(),
            (100, 20)
        );
        assert_eq!(page(&query(None, Some("120")), 120).unwrap(), (120, 0));
        assert_eq!(page(&query(Some("5"), None), 0).unwrap(), (0, 0));
        for (limit, cursor) in [
            (Some("0"), None),
            (Some("201"), None),
            (Some("x"), None),
            (None, Some("121")),
            (None, Some("-1")),
            (None, Some("abc")),
        ] {
            assert!(
                page(&query(limit, cursor), 120).is_err(),
                "{limit:?} {cursor:?}"
            );
        }
    }
}
