//! Uploads, for whichever endpoint receives them: the multipart form of
//! `http::upload` today, resumable uploads next. An endpoint parses what
//! its client sends and answers; this module owns the rest.
//!
//! - `service`: [`Uploads`], the steps of one upload: admission (the
//!   user's backlog and quota, a place on this node), the file streamed into
//!   the media store, the probe, the job budget, the `uploading → queued`
//!   commit. Its refusals are [`UploadError`]s.
//! - `cleanup`: the guard that removes the row and file of an upload
//!   given up at any step, so nothing half-written stays.
//! - `admission`: the actor that counts the uploads streaming on this node
//!   and commits finished ones to the queue.
//! - `abandoned`: the sweep of uploads a crashed node left behind.

mod abandoned;
mod admission;
mod cleanup;
mod error;
mod service;

pub use abandoned::{AbandonedError, remove_abandoned};
pub use admission::{UploadAdmission, UploadArgs, UploadMsg};
pub use error::UploadError;
pub use service::{Accepted, Admitted, NewUpload, Receiving, Started, UploadLimits, Uploads};
