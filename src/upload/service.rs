//! The upload service. An endpoint parses what its client sends and calls,
//! in order: [`Uploads::admit`] before any byte of the file (the user's
//! backlog and quota, a place among the uploads streaming on this node),
//! [`Admitted::start`] when the file begins (its row, `uploading`, and its
//! object in the store), [`Receiving::write`] for each piece of it, and
//! [`Receiving::finish`] with the final options (the object completed,
//! probed with ffprobe, held to the job budget, queued). Until it is queued
//! a guard owns the upload: given up at any step, its row and file go.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use ractor::call_t;
use tokio::io::AsyncWriteExt;

use super::admission::{Busy, StoredUpload, Ticket, UploadMsg};
use super::cleanup::{Cleanup, Remover};
use super::error::UploadError;
use crate::db::changes::{Changes, Topic};
use crate::db::jobs::{JobRow, NewJob};
use crate::db::{self, DbError};
use crate::domain::{Filename, FrameOptions, IdempotencyKey, JobId, UserId};
use crate::jobs::JobState;
use crate::media::{self, Budget, MediaError, MediaInfo};
use crate::settings::Settings;
use crate::storage::{MediaStore, ObjectWriter, StorageError};
use crate::supervisor::Handle;

/// What an upload is held to, from the settings.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// The largest file.
    pub max_bytes: u64,
    /// Videos one user may have waiting or arriving.
    pub max_queued_per_user: u32,
    /// Bytes one user's videos may keep.
    pub max_storage_per_user: u64,
    /// The cap, and default, of the `max_frames` option.
    pub max_frames: u32,
    pub max_attempts: i32,
    pub ffprobe: PathBuf,
    pub probe_timeout: Duration,
    /// What one job may cost.
    pub budget: Budget,
}

impl UploadLimits {
    pub fn of(settings: &Settings) -> Self {
        let t = &settings.tuning;
        Self {
            max_bytes: settings.max_upload_bytes,
            max_queued_per_user: t.max_queued_per_user,
            max_storage_per_user: t.max_storage_per_user,
            max_frames: t.max_frames,
            max_attempts: t.job_max_attempts as i32,
            ffprobe: t.ffprobe_path.clone(),
            probe_timeout: Duration::from_secs(t.probe_timeout_secs),
            budget: Budget::of(t),
        }
    }
}

/// This node's upload service; clones share it.
#[derive(Clone)]
pub struct Uploads {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database, the store and this node's change record.
    remover: Remover,
    node: String,
    limits: UploadLimits,
    /// The admission actor: places on this node, commits to the queue.
    admission: Handle<UploadMsg>,
}

impl Uploads {
    pub fn new(
        pool: Pool,
        store: MediaStore,
        changes: Arc<Changes>,
        node: String,
        limits: UploadLimits,
        admission: Handle<UploadMsg>,
    ) -> Self {
        let remover = Remover {
            pool,
            store,
            changes,
        };
        Self {
            inner: Arc::new(Inner {
                remover,
                node,
                limits,
                admission,
            }),
        }
    }

    pub fn limits(&self) -> &UploadLimits {
        &self.inner.limits
    }

    fn pool(&self) -> &Pool {
        &self.inner.remover.pool
    }

    /// Refuses a file that says, before it is read, that it is over the
    /// upload limit.
    pub fn check_declared(&self, file_bytes: u64) -> Result<(), UploadError> {
        let limit = self.inner.limits.max_bytes;
        if file_bytes > limit {
            metrics::counter!("vp_uploads_total", "result" => "too_large").increment(1);
            return Err(UploadError::TooLarge { limit });
        }
        Ok(())
    }

    /// Everything that can be refused before a byte of the file arrives:
    /// the owner's backlog (it lives in PostgreSQL, but not without bound),
    /// their storage quota, and a place among the uploads streaming on this
    /// node, held until the upload ends.
    pub async fn admit(&self, owner: UserId) -> Result<Admitted, UploadError> {
        let limits = &self.inner.limits;
        let pending = db::jobs::count_pending_for_owner(self.pool(), owner).await?;
        if pending >= i64::from(limits.max_queued_per_user) {
            metrics::counter!("vp_uploads_refused_total", "reason" => "user_backlog").increment(1);
            return Err(UploadError::TooManyQueued {
                limit: limits.max_queued_per_user,
            });
        }
        let quota = limits.max_storage_per_user;
        let used = db::jobs::bytes_kept_by_owner(self.pool(), owner).await?;
        if used >= quota {
            metrics::counter!("vp_uploads_refused_total", "reason" => "quota").increment(1);
            return Err(UploadError::QuotaExceeded { used, quota });
        }
        let busy = || UploadError::Busy {
            retry_after_secs: crate::retry_after::BUSY_SECS,
        };
        let actor = self.inner.admission.get().ok_or_else(busy)?;
        let ticket = call_t!(actor, UploadMsg::Admit, 5_000, owner)
            .map_err(|_| busy())?
            .map_err(|b| match b {
                Busy::Node { retry_after_secs } => UploadError::Busy { retry_after_secs },
                Busy::User { limit } => UploadError::TooManyUploads { limit },
            })?;
        Ok(Admitted {
            uploads: self.clone(),
            owner,
            room: quota - used,
            _ticket: ticket,
        })
    }

    /// A job that is the answer to an upload, once it is a video: the
    /// owner's next list on this node shows it.
    fn accepted(&self, job: JobRow) -> Result<Accepted, UploadError> {
        if job.state == JobState::Uploading {
            return Err(UploadError::InProgress);
        }
        self.inner.remover.changes.touch(Topic::Owner(job.user_id));
        Ok(Accepted { job })
    }

    /// Holds a stored, probed upload to the job budget and queues it (which
    /// wakes the pools); its guard is the caller's to disarm.
    async fn commit(
        &self,
        id: JobId,
        size: u64,
        info: MediaInfo,
        options: FrameOptions,
    ) -> Result<JobRow, UploadError> {
        let limits = &self.inner.limits;
        // what the job would cost, before it is queued
        if let Err(over) =
            limits
                .budget
                .plan(&info, options.spacing(), options.max_frames, options.width)
        {
            metrics::counter!("vp_uploads_total", "result" => "over_budget").increment(1);
            tracing::info!(job_id = %id, reason = %over, "refused: over budget");
            return Err(UploadError::OverBudget(over.sentence()));
        }
        let busy = || UploadError::Busy {
            retry_after_secs: crate::retry_after::BUSY_SECS,
        };
        let actor = self.inner.admission.get().ok_or_else(busy)?;
        let stored = StoredUpload {
            job: id,
            size_bytes: size as i64,
            media_info: info,
            options,
        };
        call_t!(actor, UploadMsg::Commit, 30_000, stored)
            .map_err(|_| busy())?
            .map_err(|e| match e {
                // deleted by its owner while it streamed
                DbError::Transition(_) => UploadError::Deleted,
                other => other.into(),
            })
    }

    /// What ffprobe says the stored file of upload `id` is.
    async fn probe(&self, id: JobId) -> Result<MediaInfo, UploadError> {
        let limits = &self.inner.limits;
        let local = self
            .inner
            .remover
            .store
            .local_input(&MediaStore::source_key(id))
            .await?;
        media::probe(&limits.ffprobe, &local.path(), limits.probe_timeout)
            .await
            .map_err(|e| {
                e.record("probe");
                probe_refusal(id, e)
            })
    }
}

/// An upload the node takes: it holds its place among the streaming uploads
/// until dropped.
pub struct Admitted {
    uploads: Uploads,
    owner: UserId,
    /// Bytes the owner's quota still has room for.
    room: u64,
    _ticket: Ticket,
}

impl Admitted {
    /// The most bytes the file may have: the upload limit, or the room left
    /// in the quota when that is less.
    pub fn limit(&self) -> u64 {
        self.uploads.inner.limits.max_bytes.min(self.room)
    }

    /// The refusal of a file over [`limit`](Self::limit): over the quota
    /// when that is what limits it.
    pub fn too_large(&self) -> UploadError {
        let max = self.uploads.inner.limits.max_bytes;
        if self.room < max {
            self.over_quota()
        } else {
            UploadError::TooLarge { limit: max }
        }
    }

    /// Refuses a file that says, before it is read, that it is larger than
    /// the room left in the quota.
    pub fn check_declared(&self, file_bytes: u64) -> Result<(), UploadError> {
        if file_bytes > self.room {
            return Err(self.over_quota());
        }
        Ok(())
    }

    fn over_quota(&self) -> UploadError {
        let quota = self.uploads.inner.limits.max_storage_per_user;
        metrics::counter!("vp_uploads_refused_total", "reason" => "quota").increment(1);
        UploadError::QuotaExceeded {
            used: quota - self.room,
            quota,
        }
    }

    /// A retry of an upload accepted before under `key` gets the same
    /// video; while the first attempt still streams, it is refused.
    pub async fn find_existing(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<Accepted>, UploadError> {
        let uploads = &self.uploads;
        match db::jobs::find_by_idempotency_key(uploads.pool(), self.owner, key).await? {
            Some(job) => uploads.accepted(job).map(Some),
            None => Ok(None),
        }
    }

    /// The file begins: its row (`uploading`, with the options known so far)
    /// and its object in the store. A concurrent retry that got in first
    /// with the same key gives that upload's answer instead.
    pub async fn start(self, file: NewUpload) -> Result<Started, UploadError> {
        let uploads = self.uploads.clone();
        let new = NewJob {
            id: JobId::new(),
            user_id: self.owner,
            filename: file.filename.as_str(),
            options: &file.options,
            max_attempts: uploads.inner.limits.max_attempts,
            node: &uploads.inner.node,
            idempotency_key: file.key.as_ref(),
            source: None,
        };
        let job = match db::jobs::insert_uploading(uploads.pool(), new).await? {
            Ok(job) => job,
            Err(existing) => return uploads.accepted(existing).map(Started::Existing),
        };
        let remover = &uploads.inner.remover;
        Ok(Started::Receiving(Receiving {
            id: job.id,
            size: 0,
            writer: remover.store.writer(&MediaStore::source_key(job.id)),
            cleanup: Cleanup::new(job.id, self.owner, remover.clone()),
            admitted: self,
        }))
    }
}

impl Admitted {
    /// A new video from `source`'s stored upload, processed with `options`:
    /// its row, its own copy of the upload (deleting either video never
    /// breaks the other), the job budget, the queue, all held to this
    /// admission like an upload. The source's probe is reused: the bytes
    /// are the same. A retry under the same `key` gets the same video.
    pub async fn copy_of(
        self,
        source: &JobRow,
        options: FrameOptions,
        key: Option<IdempotencyKey>,
    ) -> Result<Accepted, UploadError> {
        match (source.state, source.expired_at) {
            (JobState::Done | JobState::Failed, None) => {}
            (JobState::Done | JobState::Failed | JobState::Cancelled, _) => {
                return Err(UploadError::SourceGone);
            }
            (JobState::Uploading | JobState::Queued | JobState::Processing, _) => {
                return Err(UploadError::SourceNotReady);
            }
        }
        let size = source.size_bytes.unwrap_or(0).max(0) as u64;
        self.check_declared(size)?;
        let uploads = self.uploads.clone();
        let new = NewJob {
            id: JobId::new(),
            user_id: self.owner,
            filename: &source.filename,
            options: &options,
            max_attempts: uploads.inner.limits.max_attempts,
            node: &uploads.inner.node,
            idempotency_key: key.as_ref(),
            source: Some((source.id, source.name.as_deref())),
        };
        let job = match db::jobs::insert_uploading(uploads.pool(), new).await? {
            Ok(job) => job,
            Err(existing) => return uploads.accepted(existing),
        };
        let remover = &uploads.inner.remover;
        let mut cleanup = Cleanup::new(job.id, self.owner, remover.clone());
        let copied = async {
            let (from, to) = (
                MediaStore::source_key(source.id),
                MediaStore::source_key(job.id),
            );
            remover.store.copy(&from, &to).await.map_err(|e| match e {
                // retention (or a delete) took it since the row was read
                StorageError::NotFound => UploadError::SourceGone,
                other => other.into(),
            })?;
            let info = match &source.media_info {
                Some(info) => info.clone(),
                None => uploads.probe(job.id).await?,
            };
            uploads.commit(job.id, size, info, options).await
        };
        match copied.await {
            Ok(job) => {
                cleanup.disarm();
                tracing::info!(job_id = %job.id, source = %source.id, "queued again from a stored upload");
                uploads.accepted(job)
            }
            Err(e) => {
                cleanup.now().await;
                Err(e)
            }
        }
    }
}

/// A file about to arrive: the name its client gave it, the options known
/// before its bytes, and the key that makes a retry give the same video.
pub struct NewUpload {
    pub filename: Filename,
    pub options: FrameOptions,
    pub key: Option<IdempotencyKey>,
}

/// What [`Admitted::start`] led to.
pub enum Started {
    /// The file is expected.
    Receiving(Receiving),
    /// An earlier attempt with the same key made the video.
    Existing(Accepted),
}

/// An upload whose file is arriving. Dropped before it is finished, its row
/// and file are removed in the background; [`discard`](Self::discard)
/// removes them before returning.
pub struct Receiving {
    admitted: Admitted,
    id: JobId,
    size: u64,
    writer: ObjectWriter,
    cleanup: Cleanup,
}

impl Receiving {
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Appends `bytes` to the file, within the admitted limit.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        self.size += bytes.len() as u64;
        if self.size > self.admitted.limit() {
            metrics::counter!("vp_uploads_total", "result" => "too_large").increment(1);
            return Err(self.admitted.too_large());
        }
        let id = self.id;
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| cannot_store(id, &e))
    }

    /// The file is complete: stored, probed, held to the job budget and
    /// queued with `options`, the final ones. Refused, it is removed before
    /// this returns.
    pub async fn finish(mut self, options: FrameOptions) -> Result<Accepted, UploadError> {
        match self.queue(options).await {
            Ok(accepted) => Ok(accepted),
            Err(e) => {
                self.discard().await;
                Err(e)
            }
        }
    }

    /// Gives the upload up, and removes it before returning so that a list
    /// read after the refusal does not show it (a database that does not
    /// answer in time leaves the rest to the guard).
    pub async fn discard(self) {
        let Receiving {
            writer, cleanup, ..
        } = self;
        // an unfinished object is abandoned, never completed
        drop(writer);
        cleanup.now().await;
    }

    async fn queue(&mut self, options: FrameOptions) -> Result<Accepted, UploadError> {
        let (id, size) = (self.id, self.size);
        // completes the object: it appears under its name only now, fsynced
        self.writer
            .shutdown()
            .await
            .map_err(|e| cannot_store(id, &e))?;
        if size == 0 {
            return Err(UploadError::Empty);
        }
        let uploads = self.admitted.uploads.clone();
        let info = uploads.probe(id).await?;
        let job = uploads.commit(id, size, info, options).await?;
        self.cleanup.disarm();
        metrics::counter!("vp_uploads_total", "result" => "accepted").increment(1);
        metrics::counter!("vp_upload_bytes_total").increment(size);
        tracing::info!(job_id = %id, size, "upload queued");
        uploads.accepted(job)
    }
}

/// An upload that is a video: queued now, or an earlier attempt's under the
/// same key, in whatever state it reached since.
pub struct Accepted {
    pub job: JobRow,
}

/// The refusal of an upload ffprobe could not read.
fn probe_refusal(id: JobId, e: MediaError) -> UploadError {
    match e {
        MediaError::NotAVideo(_) => {
            metrics::counter!("vp_uploads_total", "result" => "not_a_video").increment(1);
            tracing::info!(job_id = %id, reason = %e.reason(), "upload refused: not a video");
            UploadError::NotAVideo(e.reason())
        }
        // ffprobe could not run or finish here (overload, environment): the
        // file may be fine, so the client is asked to come back
        e => {
            metrics::counter!("vp_uploads_total", "result" => "probe_unavailable").increment(1);
            tracing::warn!(job_id = %id, error = %e, "upload refused: probing failed");
            UploadError::Busy {
                retry_after_secs: crate::retry_after::PROBE_UNAVAILABLE_SECS,
            }
        }
    }
}

/// The media store refused the bytes (disk full, read-only, failing): the
/// upload is refused and its guard removes what was written.
fn cannot_store(id: JobId, e: &std::io::Error) -> UploadError {
    tracing::error!(job_id = %id, error = %e, kind = ?e.kind(), "the media store refused an upload");
    metrics::counter!("vp_uploads_total", "result" => "storage_failed").increment(1);
    UploadError::StoreRefused
}
