//! Several videos' zips as one download. `POST /api/v1/videos/archive`
//! checks the selection (the caller's, done, kept) and answers a
//! short-lived link; the link (`GET`, its `token` standing for the header)
//! streams one zip whose entries are the videos' zips, stored as they are
//! (they hold JPEG or PNG already), read from the media store as they are
//! sent: never whole in memory or on disk.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use warp::http::HeaderValue;
use warp::{Filter, Rejection, Reply};
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

use super::error::{ErrorBody, error_reply};
use super::route::Endpoint;
use super::videos::{Links, Selection};
use super::{ApiError, State, authenticate, json_body, signed_in, with_state};
use crate::auth::{Credentials, Principal};
use crate::db::{self, jobs::JobRow};
use crate::domain::JobId;
use crate::jobs::JobState;
use crate::storage::{MediaStore, StorageError};

/// Inner zips at least this large need zip64 entries.
const ZIP64_FROM: u64 = u32::MAX as u64;

pub fn create_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state.clone())
        .and(json_body(&state))
        .and_then(create)
}

pub fn download_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state)
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("authorization"))
        .then(|state, query, authorization: Option<String>| async move {
            // answered here, not rejected: `GET /api/v1/videos/{id}`
            // matches this path too, and its refusal would win
            download(state, query, authorization)
                .await
                .unwrap_or_else(|e| error_reply(&e))
        })
}

/// Where the archive is.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ArchiveLink {
    /// A link, good for 15 minutes, that needs no header.
    url: String,
}

/// The zip of a done video that is still kept, or why not.
fn kept_zip(job: &JobRow) -> Result<&str, ApiError> {
    match (job.state, job.expired_at, &job.zip_object) {
        (JobState::Done, None, Some(object)) => Ok(object),
        (JobState::Done, Some(_), _) => Err(ApiError::Expired),
        _ => Err(ApiError::NotReady),
    }
}

#[utoipa::path(post, path = Endpoint::CreateArchive.pattern(), operation_id = "create_archive", tag = "videos",
    security(("bearer" = [])),
    request_body = Selection,
    responses(
        (status = 200, description = "A link that streams one zip holding each video's zip, as `<name>.zip`", body = ArchiveLink),
        (status = 404, description = "One of the ids is no video of the caller's", body = ErrorBody),
        (status = 409, description = "`not_ready`: one of the videos is not done", body = ErrorBody),
        (status = 410, description = "`expired`: one of the videos' zips was deleted after the retention period", body = ErrorBody),
        (status = 422, description = "`invalid_input`: no ids, more than 100, or one that is no id", body = ErrorBody),
    ))]
async fn create(
    state: State,
    principal: Principal,
    body: Selection,
) -> Result<impl Reply, Rejection> {
    let ids = body.ids()?;
    let jobs = db::jobs::get_many_for_owner(&state.pool, principal.user_id, &ids)
        .await
        .map_err(ApiError::from)?;
    if jobs.len() != ids.len() {
        return Err(ApiError::NotFound.into());
    }
    for job in &jobs {
        kept_zip(job)?;
    }
    let url = Links::new(&state, &principal)
        .archive_url(&ids)
        .ok_or_else(|| ApiError::Internal("could not make an archive link".into()))?;
    Ok(warp::reply::json(&ArchiveLink { url }))
}

/// The ids and the link's token of a download.
fn parse_query(query: &str) -> Result<(Vec<JobId>, Option<String>), ApiError> {
    let (mut ids, mut token) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "ids" => ids = Some(value.into_owned()),
            "token" => token = Some(value.into_owned()),
            other => {
                return Err(ApiError::InvalidInput(format!(
                    "unknown parameter `{other}`"
                )));
            }
        }
    }
    let ids = ids.unwrap_or_default();
    let ids: Vec<JobId> = ids
        .split(',')
        .map(|id| JobId::parse(id).ok_or(ApiError::NotFound))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() || ids.len() > super::videos::MAX_SELECTION {
        return Err(ApiError::NotFound);
    }
    Ok((ids, token))
}

/// Entry names: `<name>.zip`, no directory part (a name is user input),
/// made unique with ` (2)`, ` (3)`, … in the order of the selection.
fn entry_names(jobs: &[JobRow]) -> Vec<String> {
    let mut taken = HashSet::new();
    jobs.iter()
        .map(|job| {
            let stem: String = job
                .display_name()
                .chars()
                .map(|c| {
                    if matches!(c, '/' | '\\') || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            let mut name = format!("{stem}.zip");
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{stem} ({n}).zip");
                n += 1;
            }
            name
        })
        .collect()
}

#[utoipa::path(get, path = Endpoint::DownloadArchive.pattern(), operation_id = "download_archive", tag = "videos",
    security(("bearer" = []), ("download_link" = [])),
    params(
        ("ids" = String, Query, description = "The videos, a comma list, as in the link"),
        ("token" = Option<String>, Query, description = "From the archive link; replaces the header"),
    ),
    responses(
        (status = 200, description = "One zip holding each video's zip, streamed", content_type = "application/zip", body = Vec<u8>),
        (status = 404, description = "None of the videos is the caller's and done any more", body = ErrorBody),
        (status = 422, description = "`invalid_input`: the query is not the link's (no ids, an unknown parameter)", body = ErrorBody),
    ))]
async fn download(
    state: State,
    query: String,
    authorization: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    let (ids, token) = parse_query(&query)?;
    let credentials = match token {
        Some(token) => Some(Credentials::ArchiveLink {
            token,
            videos: ids.clone(),
        }),
        None => authorization.as_deref().and_then(Credentials::from_header),
    };
    let principal = authenticate(&state, credentials).await?;
    // videos deleted or expired since the link was made are left out
    let jobs: Vec<JobRow> = db::jobs::get_many_for_owner(&state.pool, principal.user_id, &ids)
        .await?
        .into_iter()
        .filter(|job| kept_zip(job).is_ok())
        .collect();
    if jobs.is_empty() {
        return Err(ApiError::NotFound);
    }
    let entries: Vec<Entry> = entry_names(&jobs)
        .into_iter()
        .zip(&jobs)
        .filter_map(|(name, job)| {
            Some(Entry {
                name,
                key: MediaStore::key(job.zip_object.as_deref()?),
                large: job.zip_bytes.unwrap_or(0).max(0) as u64 >= ZIP64_FROM,
            })
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(e) = write_archive(&store, entries, &tx).await {
            // the client sees the body break off, not a zip that ends early
            tracing::warn!(error = %e, "archive stopped");
            let _ = tx.send(Err(e)).await;
        }
    });
    let mut response =
        warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/zip"));
    headers.insert(
        "content-disposition",
        HeaderValue::from_static("attachment; filename=\"videos.zip\""),
    );
    Ok(response)
}

/// One video's zip in the archive.
struct Entry {
    name: String,
    key: object_store::path::Path,
    large: bool,
}

/// What the zip writer has written and the client not yet been sent.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Pending {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.0.lock().unwrap()))
    }
}

type Sender = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// The client went away: nothing more to write.
fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
}

/// Sends what the writer wrote so far; the bounded channel makes a slow
/// client slow the reading down.
async fn send(tx: &Sender, pending: &Pending) -> std::io::Result<()> {
    let bytes = pending.take();
    if bytes.is_empty() {
        return Ok(());
    }
    tx.send(Ok(bytes)).await.map_err(|_| gone())
}

/// Writes the archive into `tx`, one store chunk at a time.
async fn write_archive(
    store: &MediaStore,
    entries: Vec<Entry>,
    tx: &Sender,
) -> std::io::Result<()> {
    let zip_error = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(e) => e,
        other => std::io::Error::other(other),
    };
    let store_error = |e: StorageError| std::io::Error::other(e.to_string());
    let pending = Pending::default();
    let mut zip = ZipWriter::new_stream(pending.clone());
    for entry in entries {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(entry.large);
        let mut body = store.read(&entry.key, None).await.map_err(store_error)?;
        zip.start_file(entry.name.as_str(), options)
            .map_err(zip_error)?;
        while let Some(chunk) = body.next().await {
            zip.write_all(&chunk.map_err(store_error)?)?;
            send(tx, &pending).await?;
        }
    }
    zip.finish().map_err(zip_error)?;
    send(tx, &pending).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_their_videos() {
        let (a, b) = (JobId::new(), JobId::new());
        let (ids, token) = parse_query(&format!("ids={a},{b}&token=t")).unwrap();
        assert_eq!((ids, token.as_deref()), (vec![a, b], Some("t")));
        assert!(parse_query(&format!("ids={a}")).unwrap().1.is_none());
        for bad in ["", "ids=", "ids=x", &format!("ids={a}&other=1")] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
