//! Why an upload was refused. Each variant is one answer a client can act
//! on; `http::error` maps them to statuses, a resumable endpoint may map
//! them its own way.

use crate::db::DbError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The user's backlog is full: too many videos wait or still arrive.
    #[error("{limit} videos wait already")]
    TooManyQueued { limit: u32 },
    /// What the user's videos keep leaves no room for this one.
    #[error("the videos keep {used} of {quota} bytes")]
    QuotaExceeded { used: u64, quota: u64 },
    /// The user streams as many uploads as allowed at once.
    #[error("{limit} uploads stream already")]
    TooManyUploads { limit: u32 },
    /// The node cannot take it now (at its limit of streaming uploads, its
    /// admission restarting, ffprobe unable to run here); the file may be
    /// fine, so the client is asked to come back.
    #[error("the node cannot take the upload now")]
    Busy { retry_after_secs: u64 },
    /// The first attempt with this idempotency key still streams.
    #[error("an upload with this key is still in progress")]
    InProgress,
    /// The file is over the upload limit.
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file is empty")]
    Empty,
    /// ffprobe read no video in it; the reason is for the client.
    #[error("{0}")]
    NotAVideo(String),
    /// The video would cost more than one job may; the sentence is for the client.
    #[error("{0}")]
    OverBudget(String),
    /// The media store refused the bytes (full, read-only, failing).
    #[error("the media store refused the file")]
    StoreRefused,
    /// Its owner deleted it while it streamed.
    #[error("the upload was deleted")]
    Deleted,
    /// The video to process again is not done or failed yet.
    #[error("the video is not finished yet")]
    SourceNotReady,
    /// The video to process again no longer has its upload (retention).
    #[error("the upload of this video is no longer kept")]
    SourceGone,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
