//! `GET /api/v1/videos/{id}/frames.zip`: streams the stored zip, whole or a
//! single byte range (so interrupted downloads resume).

use std::ops::Range;

use futures::StreamExt;
use warp::http::{HeaderValue, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::route::{Endpoint, WithId};
use super::videos::find_own;
use super::{ApiError, State, authenticate, with_state};
use crate::auth::{Credentials, LinkScope};
use crate::db::jobs::JobRow;
use crate::domain::JobId;
use crate::jobs::JobState;
use crate::storage::{MediaStore, StorageError};

/// What a download takes past its id (GET and HEAD alike).
pub fn download_route(
    at: WithId,
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    at.and(with_state(state))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("range"))
        .and_then(download)
}

/// A download is authorised by a download link's `token` parameter (which
/// must name this video), else by the `Authorization` header.
fn credentials(id: &str, query: &str, header: Option<&str>) -> Option<Credentials> {
    link_credentials(id, query, header, LinkScope::Download)
}

/// The credentials of a request for video `id`: a link's `token` query
/// parameter (of `scope`; it must name this video), else the
/// `Authorization` header.
pub(super) fn link_credentials(
    id: &str,
    query: &str,
    header: Option<&str>,
    scope: LinkScope,
) -> Option<Credentials> {
    let link = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.into_owned());
    match link {
        Some(token) => Some(Credentials::Link {
            token,
            // an id that is no id matches no link; the token is then refused
            video: JobId::parse(id).unwrap_or_default(),
            scope,
        }),
        None => header.and_then(Credentials::from_header),
    }
}

/// The zip went between the row check and the read: removed by retention
/// (410), or with the whole video by its owner (404).
pub(super) fn vanished(state: &State, job: &JobRow) -> ApiError {
    let retention = chrono::Duration::days(i64::from(state.settings.retention_days));
    match job.finished_at {
        Some(finished) if finished + retention <= chrono::Utc::now() => ApiError::Expired,
        _ => ApiError::NotFound,
    }
}

/// The zip of a done video; 410 once retention removed it, 409 before it is done.
pub(super) fn done_zip(job: &JobRow) -> Result<object_store::path::Path, ApiError> {
    match (job.state, job.expired_at, &job.zip_object) {
        (JobState::Done, None, Some(object)) => Ok(MediaStore::key(object)),
        (JobState::Done, Some(_), _) => Err(ApiError::Expired),
        _ => Err(ApiError::NotReady),
    }
}

#[utoipa::path(get, path = Endpoint::Download.pattern(), tag = "videos",
    security(("bearer" = []), ("download_link" = [])),
    params(
        ("id" = String, Path, description = "The video's id"),
        ("token" = Option<String>, Query, description = "From the video's download_url; replaces the header"),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=START-END`"),
    ),
    responses(
        (status = 200, description = "The zip: frames in time order and manifest.json", content_type = "application/zip", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/zip", body = Vec<u8>),
        (status = 404, description = "No such video of the caller's", body = ErrorBody),
        (status = 409, description = "`not_ready`: not done (yet)", body = ErrorBody),
        (status = 410, description = "`expired`: removed after the retention time", body = ErrorBody),
        (status = 416, description = "The range is outside the zip", body = ErrorBody),
    ))]
async fn download(
    id: String,
    state: State,
    query: String,
    authorization: Option<String>,
    range: Option<String>,
) -> Result<impl Reply, Rejection> {
    let caller = credentials(&id, &query, authorization.as_deref());
    let principal = authenticate(&state, caller).await?;
    let job = find_own(&state, &principal, &id).await?;
    let key = done_zip(&job)?;
    let size = match state.store.size(&key).await {
        Ok(size) => size,
        Err(StorageError::NotFound) => return Err(vanished(&state, &job).into()),
        Err(e) => return Err(ApiError::from(e).into()),
    };
    let wanted = match range.as_deref().map(|r| parse_range(r, size)) {
        None | Some(RangeRequest::Ignore) => None,
        Some(RangeRequest::Unsatisfiable) => {
            return Err(ApiError::RangeNotSatisfiable { size }.into());
        }
        Some(RangeRequest::Bytes(r)) => Some(r),
    };
    let (status, body_range) = match &wanted {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
        None => (StatusCode::OK, 0..size),
    };
    let stream = match state.store.read(&key, wanted.clone()).await {
        Ok(stream) => stream,
        Err(StorageError::NotFound) => return Err(vanished(&state, &job).into()),
        Err(e) => return Err(ApiError::from(e).into()),
    };
    // warp wants a Sync body stream: forward through a bounded channel
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            // the client went away: stop reading
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    let body = warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response: Response<_> = body.into_response();
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let stem = job
        .filename
        .rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or(&job.filename);
    let ascii_stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_. ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let header =
        |v: String| HeaderValue::from_str(&v).map_err(|e| ApiError::Internal(e.to_string()));
    headers.insert("content-type", HeaderValue::from_static("application/zip"));
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    headers.insert(
        "content-length",
        HeaderValue::from(body_range.end - body_range.start),
    );
    headers.insert(
        "content-disposition",
        header(format!("attachment; filename=\"{ascii_stem}-frames.zip\""))?,
    );
    headers.insert("etag", header(format!("\"{}-{size}\"", job.id))?);
    if wanted.is_some() {
        headers.insert(
            "content-range",
            header(format!(
                "bytes {}-{}/{size}",
                body_range.start,
                body_range.end - 1
            ))?,
        );
    }
    Ok(response)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Bytes(Range<u64>),
    Unsatisfiable,
    /// Malformed or multiple ranges: answer with the whole file (RFC 9110 allows it).
    Ignore,
}

/// Parses a single `bytes=` range against an object of `size` bytes.
fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (start.trim().is_empty(), end.trim().is_empty()) {
        // suffix: the last N bytes
        (true, false) => match parse(end) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) => size.saturating_sub(n)..size,
            None => return RangeRequest::Ignore,
        },
        (false, true) => match parse(start) {
            Some(s) => s..size,
            None => return RangeRequest::Ignore,
        },
        (false, false) => match (parse(start), parse(end)) {
            (Some(s), Some(e)) if s <= e => s..(e.saturating_add(1)).min(size),
            _ => return RangeRequest::Ignore,
        },
        (true, true) => return RangeRequest::Ignore,
    };
    if range.start >= size || range.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Bytes(range)
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn ranges() {
        let table = [
            ("bytes=0-99", Bytes(0..100)),
            ("bytes=100-", Bytes(100..1000)),
            ("bytes=-100", Bytes(900..1000)),
            ("bytes=-5000", Bytes(0..1000)),
            ("bytes=990-5000", Bytes(990..1000)),
            ("bytes=999-999", Bytes(999..1000)),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=5-1", Ignore),
            ("bytes=0-1,5-6", Ignore),
            ("items=0-1", Ignore),
            ("bytes=a-b", Ignore),
            ("bytes=-", Ignore),
        ];
        for (header, expected) in table {
            assert_eq!(parse_range(header, 1000), expected, "{header}");
        }
    }
}
