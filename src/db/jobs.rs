//! Jobs and their event history. Every state change runs through
//! [`crate::jobs::next`] inside a transaction that also appends to
//! `job_events`; changes made by a worker are fenced by its lease token, so a
//! late or duplicate worker cannot overwrite a newer state.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use postgres_types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::outbox::{self, NewNotification};
use super::{DbError, DbResult};
use crate::domain::{FrameOptions, IdempotencyKey, JobId, StoredOptions, UserId, VideoName};
use crate::jobs::{Failure, FailureCode, JobEvent, JobState, next};
use crate::media::{MediaInfo, MediaSummary};
use crate::notify::message::VideoFacts;

const COLUMNS: &str = "id, user_id, filename, state, progress, options, size_bytes, media_info, frames, \
     zip_bytes, zip_object, error, attempts, max_attempts, created_at, updated_at, finished_at, expired_at, \
     name, source_id, error_code";

/// The same for lists, which never read the whole probe (it is most of a
/// row's bytes), only what a person is shown of it.
const LIST_COLUMNS: &str = "id, user_id, filename, state, progress, options, size_bytes, \
     NULL::jsonb AS media_info, frames, zip_bytes, zip_object, error, attempts, max_attempts, \
     created_at, updated_at, finished_at, expired_at, name, source_id, error_code, \
     CASE WHEN media_info IS NOT NULL THEN jsonb_build_object( \
         'duration_secs', media_info->'duration_secs', 'width', media_info->'video'->'width', \
         'height', media_info->'video'->'height', 'codec', media_info->'video'->'codec') \
     END AS media_summary";

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: JobId,
    pub user_id: UserId,
    pub filename: String,
    pub state: JobState,
    pub progress: f32,
    pub options: StoredOptions,
    pub size_bytes: Option<i64>,
    /// The probe made when the upload was accepted; None in lists, and for
    /// a stored probe that no longer reads (the processor probes again).
    pub media_info: Option<MediaInfo>,
    pub frames: Option<i32>,
    pub zip_bytes: Option<i64>,
    /// The zip object that is the result (once done).
    pub zip_object: Option<String>,
    pub error: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    /// The name its owner gave it; None shows `filename`.
    pub name: Option<String>,
    /// The video it was processed again from, while that one exists.
    pub source_id: Option<JobId>,
    /// Why it failed, as a code (None before codes were recorded).
    pub error_code: Option<FailureCode>,
    /// What a person is shown of the probe, in lists too.
    pub media: Option<MediaSummary>,
}

impl JobRow {
    fn from_row(r: &Row) -> Self {
        let media_info = stored_probe(r);
        let media = match &media_info {
            Some(info) => Some(MediaSummary::of(info)),
            None => listed_summary(r),
        };
        Self {
            id: JobId(r.get("id")),
            user_id: UserId(r.get("user_id")),
            filename: r.get("filename"),
            state: r.get("state"),
            progress: r.get("progress"),
            options: r.get::<_, Json<StoredOptions>>("options").0,
            size_bytes: r.get("size_bytes"),
            media_info,
            frames: r.get("frames"),
            zip_bytes: r.get("zip_bytes"),
            zip_object: r.get("zip_object"),
            error: r.get("error"),
            attempts: r.get("attempts"),
            max_attempts: r.get("max_attempts"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            finished_at: r.get("finished_at"),
            expired_at: r.get("expired_at"),
            name: r.get("name"),
            source_id: r.get::<_, Option<Uuid>>("source_id").map(JobId),
            error_code: r.get("error_code"),
            media,
        }
    }

    /// The name shown: the one its owner gave it, else the file's.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.filename)
    }
}

/// The probe's summary a list selects (`media_summary`), when it does.
fn listed_summary(r: &Row) -> Option<MediaSummary> {
    if !r.columns().iter().any(|c| c.name() == "media_summary") {
        return None;
    }
    match r.try_get::<_, Option<Json<MediaSummary>>>("media_summary") {
        Ok(summary) => summary.map(|Json(s)| s),
        Err(e) => {
            tracing::warn!(error = %e, "stored probe unreadable in a list");
            None
        }
    }
}

/// The `media_info` column as its type. A probe that does not read is only
/// a lost shortcut: the processor probes the file again.
fn stored_probe(r: &Row) -> Option<MediaInfo> {
    match r.try_get::<_, Option<Json<MediaInfo>>>("media_info") {
        Ok(probe) => probe.map(|Json(info)| info),
        Err(e) => {
            tracing::warn!(error = %e, "stored probe unreadable; the processor probes again");
            None
        }
    }
}

/// A job claimed by a worker of this node: the lease token fences every later write.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: JobRow,
    pub lease_token: Uuid,
}

pub struct NewJob<'a> {
    pub id: JobId,
    pub user_id: UserId,
    pub filename: &'a str,
    pub options: &'a FrameOptions,
    pub max_attempts: i32,
    pub node: &'a str,
    pub idempotency_key: Option<&'a IdempotencyKey>,
    /// Made from another video's upload: that video and its name.
    pub source: Option<(JobId, Option<&'a str>)>,
}

/// What became of a job after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Requeued,
    Failed,
    /// The lease was lost in the meantime (deleted, or taken over): nothing written.
    LeaseLost,
}

/// The fields of a locked row that transitions need.
struct Locked {
    state: JobState,
    attempts: i32,
    max_attempts: i32,
    user_id: Uuid,
    filename: String,
    created_at: DateTime<Utc>,
}

impl Locked {
    /// What an email about job `id` tells of it.
    fn facts(&self, id: JobId) -> VideoFacts {
        VideoFacts {
            id,
            filename: self.filename.clone(),
            uploaded_at: self.created_at,
        }
    }

    /// Appends the event of this row moving to `to`.
    async fn record_move(
        &self,
        tx: &Transaction<'_>,
        id: JobId,
        to: JobState,
        node: &str,
        detail: Option<&str>,
    ) -> DbResult<()> {
        record_event(tx, id, Some(self.state), to, node, self.attempts, detail).await
    }
}

async fn lock(tx: &Transaction<'_>, id: JobId, lease: Option<Uuid>) -> DbResult<Option<Locked>> {
    let row = tx
        .query_opt(
            "SELECT state, attempts, max_attempts, user_id, filename, created_at FROM jobs
             WHERE id = $1 AND ($2::uuid IS NULL OR (lease_token = $2 AND state = 'processing'))
             FOR UPDATE",
            &[&id.0, &lease],
        )
        .await?;
    Ok(row.map(|r| Locked {
        state: r.get(0),
        attempts: r.get(1),
        max_attempts: r.get(2),
        user_id: r.get(3),
        filename: r.get(4),
        created_at: r.get(5),
    }))
}

async fn record_event(
    tx: &Transaction<'_>,
    id: JobId,
    from: Option<JobState>,
    to: JobState,
    node: &str,
    attempt: i32,
    detail: Option<&str>,
) -> DbResult<()> {
    tx.execute(
        "INSERT INTO job_events (job_id, from_state, to_state, node, attempt, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&id.0, &from, &to, &node, &attempt, &detail],
    )
    .await?;
    Ok(())
}

/// Creates the row of a new upload in `uploading`. A key already used by
/// this user returns the existing job as `Err(existing)`.
pub async fn insert_uploading(pool: &Pool, new: NewJob<'_>) -> DbResult<Result<JobRow, JobRow>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let inserted = tx
        .query_one(
            &format!(
                "INSERT INTO jobs (id, user_id, filename, state, options, max_attempts, owner_node,
                     idempotency_key, source_id, name)
                 VALUES ($1, $2, $3, 'uploading', $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
            ),
            &[
                &new.id.0,
                &new.user_id.0,
                &new.filename,
                &Json(new.options),
                &new.max_attempts,
                &new.node,
                &new.idempotency_key.map(IdempotencyKey::as_str),
                &new.source.map(|(id, _)| id.0),
                &new.source.and_then(|(_, name)| name),
            ],
        )
        .await;
    match inserted {
        Ok(row) => {
            record_event(&tx, new.id, None, JobState::Uploading, new.node, 0, None).await?;
            tx.commit().await?;
            Ok(Ok(JobRow::from_row(&row)))
        }
        Err(e) => {
            let e = DbError::from(e);
            drop(tx);
            match (e.is_unique_violation(), new.idempotency_key) {
                (true, Some(key)) => find_by_idempotency_key(pool, new.user_id, key)
                    .await?
                    .map(Err)
                    .ok_or(e),
                _ => Err(e),
            }
        }
    }
}

pub async fn find_by_idempotency_key(
    pool: &Pool,
    user: UserId,
    key: &IdempotencyKey,
) -> DbResult<Option<JobRow>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM jobs WHERE user_id = $1 AND idempotency_key = $2"),
            &[&user.0, &key.as_str()],
        )
        .await?;
    Ok(row.as_ref().map(JobRow::from_row))
}

/// `uploading → queued`: the file is stored and probed.
pub async fn mark_stored(
    pool: &Pool,
    id: JobId,
    node: &str,
    size_bytes: i64,
    media_info: &MediaInfo,
    options: &FrameOptions,
) -> DbResult<JobRow> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let locked =
        lock(&tx, id, None)
            .await?
            .ok_or(DbError::Transition(crate::jobs::InvalidTransition {
                from: JobState::Cancelled,
                event: JobEvent::Stored,
            }))?;
    let to = next(locked.state, JobEvent::Stored)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE jobs SET state = $2, size_bytes = $3, media_info = $4, options = $5, owner_node = NULL,
                     run_after = now(), updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id.0, &to, &size_bytes, &Json(media_info), &Json(options)],
        )
        .await?;
    locked.record_move(&tx, id, to, node, None).await?;
    tx.commit().await?;
    Ok(JobRow::from_row(&row))
}

/// Removes an upload that was refused (too large, not a video, aborted):
/// nothing of it is kept. Only rows still `uploading` are touched.
pub async fn delete_uploading(pool: &Pool, id: JobId) -> DbResult<bool> {
    let conn = pool.get().await?;
    Ok(conn
        .execute(
            "DELETE FROM jobs WHERE id = $1 AND state = 'uploading'",
            &[&id.0],
        )
        .await?
        == 1)
}

/// Uploads left `uploading` by a crashed node: those owned by `node` (a
/// node that just started, so none of them is live) and any older than `max_age`.
pub async fn delete_stale_uploads(
    pool: &Pool,
    node: Option<&str>,
    max_age: Duration,
) -> DbResult<Vec<JobId>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "DELETE FROM jobs WHERE state = 'uploading'
               AND (owner_node = $1 OR created_at < now() - make_interval(secs => $2))
             RETURNING id",
            &[&node, &max_age.as_secs_f64()],
        )
        .await?;
    Ok(rows.iter().map(|r| JobId(r.get(0))).collect())
}

/// Claims the oldest runnable queued job for `node` (`queued → processing`).
/// Fair share: the next job goes to the user with the fewest jobs running
/// now (oldest first among equals), and no user runs more than
/// `per_user_cap` at once, so one user's burst cannot starve the others.
/// The cap is checked without locking the other users' rows: two nodes
/// claiming at the same instant can exceed it by one each, briefly.
pub async fn claim_next(
    pool: &Pool,
    node: &str,
    lease: Duration,
    per_user_cap: i64,
) -> DbResult<Option<Claim>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "WITH running AS (
                 SELECT user_id, count(*) AS n FROM jobs WHERE state = 'processing' GROUP BY user_id
             )
             SELECT j.id, j.state, j.attempts FROM jobs j
             LEFT JOIN running r ON r.user_id = j.user_id
             WHERE j.state = 'queued' AND j.run_after <= now() AND coalesce(r.n, 0) < $1
             ORDER BY coalesce(r.n, 0), j.run_after, j.created_at
             FOR UPDATE OF j SKIP LOCKED LIMIT 1",
            &[&per_user_cap],
        )
        .await?
    else {
        return Ok(None);
    };
    let id = JobId(row.get(0));
    let from: JobState = row.get(1);
    let attempt: i32 = row.get::<_, i32>(2) + 1;
    let to = next(from, JobEvent::Claimed)?;
    let token = Uuid::new_v4();
    let row = tx
        .query_one(
            &format!(
                "UPDATE jobs SET state = $2, attempts = $3, owner_node = $4, lease_token = $5,
                     lease_until = now() + make_interval(secs => $6), progress = 0, updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id.0, &to, &attempt, &node, &token, &lease.as_secs_f64()],
        )
        .await?;
    record_event(&tx, id, Some(from), to, node, attempt, None).await?;
    tx.commit().await?;
    Ok(Some(Claim {
        job: JobRow::from_row(&row),
        lease_token: token,
    }))
}

/// Renews the lease and records progress; false when the lease is gone
/// (the job was deleted or taken over), so the worker must stop.
pub async fn heartbeat(
    pool: &Pool,
    id: JobId,
    token: Uuid,
    progress: f32,
    lease: Duration,
) -> DbResult<bool> {
    let conn = pool.get().await?;
    let n = conn
        .execute(
            "UPDATE jobs SET progress = $3, lease_until = now() + make_interval(secs => $4), updated_at = now()
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
            &[&id.0, &token, &progress.clamp(0.0, 1.0), &lease.as_secs_f64()],
        )
        .await?;
    Ok(n == 1)
}

/// What a finished job produced.
pub struct Output<'a> {
    pub frames: i32,
    pub zip_bytes: i64,
    /// The key of the zip object written under this claim.
    pub zip_object: &'a str,
}

/// `processing → done`, fenced by the lease. Queues a success email when the
/// owner asked for one. False when the lease was lost.
pub async fn complete(
    pool: &Pool,
    id: JobId,
    token: Uuid,
    node: &str,
    output: Output<'_>,
    success_mail: impl FnOnce(&VideoFacts) -> Option<NewNotification>,
) -> DbResult<bool> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(locked) = lock(&tx, id, Some(token)).await? else {
        return Ok(false);
    };
    let to = next(locked.state, JobEvent::Completed)?;
    tx.execute(
        "UPDATE jobs SET state = $2, frames = $3, zip_bytes = $4, zip_object = $5, progress = 1, error = NULL, error_code = NULL,
             lease_token = NULL, lease_until = NULL, finished_at = now(), updated_at = now()
         WHERE id = $1",
        &[&id.0, &to, &output.frames, &output.zip_bytes, &output.zip_object],
    )
    .await?;
    locked
        .record_move(
            &tx,
            id,
            to,
            node,
            Some(&format!("{} frames", output.frames)),
        )
        .await?;
    if let Some(mail) = success_mail(&locked.facts(id)) {
        outbox::insert_for_user(&tx, UserId(locked.user_id), id, mail, true).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// `→ failed` with a reason and, in the same transaction, the email telling
/// the owner. Fenced by the lease when `token` is given.
async fn fail_locked(
    tx: &Transaction<'_>,
    id: JobId,
    locked: &Locked,
    node: &str,
    failure: Failure<'_>,
    mail: NewNotification,
) -> DbResult<()> {
    let to = next(locked.state, JobEvent::Fail)?;
    tx.execute(
        "UPDATE jobs SET state = $2, error = $3, error_code = $4, lease_token = NULL, lease_until = NULL,
             finished_at = now(), updated_at = now()
         WHERE id = $1",
        &[&id.0, &to, &failure.reason, &failure.code],
    )
    .await?;
    locked
        .record_move(tx, id, to, node, Some(failure.reason))
        .await?;
    outbox::insert_for_user(tx, UserId(locked.user_id), id, mail, false).await?;
    Ok(())
}

/// A permanent failure of a claimed job. False when the lease was lost.
pub async fn fail(
    pool: &Pool,
    id: JobId,
    token: Uuid,
    node: &str,
    failure: Failure<'_>,
    mail: impl FnOnce(&VideoFacts) -> NewNotification,
) -> DbResult<bool> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(locked) = lock(&tx, id, Some(token)).await? else {
        return Ok(false);
    };
    fail_locked(&tx, id, &locked, node, failure, mail(&locked.facts(id))).await?;
    tx.commit().await?;
    Ok(true)
}

/// A transient failure: back to `queued` after `backoff`, or `failed` once
/// the attempts are used up.
pub async fn retry_or_fail(
    pool: &Pool,
    id: JobId,
    token: Uuid,
    node: &str,
    failure: Failure<'_>,
    backoff: Duration,
    mail: impl FnOnce(&VideoFacts, &str) -> NewNotification,
) -> DbResult<RetryOutcome> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(locked) = lock(&tx, id, Some(token)).await? else {
        return Ok(RetryOutcome::LeaseLost);
    };
    let outcome = requeue_locked(&tx, id, &locked, node, failure, backoff, false, mail).await?;
    tx.commit().await?;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
async fn requeue_locked(
    tx: &Transaction<'_>,
    id: JobId,
    locked: &Locked,
    node: &str,
    failure: Failure<'_>,
    backoff: Duration,
    refund_attempt: bool,
    mail: impl FnOnce(&VideoFacts, &str) -> NewNotification,
) -> DbResult<RetryOutcome> {
    let reason = failure.reason;
    if !refund_attempt && locked.attempts >= locked.max_attempts {
        let why = format!("gave up after {} attempts: {reason}", locked.attempts);
        let mail = mail(&locked.facts(id), &why);
        let failed = Failure {
            code: failure.code,
            reason: &why,
        };
        fail_locked(tx, id, locked, node, failed, mail).await?;
        return Ok(RetryOutcome::Failed);
    }
    let to = next(locked.state, JobEvent::Retry)?;
    let attempts = if refund_attempt {
        (locked.attempts - 1).max(0)
    } else {
        locked.attempts
    };
    tx.execute(
        "UPDATE jobs SET state = $2, attempts = $3, progress = 0, owner_node = NULL, lease_token = NULL,
             lease_until = NULL, run_after = now() + make_interval(secs => $4), updated_at = now()
         WHERE id = $1",
        &[&id.0, &to, &attempts, &backoff.as_secs_f64()],
    )
    .await?;
    locked.record_move(tx, id, to, node, Some(reason)).await?;
    Ok(RetryOutcome::Requeued)
}

/// Why a node's jobs are put back in the queue.
#[derive(Debug, Clone, Copy)]
pub enum Abandoned<'a> {
    /// Only jobs whose lease ran out (their node died or hung).
    LeaseExpired,
    /// This node started again: the jobs it held belong to a previous life.
    Restarted(&'a str),
    /// This node is stopping; that is not the jobs' fault, so their attempt
    /// is given back.
    ShuttingDown(&'a str),
    /// That node left the cluster. Only its jobs whose lease has not been
    /// renewed for `silent_for` are taken: a node that merely lost its
    /// session to us (a partition, a duplicate session) keeps renewing, and
    /// keeps its work.
    Departed {
        node: &'a str,
        lease: Duration,
        silent_for: Duration,
    },
}

impl Abandoned<'_> {
    fn owner(&self) -> Option<&str> {
        match self {
            Abandoned::LeaseExpired => None,
            Abandoned::Restarted(n)
            | Abandoned::ShuttingDown(n)
            | Abandoned::Departed { node: n, .. } => Some(n),
        }
    }

    /// Whether a row someone else has locked is waited for instead of
    /// skipped. A stopping node hands back its own jobs once, as its last
    /// act: a straggler of its own (a lease renewal still in flight) must
    /// not make it skip one and leave it `processing` until its lease runs
    /// out. The periodic passes skip: the next pass comes soon.
    fn waits_for_locks(&self) -> bool {
        matches!(self, Abandoned::ShuttingDown(_))
    }

    /// An owned job is taken only if its lease ends before now + this.
    fn owned_cutoff(&self) -> f64 {
        match self {
            Abandoned::Departed {
                lease, silent_for, ..
            } => lease.saturating_sub(*silent_for).as_secs_f64(),
            // every job the node holds
            _ => 1e9,
        }
    }
}

/// Puts back jobs whose lease ran out and, depending on `why`, every job
/// held by one node. Returns what became of each.
pub async fn requeue_abandoned(
    pool: &Pool,
    node: &str,
    why: Abandoned<'_>,
    mail: impl Fn(&VideoFacts, &str) -> NewNotification,
) -> DbResult<Vec<(JobId, RetryOutcome)>> {
    let owner = why.owner();
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let locking = if why.waits_for_locks() {
        // bounded: a lock held longer than this is not a straggler's
        tx.execute("SET LOCAL lock_timeout = '10s'", &[]).await?;
        "FOR UPDATE"
    } else {
        "FOR UPDATE SKIP LOCKED"
    };
    let rows = tx
        .query(
            &format!(
                "SELECT id, owner_node FROM jobs WHERE state = 'processing'
                   AND (lease_until < now()
                        OR (owner_node = $1 AND lease_until < now() + make_interval(secs => $2)))
                 {locking}"
            ),
            &[&owner, &why.owned_cutoff()],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id = JobId(row.get(0));
        let previous: Option<String> = row.get(1);
        let Some(locked) = lock(&tx, id, None).await? else {
            continue;
        };
        let held = owner.is_some() && previous.as_deref() == owner;
        let previous = previous.as_deref().unwrap_or("?");
        let (reason, refund) = match why {
            Abandoned::Restarted(_) if held => ("node restarted".to_owned(), false),
            Abandoned::ShuttingDown(_) if held => ("node shutting down".to_owned(), true),
            Abandoned::Departed { .. } if held => {
                (format!("node {previous} left the cluster"), false)
            }
            _ => (format!("lease of node {previous} expired"), false),
        };
        let failure = Failure {
            code: FailureCode::Interrupted,
            reason: &reason,
        };
        let outcome = requeue_locked(
            &tx,
            id,
            &locked,
            node,
            failure,
            Duration::ZERO,
            refund,
            &mail,
        )
        .await?;
        out.push((id, outcome));
    }
    tx.commit().await?;
    Ok(out)
}

/// The caller's job, or None (also for other users' jobs).
pub async fn get_for_owner(pool: &Pool, user: UserId, id: JobId) -> DbResult<Option<JobRow>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 AND user_id = $2"),
            &[&id.0, &user.0],
        )
        .await?;
    Ok(row.as_ref().map(JobRow::from_row))
}

/// The state of any job, for the worker that runs it.
pub async fn get(pool: &Pool, id: JobId) -> DbResult<Option<JobRow>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"),
            &[&id.0],
        )
        .await?;
    Ok(row.as_ref().map(JobRow::from_row))
}

/// Which of an owner's videos a list shows, and in which order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    /// Only videos in these states; empty: in any.
    pub states: Vec<JobState>,
    /// Only videos whose name holds this text, in any case.
    pub name_contains: Option<String>,
    pub order: Order,
}

/// By upload time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// `text` as a LIKE pattern matching itself anywhere: its `%`, `_` and
/// `\` mean themselves.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The caller's jobs that pass `filter`, in its order, strictly after
/// `cursor` (created_at, id), without their whole probe (`media_info` is
/// None, `media` is there). The owner's indexes serve both orders.
pub async fn list_for_owner(
    pool: &Pool,
    user: UserId,
    filter: &ListFilter,
    cursor: Option<(DateTime<Utc>, JobId)>,
    limit: i64,
) -> DbResult<Vec<JobRow>> {
    let conn = pool.get().await?;
    let (at, id) = cursor
        .map(|(a, i)| (Some(a), Some(i.0)))
        .unwrap_or((None, None));
    let (after, direction) = match filter.order {
        Order::Newest => ("<", "DESC"),
        Order::Oldest => (">", "ASC"),
    };
    let pattern = filter.name_contains.as_deref().map(contains_pattern);
    let rows = conn
        .query(
            &format!(
                "SELECT {LIST_COLUMNS} FROM jobs
                 WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) {after} ($2, $3))
                   AND (cardinality($4::job_state[]) = 0 OR state = ANY($4))
                   AND ($5::text IS NULL OR coalesce(name, filename) ILIKE $5 ESCAPE '\\')
                 ORDER BY created_at {direction}, id {direction} LIMIT $6"
            ),
            &[&user.0, &at, &id, &filter.states, &pattern, &limit],
        )
        .await?;
    Ok(rows.iter().map(JobRow::from_row).collect())
}

/// The place in the queue (1 is next) of those of `ids` that are queued,
/// in the order the pools claim them: one read of the queue's index for a
/// whole list.
pub async fn queue_positions(pool: &Pool, ids: &[JobId]) -> DbResult<HashMap<JobId, i64>> {
    let conn = pool.get().await?;
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = conn
        .query(
            "WITH queue AS (
                 SELECT id, row_number() OVER (ORDER BY run_after, created_at, id) AS position
                 FROM jobs WHERE state = 'queued'
             )
             SELECT id, position FROM queue WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (JobId(r.get(0)), r.get(1))).collect())
}

/// The caller's jobs among `ids`, in the order given (others' and unknown
/// ids are left out).
pub async fn get_many_for_owner(pool: &Pool, user: UserId, ids: &[JobId]) -> DbResult<Vec<JobRow>> {
    let conn = pool.get().await?;
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = conn
        .query(
            &format!("SELECT {COLUMNS} FROM jobs WHERE user_id = $1 AND id = ANY($2)"),
            &[&user.0, &uuids],
        )
        .await?;
    let mut found: HashMap<JobId, JobRow> = rows
        .iter()
        .map(JobRow::from_row)
        .map(|job| (job.id, job))
        .collect();
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

/// Gives the caller's video a new name; None when there is no such video
/// (or it is still arriving).
pub async fn rename_for_owner(
    pool: &Pool,
    user: UserId,
    id: JobId,
    name: &VideoName,
) -> DbResult<Option<JobRow>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!(
                "UPDATE jobs SET name = $3, updated_at = now()
                 WHERE id = $1 AND user_id = $2 AND state <> 'uploading' RETURNING {COLUMNS}"
            ),
            &[&id.0, &user.0, &name.as_str()],
        )
        .await?;
    Ok(row.as_ref().map(JobRow::from_row))
}

/// The owner's jobs changed after `after` (a change time and id, in that
/// order; None: the last `recent` seconds by the database's clock), oldest
/// change first. Uploads still streaming are left out: they are no video
/// until stored and probed, and one refused then vanishes without a trace.
pub async fn changed_for_owner(
    pool: &Pool,
    user: UserId,
    after: Option<(DateTime<Utc>, JobId)>,
    recent: Duration,
    limit: i64,
) -> DbResult<Vec<JobRow>> {
    let conn = pool.get().await?;
    let (at, id) = after.map_or((None, uuid::Uuid::nil()), |(a, i)| (Some(a), i.0));
    let rows = conn
        .query(
            &format!(
                "SELECT {COLUMNS} FROM jobs
                 WHERE user_id = $1 AND state <> 'uploading'
                   AND (updated_at, id) > (coalesce($2, now() - make_interval(secs => $4)), $3)
                 ORDER BY updated_at, id LIMIT $5"
            ),
            &[&user.0, &at, &id, &recent.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows.iter().map(JobRow::from_row).collect())
}

/// Bytes the owner's videos keep in the media store: uploads and zips not
/// yet removed by retention.
pub async fn bytes_kept_by_owner(pool: &Pool, user: UserId) -> DbResult<u64> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT coalesce(sum(coalesce(size_bytes, 0) + coalesce(zip_bytes, 0)), 0)::bigint
               FROM jobs WHERE user_id = $1 AND expired_at IS NULL",
            &[&user.0],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Which of `ids` are still the owner's jobs.
pub async fn existing_for_owner(pool: &Pool, user: UserId, ids: &[JobId]) -> DbResult<Vec<JobId>> {
    let conn = pool.get().await?;
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = conn
        .query(
            "SELECT id FROM jobs WHERE user_id = $1 AND id = ANY($2)",
            &[&user.0, &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| JobId(r.get(0))).collect())
}

/// Cancels the caller's job if it is still queued or running; returns the
/// state it was in, or None when there is no such job.
pub async fn cancel_for_owner(
    pool: &Pool,
    user: UserId,
    id: JobId,
    node: &str,
) -> DbResult<Option<JobState>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(locked) = lock(&tx, id, None).await? else {
        return Ok(None);
    };
    if locked.user_id != user.0 {
        return Ok(None);
    }
    if let Ok(to) = next(locked.state, JobEvent::Cancel) {
        tx.execute(
            "UPDATE jobs SET state = $2, lease_token = NULL, lease_until = NULL, updated_at = now() WHERE id = $1",
            &[&id.0, &to],
        )
        .await?;
        locked
            .record_move(&tx, id, to, node, Some("deleted by owner"))
            .await?;
    }
    tx.commit().await?;
    Ok(Some(locked.state))
}

/// Deletes the row and its history (media first, by the caller).
pub async fn delete_for_owner(pool: &Pool, user: UserId, id: JobId) -> DbResult<bool> {
    let conn = pool.get().await?;
    Ok(conn
        .execute(
            "DELETE FROM jobs WHERE id = $1 AND user_id = $2",
            &[&id.0, &user.0],
        )
        .await?
        == 1)
}

/// Finished jobs past retention whose media is still kept.
pub async fn list_expirable(pool: &Pool, older_than: Duration, limit: i64) -> DbResult<Vec<JobId>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT id FROM jobs WHERE state IN ('done', 'failed') AND expired_at IS NULL
               AND finished_at < now() - make_interval(secs => $1)
             ORDER BY finished_at LIMIT $2",
            &[&older_than.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| JobId(r.get(0))).collect())
}

pub async fn mark_expired(pool: &Pool, id: JobId) -> DbResult<()> {
    let conn = pool.get().await?;
    conn.execute(
        "UPDATE jobs SET expired_at = now(), updated_at = now() WHERE id = $1 AND expired_at IS NULL",
        &[&id.0],
    )
    .await?;
    Ok(())
}

/// Jobs of `user` waiting to run or still arriving, for admission.
pub async fn count_pending_for_owner(pool: &Pool, user: UserId) -> DbResult<i64> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM jobs WHERE user_id = $1 AND state IN ('uploading', 'queued')",
            &[&user.0],
        )
        .await?;
    Ok(row.get(0))
}

/// How long the oldest queued job has waited, in seconds (0 with none).
pub async fn oldest_queued_age(pool: &Pool) -> DbResult<f64> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT coalesce(extract(epoch FROM now() - min(updated_at)), 0)::float8
             FROM jobs WHERE state = 'queued'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Job counts by state, for metrics.
pub async fn count_by_state(pool: &Pool) -> DbResult<Vec<(JobState, i64)>> {
    let conn = pool.get().await?;
    let rows = conn
        .query("SELECT state, count(*) FROM jobs GROUP BY state", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Jobs of every user, newest first, optionally in one state, with their
/// owner's email: the operator's view (`videoproject jobs`).
pub async fn list_all(
    pool: &Pool,
    state: Option<JobState>,
    limit: i64,
) -> DbResult<Vec<(JobRow, String)>> {
    let conn = pool.get().await?;
    let columns: Vec<String> = COLUMNS
        .split(", ")
        .map(|c| format!("j.{}", c.trim()))
        .collect();
    let rows = conn
        .query(
            &format!(
                "SELECT {}, u.email FROM jobs j JOIN users u ON u.id = j.user_id
                 WHERE $1::job_state IS NULL OR j.state = $1
                 ORDER BY j.created_at DESC, j.id DESC LIMIT $2",
                columns.join(", ")
            ),
            &[&state, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (JobRow::from_row(r), r.get("email")))
        .collect())
}

/// The transitions of one job, oldest first: (from, to, node, attempt, detail).
pub async fn list_events(
    pool: &Pool,
    id: JobId,
) -> DbResult<Vec<(Option<JobState>, JobState, String, i32, Option<String>)>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT from_state, to_state, node, attempt, detail FROM job_events WHERE job_id = $1 ORDER BY id",
            &[&id.0],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect())
}

/// The queue's SQL against a real PostgreSQL, called from several
/// connections at once: what the nodes of a cluster do.
#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::db::testing;
    use crate::domain::Email;

    const LEASE: Duration = Duration::from_secs(30);

    fn mail(video: &VideoFacts, reason: &str) -> NewNotification {
        crate::notify::message::job_failed(video, crate::domain::FailureCode::Internal, reason)
    }

    async fn user(pool: &Pool, n: usize) -> UserId {
        let email = Email::parse(&format!("user{n}@example.com")).unwrap();
        let conn = pool.get().await.unwrap();
        crate::db::users::insert_user(&conn, &email, "hash", true, Default::default())
            .await
            .unwrap()
            .id
    }

    /// Options and probe as an upload of a 4 s clip stores them.
    fn options() -> FrameOptions {
        FrameOptions {
            interval: Some(0.5),
            count: None,
            max_frames: 100,
            format: crate::media::ImageFormat::Png,
            width: Some(320),
        }
    }

    fn probe() -> MediaInfo {
        MediaInfo {
            duration_secs: 4.0,
            format_name: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            size_bytes: Some(1000),
            bit_rate: Some(2000),
            video: crate::media::VideoStream {
                codec: "h264".into(),
                width: 640,
                height: 360,
                frame_rate: Some(25.0),
                frames: Some(100),
                duration_secs: Some(4.0),
            },
            has_audio: false,
        }
    }

    /// A job of `user`, `queued` as an upload leaves it.
    async fn queued(pool: &Pool, user: UserId) -> JobId {
        let id = JobId::new();
        let options = options();
        let new = NewJob {
            id,
            user_id: user,
            filename: "clip.mp4",
            options: &options,
            max_attempts: 3,
            node: "uploader",
            idempotency_key: None,
            source: None,
        };
        insert_uploading(pool, new).await.unwrap().unwrap();
        mark_stored(pool, id, "uploader", 1000, &probe(), &options)
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn stored_json_reads_back_as_its_types() {
        let db = testing::database().await;
        let user = user(&db.pool, 0).await;
        let written = queued(&db.pool, user).await;
        let job = get(&db.pool, written).await.unwrap().unwrap();
        assert_eq!(job.options, StoredOptions::Frames(options()));
        assert_eq!(job.media_info, Some(probe()));

        // a row in the shape every version so far wrote, as JSON text
        let conn = db.pool.get().await.unwrap();
        let id = JobId::new();
        conn.execute(
            r#"INSERT INTO jobs (id, user_id, filename, state, options, media_info, max_attempts)
               VALUES ($1, $2, 'old.mp4', 'queued',
                 '{"format": "png", "interval": 0.5, "max_frames": 100, "width": 320}',
                 '{"duration_secs": 4.0, "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
                   "size_bytes": 1000, "bit_rate": 2000, "has_audio": false,
                   "video": {"codec": "h264", "width": 640, "height": 360,
                             "frame_rate": 25.0, "frames": 100, "duration_secs": 4.0}}', 3)"#,
            &[&id.0, &user.0],
        )
        .await
        .unwrap();
        let job = get(&db.pool, id).await.unwrap().unwrap();
        assert_eq!(job.options, StoredOptions::Frames(options()));
        assert_eq!(job.media_info, Some(probe()));
        // claims hand the processor the same types
        while let Some(claim) = claim_next(&db.pool, "a", LEASE, 10).await.unwrap() {
            assert_eq!(claim.job.options.frames().unwrap(), &options());
            assert_eq!(claim.job.media_info, Some(probe()));
        }

        // what no version wrote is kept as found, and the probe is dropped
        conn.execute(
            "UPDATE jobs SET options = '{}', media_info = '{\"duration\": 1}' WHERE id = $1",
            &[&id.0],
        )
        .await
        .unwrap();
        let job = get(&db.pool, id).await.unwrap().unwrap();
        assert_eq!(
            job.options,
            StoredOptions::Unreadable(serde_json::json!({}))
        );
        assert_eq!(job.media_info, None);
    }

    async fn events(pool: &Pool, id: JobId) -> Vec<(JobState, Option<String>)> {
        let conn = pool.get().await.unwrap();
        conn.query(
            "SELECT to_state, detail FROM job_events WHERE job_id = $1 ORDER BY id",
            &[&id.0],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    #[tokio::test]
    async fn two_claimers_never_get_one_job() {
        let db = testing::database().await;
        let mut ids = BTreeSet::new();
        for u in 0..4 {
            let user = user(&db.pool, u).await;
            for _ in 0..6 {
                ids.insert(queued(&db.pool, user).await);
            }
        }
        // eight workers on their own connections, claiming until none is left
        let claimers = (0..8).map(|w| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(c) = claim_next(&pool, &format!("node-{w}"), LEASE, 100)
                    .await
                    .unwrap()
                {
                    mine.push(c.job.id);
                }
                mine
            })
        });
        let mut claimed = Vec::new();
        for c in claimers {
            claimed.extend(c.await.unwrap());
        }
        let distinct: BTreeSet<JobId> = claimed.iter().copied().collect();
        assert_eq!(claimed.len(), distinct.len(), "a job claimed twice");
        assert_eq!(distinct, ids, "every job claimed");
    }

    #[tokio::test]
    async fn a_stale_lease_token_writes_nothing() {
        let db = testing::database().await;
        let user = user(&db.pool, 0).await;
        let id = queued(&db.pool, user).await;
        let stale = claim_next(&db.pool, "a", LEASE, 10).await.unwrap().unwrap();
        // node a stalls past its lease: the job is taken back and claimed by b
        let conn = db.pool.get().await.unwrap();
        conn.execute(
            "UPDATE jobs SET lease_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
        let taken = requeue_abandoned(&db.pool, "b", Abandoned::LeaseExpired, mail)
            .await
            .unwrap();
        assert_eq!(taken, vec![(id, RetryOutcome::Requeued)]);
        let current = claim_next(&db.pool, "b", LEASE, 10).await.unwrap().unwrap();
        assert_eq!(current.job.id, id);
        let before = events(&db.pool, id).await;

        let token = stale.lease_token;
        let late = Failure {
            code: FailureCode::Internal,
            reason: "late",
        };
        assert!(!heartbeat(&db.pool, id, token, 0.9, LEASE).await.unwrap());
        let output = Output {
            frames: 3,
            zip_bytes: 10,
            zip_object: "stale.zip",
        };
        assert!(
            !complete(&db.pool, id, token, "a", output, |_| None)
                .await
                .unwrap()
        );
        assert!(
            !fail(&db.pool, id, token, "a", late, |v| mail(v, "late"))
                .await
                .unwrap()
        );
        let retried = retry_or_fail(&db.pool, id, token, "a", late, Duration::ZERO, mail)
            .await
            .unwrap();
        assert_eq!(retried, RetryOutcome::LeaseLost);

        assert_eq!(events(&db.pool, id).await, before, "nothing recorded");
        let job = get(&db.pool, id).await.unwrap().unwrap();
        assert_eq!((job.state, job.progress), (JobState::Processing, 0.0));
        // the current holder still can
        assert!(
            heartbeat(&db.pool, id, current.lease_token, 0.5, LEASE)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_departed_nodes_silent_jobs_move_once_and_its_live_ones_stay() {
        let db = testing::database().await;
        let user = user(&db.pool, 0).await;
        let mut silent = BTreeSet::new();
        for _ in 0..6 {
            queued(&db.pool, user).await;
            silent.insert(
                claim_next(&db.pool, "a", LEASE, 100)
                    .await
                    .unwrap()
                    .unwrap()
                    .job
                    .id,
            );
        }
        // these stopped renewing 10 s ago; one more was renewed just now
        let conn = db.pool.get().await.unwrap();
        conn.execute(
            "UPDATE jobs SET lease_until = now() + interval '20 seconds'",
            &[],
        )
        .await
        .unwrap();
        queued(&db.pool, user).await;
        let live = claim_next(&db.pool, "a", LEASE, 100)
            .await
            .unwrap()
            .unwrap();
        // renewed, and far from its cut-off however slowly the takers start
        // on a busy machine (the cut-off is SILENT_FOR short of a lease)
        conn.execute(
            "UPDATE jobs SET lease_until = now() + interval '1 hour' WHERE id = $1",
            &[&live.job.id.0],
        )
        .await
        .unwrap();

        // every other node sees a leave at once
        let takers = (0..4).map(|n| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let why = Abandoned::Departed {
                    node: "a",
                    lease: LEASE,
                    silent_for: crate::jobs::SILENT_FOR,
                };
                requeue_abandoned(&pool, &format!("peer-{n}"), why, mail)
                    .await
                    .unwrap()
            })
        });
        let mut moved = Vec::new();
        for t in takers {
            moved.extend(t.await.unwrap().into_iter().map(|(id, _)| id));
        }
        let distinct: BTreeSet<JobId> = moved.iter().copied().collect();
        assert_eq!(moved.len(), 6, "each silent job moved once: {moved:?}");
        assert_eq!(distinct, silent);
        for id in &silent {
            let left = events(&db.pool, *id)
                .await
                .into_iter()
                .filter(|(_, d)| d.as_deref() == Some("node a left the cluster"))
                .count();
            assert_eq!(left, 1);
        }
        let job = get(&db.pool, live.job.id).await.unwrap().unwrap();
        assert_eq!(
            job.state,
            JobState::Processing,
            "a live owner keeps its work"
        );
    }

    /// A stopping node's last hand-back waits for a row its own straggler
    /// (a lease renewal in flight) holds, instead of skipping the job and
    /// leaving it `processing` until the lease runs out.
    #[tokio::test]
    async fn a_stopping_nodes_hand_back_waits_for_a_locked_job() {
        let db = testing::database().await;
        let user = user(&db.pool, 0).await;
        queued(&db.pool, user).await;
        let held = claim_next(&db.pool, "a", LEASE, 100)
            .await
            .unwrap()
            .unwrap();
        let mut renewal = db.pool.get().await.unwrap();
        let renewing = renewal.transaction().await.unwrap();
        renewing
            .execute(
                "SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE",
                &[&held.job.id.0],
            )
            .await
            .unwrap();
        let pool = db.pool.clone();
        let hand_back = tokio::spawn(async move {
            requeue_abandoned(&pool, "a", Abandoned::ShuttingDown("a"), mail)
                .await
                .unwrap()
        });
        // the hand-back is waiting on the row lock
        let watcher = db.pool.get().await.unwrap();
        let wait = Duration::from_secs(60);
        videoproject_test_support::eventually(
            "the hand-back to wait for the lock",
            wait,
            || async {
                let waiting: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND datname = current_database()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (waiting == 1).then_some(())
            },
        )
        .await;
        assert!(!hand_back.is_finished());
        renewing.commit().await.unwrap();
        let moved = hand_back.await.unwrap();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(moved[0].0, held.job.id);
        let job = get(&db.pool, held.job.id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(
            events(&db.pool, held.job.id)
                .await
                .last()
                .unwrap()
                .1
                .as_deref(),
            Some("node shutting down")
        );
    }

    #[tokio::test]
    async fn one_users_burst_does_not_starve_another() {
        let db = testing::database().await;
        let (busy, quiet) = (user(&db.pool, 0).await, user(&db.pool, 1).await);
        for _ in 0..10 {
            queued(&db.pool, busy).await;
        }
        // the quiet user's two come after all ten
        for _ in 0..2 {
            queued(&db.pool, quiet).await;
        }
        let mut by_user = BTreeMap::new();
        let mut order = Vec::new();
        while let Some(c) = claim_next(&db.pool, "a", LEASE, 2).await.unwrap() {
            *by_user.entry(c.job.user_id).or_insert(0) += 1;
            order.push(c.job.user_id);
        }
        assert_eq!(order, vec![busy, quiet, busy, quiet], "turns, then the cap");
        assert_eq!(by_user[&busy], 2, "no user runs more than its cap");
    }

    #[tokio::test]
    async fn completion_and_its_email_commit_together_and_a_cancel_fences_the_worker() {
        let db = testing::database().await;
        let user = user(&db.pool, 0).await;
        let outbox = |pool: Pool| async move {
            let conn = pool.get().await.unwrap();
            let n: i64 = conn
                .query_one("SELECT count(*) FROM notifications", &[])
                .await
                .unwrap()
                .get(0);
            n
        };

        // the owner asked for an email on success too
        let conn = db.pool.get().await.unwrap();
        conn.execute("UPDATE users SET notify_on_success = true", &[])
            .await
            .unwrap();
        let done = queued(&db.pool, user).await;
        let claim = claim_next(&db.pool, "a", LEASE, 10).await.unwrap().unwrap();
        let output = Output {
            frames: 3,
            zip_bytes: 10,
            zip_object: "frames.zip",
        };
        let success = |v: &VideoFacts| Some(mail(v, "done"));
        assert!(
            complete(&db.pool, done, claim.lease_token, "a", output, success)
                .await
                .unwrap()
        );
        assert_eq!(
            outbox(db.pool.clone()).await,
            1,
            "the email with the result"
        );
        let job = get(&db.pool, done).await.unwrap().unwrap();
        assert_eq!((job.state, job.frames), (JobState::Done, Some(3)));

        // a deleted job: its worker's next renewal and completion are refused
        let cancelled = queued(&db.pool, user).await;
        let claim = claim_next(&db.pool, "a", LEASE, 10).await.unwrap().unwrap();
        let was = cancel_for_owner(&db.pool, user, cancelled, "b")
            .await
            .unwrap();
        assert_eq!(was, Some(JobState::Processing));
        assert!(
            !heartbeat(&db.pool, cancelled, claim.lease_token, 0.5, LEASE)
                .await
                .unwrap()
        );
        let output = Output {
            frames: 3,
            zip_bytes: 10,
            zip_object: "late.zip",
        };
        assert!(
            !complete(&db.pool, cancelled, claim.lease_token, "a", output, success)
                .await
                .unwrap()
        );
        assert_eq!(
            outbox(db.pool.clone()).await,
            1,
            "no email for a cancelled job"
        );

        // retention: finished jobs older than the cut-off, once
        conn.execute(
            "UPDATE jobs SET finished_at = now() - interval '2 days' WHERE id = $1",
            &[&done.0],
        )
        .await
        .unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(list_expirable(&db.pool, day, 10).await.unwrap(), vec![done]);
        mark_expired(&db.pool, done).await.unwrap();
        assert!(list_expirable(&db.pool, day, 10).await.unwrap().is_empty());
    }
}
