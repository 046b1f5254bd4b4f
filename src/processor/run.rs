//! One job, start to finish: probe the source, plan the frames, stream them
//! from ffmpeg into a zip in the media store, and record the outcome. The
//! lease is renewed (with the progress) while ffmpeg runs; if it is lost,
//! the job stops without writing anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use super::ProcessorContext;
use super::sink::ChannelWriter;
use crate::db::{self, changes::Topic, jobs::Claim};
use crate::jobs::{Failure, FailureCode};
use crate::media::frame_index::FrameRecord;
use crate::media::previews::{Previews, ThumbEntry};
use crate::media::{self, CancelFlag, ExtractRequest, FrameZip, MediaError, OverBudget};
use crate::notify::message;
use crate::storage::{MediaStore, ObjectWriter, StorageError};

/// Why a run did not produce a zip.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("the media store failed: {0}")]
    Storage(#[from] StorageError),
    #[error("the stored job options are unreadable: {0}")]
    Options(String),
    #[error("the worker failed: {0}")]
    Worker(String),
}

impl RunError {
    fn is_permanent(&self) -> bool {
        match self {
            RunError::Media(e) => e.is_permanent(),
            RunError::Options(_) => true,
            RunError::Storage(_) | RunError::Worker(_) => false,
        }
    }

    /// The code a failure from this is recorded with: the one place a
    /// typed error becomes what the page and clients branch on.
    fn code(&self) -> FailureCode {
        match self {
            RunError::Media(e) => match e {
                MediaError::NotAVideo(_) => FailureCode::NotAVideo,
                MediaError::Corrupt(_) => FailureCode::Corrupt,
                MediaError::NoFrames => FailureCode::NoFrames,
                MediaError::OverBudget(_) => FailureCode::OverBudget,
                MediaError::TimedOut(_) | MediaError::Stalled(_) => FailureCode::TimedOut,
                // the zip's writer failed under the frames
                MediaError::Sink(_) => FailureCode::Storage,
                MediaError::ToolMissing(_)
                | MediaError::Exited { .. }
                | MediaError::BadOutput(_)
                | MediaError::Io(_)
                | MediaError::Cancelled => FailureCode::Internal,
            },
            RunError::Storage(_) => FailureCode::Storage,
            RunError::Options(_) | RunError::Worker(_) => FailureCode::Internal,
        }
    }

    fn reason(&self) -> String {
        match self {
            RunError::Media(e) => e.reason(),
            RunError::Storage(StorageError::NotFound) => {
                "the uploaded file is missing from storage".into()
            }
            other => other.to_string(),
        }
    }
}

struct Produced {
    frames: u32,
    zip_bytes: u64,
    /// The contact sheet (JPEG) the done email shows inline, when one was made.
    contact_sheet: Option<Vec<u8>>,
}

/// Why the zip's bytes stopped going into the store.
enum Stored {
    Io(std::io::Error),
    /// More than the job's zip budget, in bytes.
    OverBudget(u64),
}

pub async fn run_job(ctx: Arc<ProcessorContext>, claim: Claim, cancel: CancelFlag) {
    let span = tracing::info_span!("job", job_id = %claim.job.id, attempt = claim.job.attempts);
    async move {
        let started = Instant::now();
        tracing::info!(node = %ctx.node, "processing started");
        let progress = Arc::new(AtomicU32::new(0));
        let work = produce(&ctx, &claim, &cancel, progress.clone());
        let heartbeat = heartbeat(&ctx, &claim, &cancel, progress);
        let limit = time_limit(&ctx, &claim);
        let result = tokio::select! {
            r = work => r,
            () = heartbeat => Err(RunError::Media(MediaError::Cancelled)),
            // past its time budget: stopped, and not retried (it would
            // spend the same again)
            () = tokio::time::sleep(limit) => {
                cancel.cancel();
                Err(RunError::Media(OverBudget::Time { secs: limit.as_secs() }.into()))
            }
        };
        record_outcome(&ctx, &claim, result, started).await;
    }
    .instrument(span)
    .await
}

/// How long a job may run: the configured base plus three times the
/// duration the file can really hold (probed at upload; a header that
/// declares hours in a few kilobytes does not buy hours).
fn time_limit(ctx: &ProcessorContext, claim: &Claim) -> Duration {
    let declared = claim
        .job
        .media_info
        .as_ref()
        .map(|m| m.duration_secs)
        .filter(|d| d.is_finite() && *d > 0.0)
        .unwrap_or(0.0);
    let size = claim.job.size_bytes.unwrap_or(0).max(0) as u64;
    let duration = media::budget::content_secs(declared, size);
    ctx.job_timeout + Duration::from_secs_f64((duration * 3.0).min(86_400.0))
}

/// Renews the lease with the progress every third of the lease; cancels the
/// job and returns when the lease is lost. Never returns otherwise.
async fn heartbeat(
    ctx: &ProcessorContext,
    claim: &Claim,
    cancel: &CancelFlag,
    frames_done: Arc<AtomicU32>,
) {
    let every = (ctx.lease / 3).min(crate::jobs::RENEW_EVERY);
    loop {
        tokio::time::sleep(every).await;
        // `produce` publishes progress in ten-thousandths
        let fraction = frames_done.load(Ordering::Relaxed) as f32 / 10_000.0;
        match db::jobs::heartbeat(
            &ctx.pool,
            claim.job.id,
            claim.lease_token,
            fraction,
            ctx.lease,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("lease lost (job deleted or taken over); stopping");
                cancel.cancel();
                return;
            }
            // a brief database outage is survivable while the lease lasts
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
    }
}

async fn produce(
    ctx: &ProcessorContext,
    claim: &Claim,
    cancel: &CancelFlag,
    progress: Arc<AtomicU32>,
) -> Result<Produced, RunError> {
    let id = claim.job.id;
    let options = claim
        .job
        .options
        .frames()
        .map_err(|e| RunError::Options(e.to_string()))?
        .clone();
    ctx.store.size(&MediaStore::source_key(id)).await?;
    // held to the end of the run: a spooled copy goes when it is dropped
    let local = ctx.store.local_input(&MediaStore::source_key(id)).await?;
    let source = local.path();
    // the probe made when the upload was accepted: probing again would only
    // cost time (the file is the same, stored under the same key)
    let info = match claim.job.media_info.clone() {
        Some(info) => info,
        None => media::probe(&ctx.ffprobe, &source, ctx.probe_timeout).await?,
    };
    // checked at upload too; held here for jobs queued under other limits
    let plan = ctx
        .budget
        .plan(&info, options.spacing(), options.max_frames, options.width)
        .map_err(MediaError::from)?;
    if plan.timestamps.is_empty() {
        return Err(MediaError::NoFrames.into());
    }
    let zip_limit = ctx
        .budget
        .zip_limit(claim.job.size_bytes.unwrap_or(0).max(0) as u64);
    tracing::info!(frames = plan.timestamps.len(), strategy = ?plan.strategy, duration = info.duration_secs, "plan");

    let zip_key = MediaStore::zip_key(id, claim.lease_token);
    let beside = MediaStore::attempt_keys(&zip_key);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let store_zip = store_object(ctx.store.writer(&zip_key), rx, zip_limit);
    // thumbnails are a few KB a frame: bounded by the zip's budget too
    let (thumbs_tx, thumbs_rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let store_thumbs = store_object(ctx.store.writer(&beside.thumbs), thumbs_rx, zip_limit);

    let ffmpeg = ctx.ffmpeg.clone();
    let stall = ctx.stall_timeout;
    let cpu_limit = media::cpu_budget(time_limit(ctx, claim));
    let cancel = cancel.clone();
    // the manifest repeats the options as stored
    let options_json =
        serde_json::to_value(&claim.job.options).map_err(|e| RunError::Options(e.to_string()))?;
    let cores = ctx.cores.clone();
    let picture = Some((info.video.width, info.video.height));
    let extract = tokio::task::spawn_blocking(move || -> Result<Extracted, MediaError> {
        let planned = plan.timestamps.len();
        let mut zip = FrameZip::new(ChannelWriter::new(tx), options.format, planned);
        // off the frame path: ffmpeg's frames reach the zip without waiting for them
        let previews = Previews::start(ChannelWriter::new(thumbs_tx), options.format)?;
        let mut times = Vec::with_capacity(planned);
        let request = ExtractRequest {
            ffmpeg: &ffmpeg,
            input: &source,
            plan: &plan,
            duration_secs: info.duration_secs,
            format: options.format,
            width: options.width,
            stall_timeout: stall,
            cpu_limit,
            cores: &cores,
            picture,
            cancel: &cancel,
        };
        let stats = media::extract_frames(&request, &mut |frame| {
            zip.add(&frame)?;
            times.push(frame.timestamp);
            let done = (frame.index as usize + 1).min(planned);
            // the zip has the bytes; the previews thread takes them over
            previews.send(frame)?;
            // keep 1 % for writing the manifest and storing the zip
            progress.store((done * 9_900 / planned) as u32, Ordering::Relaxed);
            Ok(())
        })?;
        let ranges = zip.ranges().to_vec();
        let mut sink = zip
            .finish(&info, &options_json, stats.strategy)
            .map_err(MediaError::Sink)?;
        std::io::Write::flush(&mut sink).map_err(MediaError::Sink)?;
        drop(sink);
        let made = previews.finish().map_err(MediaError::Sink)?;
        drop(made.writer);
        let index = media::frame_index::encode(
            options.format,
            &index_records(&ranges, &times, &made.thumbs),
        );
        Ok(Extracted {
            frames: stats.frames,
            index,
            sheet: made.sheet,
        })
    });

    let (extracted, stored, thumbs) = tokio::join!(extract, store_zip, store_thumbs);
    let extracted = extracted.map_err(|e| RunError::Worker(e.to_string()))?;
    // the thumbnails' store failing is the store's failure, as the zip's is
    let stored = stored.and_then(|zip| thumbs.map(|thumbs| (zip, thumbs)));
    match (extracted, stored) {
        (Ok(done), Ok(((mut zip, written), (mut thumbs, _)))) => {
            // side by side: each waits on its own fsync
            let sheet = async {
                match &done.sheet {
                    Some(sheet) => ctx.store.put(&beside.sheet, sheet.clone().into()).await,
                    None => Ok(()),
                }
            };
            tokio::try_join!(
                async { thumbs.shutdown().await.map_err(StorageError::Io) },
                ctx.store.put(&beside.index, done.index.into()),
                sheet,
            )?;
            // the zip last: whoever sees it finds the rest beside it
            zip.shutdown().await.map_err(StorageError::Io)?;
            Ok(Produced {
                frames: done.frames,
                zip_bytes: written,
                // the done email shows it inline
                contact_sheet: done.sheet,
            })
        }
        // the zip went over its budget: the writer is dropped, which
        // abandons the partial object
        (_, Err(Stored::OverBudget(limit))) => {
            Err(MediaError::from(OverBudget::ZipBytes { limit }).into())
        }
        // the store failed first: ffmpeg saw a broken pipe, the store has the cause
        (Err(MediaError::Sink(_)), Err(Stored::Io(e))) => Err(StorageError::Io(e).into()),
        (Err(e), _) => Err(e.into()),
        (Ok(_), Err(Stored::Io(e))) => Err(StorageError::Io(e).into()),
    }
}

/// What the blocking half of a run hands back.
struct Extracted {
    frames: u32,
    /// The frame index (`media::frame_index`).
    index: Vec<u8>,
    sheet: Option<Vec<u8>>,
}

/// Streams what arrives on `rx` into `writer`, at most `limit` bytes; the
/// writer is handed back unfinished (shutting it down makes the object).
/// Dropping the receiver stops the sender (a broken pipe).
async fn store_object(
    mut writer: ObjectWriter,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    limit: u64,
) -> Result<(ObjectWriter, u64), Stored> {
    let mut written = 0u64;
    while let Some(chunk) = rx.recv().await {
        written += chunk.len() as u64;
        if written > limit {
            return Err(Stored::OverBudget(limit));
        }
        writer.write_all(&chunk).await.map_err(Stored::Io)?;
    }
    Ok((writer, written))
}

/// The frame index's records: each frame's range in the zip and its
/// timestamp, with its thumbnail's place (frames and thumbnails are in the
/// same order).
fn index_records(
    ranges: &[std::ops::Range<u64>],
    times: &[f64],
    thumbs: &[ThumbEntry],
) -> Vec<FrameRecord> {
    ranges
        .iter()
        .zip(times)
        .enumerate()
        .map(|(i, (range, &t))| {
            let thumb = thumbs.get(i).copied().unwrap_or_default();
            FrameRecord {
                data_offset: range.start,
                data_len: (range.end - range.start) as u32,
                width: thumb.frame_width,
                height: thumb.frame_height,
                t,
                thumb_offset: thumb.offset,
                thumb_len: thumb.len,
                thumb_width: thumb.width,
                thumb_height: thumb.height,
            }
        })
        .collect()
}

async fn record_outcome(
    ctx: &ProcessorContext,
    claim: &Claim,
    result: Result<Produced, RunError>,
    started: Instant,
) {
    let id = claim.job.id;
    let elapsed = started.elapsed();
    if let Err(RunError::Media(e)) = &result {
        e.record("extract");
    }
    let outcome = match result {
        Ok(done) => {
            let zip_object = MediaStore::zip_key(id, claim.lease_token);
            let recorded = persist("completion", || {
                db::jobs::complete(
                    &ctx.pool,
                    id,
                    claim.lease_token,
                    &ctx.node,
                    db::jobs::Output {
                        frames: done.frames as i32,
                        zip_bytes: done.zip_bytes as i64,
                        zip_object: zip_object.as_ref(),
                    },
                    |video| {
                        let expires_at = chrono::Utc::now() + ctx.retention;
                        let sheet = done.contact_sheet.clone();
                        Some(message::job_done(video, done.frames, expires_at, sheet))
                    },
                )
            })
            .await;
            match recorded {
                Ok(true) => {
                    // Only the attempt whose completion won the fence clears up
                    // after the others (a killed run's staging file, a
                    // fenced-out run's zip): any earlier, and a paused stale
                    // attempt could delete the result of the one replacing it.
                    if let Err(e) = ctx
                        .store
                        .remove_other_attempts(id, &MediaStore::zip_key(id, claim.lease_token))
                        .await
                    {
                        tracing::warn!(error = %e, "could not remove other attempts' files");
                    }
                    metrics::histogram!("vp_processing_seconds").record(elapsed.as_secs_f64());
                    if elapsed > Duration::ZERO {
                        metrics::histogram!("vp_frames_per_second")
                            .record(f64::from(done.frames) / elapsed.as_secs_f64());
                    }
                    tracing::info!(
                        frames = done.frames,
                        zip_bytes = done.zip_bytes,
                        seconds = elapsed.as_secs_f64(),
                        "done"
                    );
                    ctx.notifier.wake();
                    "done"
                }
                Ok(false) => {
                    // fenced out: another attempt owns the job now, and this
                    // attempt's zip (its own object) is nobody's result
                    tracing::warn!("finished, but the lease was lost; result discarded");
                    let own = MediaStore::zip_key(id, claim.lease_token);
                    if let Err(e) = ctx.store.delete_attempt(&own).await {
                        tracing::warn!(error = %e, "could not delete a fenced-out attempt's objects");
                    }
                    "lease_lost"
                }
                Err(e) => {
                    tracing::error!(error = %e, "recording completion failed; the lease will expire and the job rerun");
                    "db_error"
                }
            }
        }
        Err(RunError::Media(MediaError::Cancelled)) => {
            tracing::info!("stopped: cancelled");
            "cancelled"
        }
        Err(e) if e.is_permanent() => {
            let reason = e.reason();
            let code = e.code();
            let failure = Failure {
                code,
                reason: &reason,
            };
            tracing::warn!(error = %e, %reason, ?code, "failed permanently");
            let recorded = persist("failure", || {
                db::jobs::fail(&ctx.pool, id, claim.lease_token, &ctx.node, failure, |v| {
                    message::job_failed(v, code, &reason)
                })
            })
            .await;
            match recorded {
                Ok(_) => ctx.notifier.wake(),
                Err(e) => {
                    tracing::error!(error = %e, "recording failure failed; the lease will expire")
                }
            }
            "failed"
        }
        Err(e) => {
            let reason = e.reason();
            let code = e.code();
            let failure = Failure {
                code,
                reason: &reason,
            };
            let backoff = retry_backoff(claim.job.attempts as u32);
            tracing::warn!(error = %e, %reason, ?backoff, "transient failure");
            let recorded = persist("retry", || {
                db::jobs::retry_or_fail(
                    &ctx.pool,
                    id,
                    claim.lease_token,
                    &ctx.node,
                    failure,
                    backoff,
                    |v, why| message::job_failed(v, code, why),
                )
            })
            .await;
            match recorded {
                Ok(db::jobs::RetryOutcome::Failed) => ctx.notifier.wake(),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "recording retry failed; the lease will expire")
                }
            }
            "retry"
        }
    };
    ctx.changes.touch(Topic::Owner(claim.job.user_id));
    metrics::counter!("vp_jobs_finished_total", "outcome" => outcome).increment(1);
}

/// Runs a write of a job's outcome, retrying while the database cannot be
/// reached: work that finished is not thrown away because PostgreSQL
/// blinked. The lease fence still decides whether the write counts.
async fn persist<T, F, Fut>(what: &str, mut write: F) -> db::DbResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = db::DbResult<T>>,
{
    const PATIENCE: Duration = Duration::from_secs(600);
    let deadline = Instant::now() + PATIENCE;
    let mut wait = Duration::from_millis(500);
    loop {
        match write().await {
            Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in = ?wait, "recording the {what} failed: database unreachable");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// 5 s, 10 s, 20 s, … capped at five minutes.
fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_secs((5u64 << attempt.saturating_sub(1).min(6)).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_grows_and_is_capped() {
        assert_eq!(retry_backoff(1), Duration::from_secs(5));
        assert_eq!(retry_backoff(2), Duration::from_secs(10));
        assert_eq!(retry_backoff(30), Duration::from_secs(300));
    }
}
