//! Blocking frame extraction with ffmpeg. Run it in `spawn_blocking`.
//!
//! A dense plan is one decoding pass; a sparse one is input seeks, batched
//! into runs spread over the job's cores. Each run writes an `image2pipe`
//! stream to stdout and its log to stderr.
//!
//! * [`args`] — the command lines of both strategies (pure);
//! * [`seeks`] — the seek batches and the workers that run them, frames kept in time order;
//! * [`pump`] — one ffmpeg run: its outputs split into images, the stall watchdog,
//!   cancellation, and the run's end classified;
//! * [`pair`] — each frame matched with the thumbnail ffmpeg made of it;
//! * [`log`] — ffmpeg's log lines, their levels, the error lines kept.

mod args;
mod log;
mod pair;
mod pump;
mod seeks;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::MediaError;
use super::cores::CoreShare;
use super::plan::{FramePlan, ImageFormat, Strategy};

/// How often a waiting thread wakes up to check cancellation and the stall watchdog.
const POLL: Duration = Duration::from_millis(50);

/// One extracted image. `index` counts produced frames (dense, from 0); `timestamp` is the
/// planned position in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub index: u32,
    pub timestamp: f64,
    pub data: Vec<u8>,
    /// Its thumbnail as ffmpeg made it from the same picture (a small
    /// JPEG), when it did.
    pub thumbnail: Option<Vec<u8>>,
}

/// Shared cancellation flag; clones observe the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Copy)]
pub struct ExtractRequest<'a> {
    pub ffmpeg: &'a std::path::Path,
    /// Path or URL of the input.
    pub input: &'a str,
    pub plan: &'a FramePlan,
    /// Duration used for the plan (needed for the `fps` rate of `Spacing::Count`).
    pub duration_secs: f64,
    pub format: ImageFormat,
    /// Scale to this width (height keeps the aspect ratio, rounded to even). `None`/0: as is.
    pub width: Option<u32>,
    /// Kill ffmpeg if it shows no sign of life (output or log line) for this long.
    pub stall_timeout: Duration,
    /// CPU time each ffmpeg process may use before the kernel ends it.
    pub cpu_limit: Duration,
    /// The node's cores: parallel seeks and decoder threads take this job's share.
    pub cores: &'a CoreShare,
    /// The source's picture size, to bound the memory of batched seeks.
    pub picture: Option<(u32, u32)>,
    pub cancel: &'a CancelFlag,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtractStats {
    pub frames: u32,
    pub strategy: Strategy,
}

/// Extracts the planned frames and hands each to `on_frame`, in time order.
///
/// Errors: `Cancelled`, `Stalled`, `Sink` (from `on_frame`), `Corrupt` / `NotAVideo` (ffmpeg's
/// log says the input is bad), `Exited` (other ffmpeg failures), `ToolMissing`, `BadOutput`
/// (unparseable image stream), `Io`, and `NoFrames` when nothing at all was produced.
/// ffmpeg is always killed (if still running) and reaped before this returns.
pub fn extract_frames(
    req: &ExtractRequest,
    on_frame: &mut dyn FnMut(Frame) -> std::io::Result<()>,
) -> Result<ExtractStats, MediaError> {
    if req.cancel.is_cancelled() {
        return Err(MediaError::Cancelled);
    }
    if req.plan.timestamps.is_empty() {
        return Err(MediaError::NoFrames);
    }
    let started = Instant::now();
    let mut produced: u32 = 0;
    let mut emit = |timestamp: f64, image: pair::Image| -> Result<(), MediaError> {
        on_frame(Frame {
            index: produced,
            timestamp,
            data: image.data,
            thumbnail: image.thumbnail,
        })
        .map_err(MediaError::Sink)?;
        produced += 1;
        Ok(())
    };
    match req.plan.strategy {
        Strategy::SinglePass => {
            let args = args::single_pass(req);
            let mut slot = 0usize;
            pump::run(req, &args, &mut |image| {
                let Some(&timestamp) = req.plan.timestamps.get(slot) else {
                    tracing::debug!("ignoring an image beyond the plan");
                    return Ok(());
                };
                slot += 1;
                emit(timestamp, image)
            })?;
        }
        Strategy::SeekEach => seeks::seek_each(req, &mut emit)?,
    }
    tracing::debug!(
        frames = produced,
        planned = req.plan.timestamps.len(),
        strategy = ?req.plan.strategy,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "frame extraction finished"
    );
    if produced == 0 {
        return Err(MediaError::NoFrames);
    }
    Ok(ExtractStats {
        frames: produced,
        strategy: req.plan.strategy,
    })
}
