//! Media handling: probing uploads with ffprobe, planning which frames to take, extracting them
//! with ffmpeg and packing them into a streaming zip.
//!
//! * [`plan`] — pure timestamp planning and strategy choice (seek per frame vs. one pass).
//! * [`budget`] — what one job may cost, checked before and held to while it runs.
//! * [`probe`] — `ffprobe` JSON parsing and validation (is this a video at all?).
//! * [`cores`] — the node's cores, shared by the jobs running on it.
//! * [`extract`] — blocking frame extraction with ffmpeg, with stall watchdog and
//!   cancellation; run it in `spawn_blocking`.
//! * [`split`] — splits ffmpeg's `image2pipe` byte stream into whole images.
//! * [`archive`] — writes frames plus a `manifest.json` into a zip on any `Write`, noting
//!   where each frame lands.
//! * [`previews`] — thumbnails ([`thumbnail`]) and the contact sheet ([`sheet`]), made on a
//!   thread beside the frame path.
//! * [`frame_index`] — the stored index of a finished video's frames (zip ranges,
//!   timestamps, thumbnails).
//! * [`process`] — the one way a tool is started: cleared environment, [`limits`], kill on
//!   drop, metrics, start-up errors.
//! * [`failure`] — what a failed ffmpeg or ffprobe run means, as a [`MediaError`].
//! * `input` — how an upload is named to the tools (local file, allowed demuxers only).

pub mod archive;
pub mod budget;
pub mod cores;
pub mod extract;
mod failure;
pub mod frame_index;
mod input;
mod limits;
pub mod plan;
pub mod previews;
pub mod probe;
pub mod process;
pub mod sheet;
pub mod split;
#[cfg(test)]
mod testutil;
pub mod thumbnail;

use std::time::Duration;

pub use archive::FrameZip;
pub use budget::{Budget, OverBudget};
pub use cores::CoreShare;
pub use extract::{CancelFlag, ExtractRequest, ExtractStats, Frame, extract_frames};
pub use limits::{cpu_budget, set_memory_limit};
pub use plan::{FramePlan, ImageFormat, Spacing, Strategy, fps_filter, plan};
pub use probe::{MediaInfo, MediaSummary, VideoStream, parse_probe, probe};
pub use split::{ImageSplitter, SplitError};

/// Everything that can go wrong while probing or extracting.
///
/// Classification (see [`MediaError::is_permanent`] and [`MediaError::is_transient`]):
/// * permanent — retrying cannot help, the input is at fault: `NotAVideo`, `Corrupt`, `NoFrames`;
/// * transient — environment or tool trouble, a retry may succeed: everything else except
///   `Cancelled`;
/// * `Cancelled` is neither: the job was stopped on purpose and should not be retried nor
///   reported as a failure of the input.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The ffmpeg/ffprobe binary could not be started (not found / not executable).
    #[error("tool not available: {0}")]
    ToolMissing(String),
    /// A command did not finish within its time limit.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// ffmpeg produced no output or log event for this long and was killed.
    #[error("ffmpeg stalled for {0:?}")]
    Stalled(Duration),
    /// The input is readable but is not a video (no video stream, still image, no duration…).
    #[error("not a video: {0}")]
    NotAVideo(String),
    /// The input is damaged or not decodable.
    #[error("corrupt input: {0}")]
    Corrupt(String),
    /// Extraction finished but produced no frame at all.
    #[error("no frames could be extracted")]
    NoFrames,
    /// The tool exited unsuccessfully for a reason not attributable to the input.
    #[error("tool exited with status {code:?}: {reason}")]
    Exited { code: Option<i32>, reason: String },
    /// The tool's output could not be understood (unexpected ffprobe JSON, bad image stream).
    #[error("unexpected tool output: {0}")]
    BadOutput(String),
    /// The job was cancelled through its [`CancelFlag`].
    #[error("cancelled")]
    Cancelled,
    /// The frame consumer (`on_frame`) failed, e.g. the zip writer's disk is full.
    #[error("frame sink failed: {0}")]
    Sink(std::io::Error),
    /// Local I/O failure (spawning, pipes, threads).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The job would spend, or spent, more than its budget.
    #[error("over budget: {0}")]
    OverBudget(#[from] OverBudget),
}

impl From<process::ProcessError> for MediaError {
    fn from(e: process::ProcessError) -> Self {
        match e {
            process::ProcessError::Missing { .. } => MediaError::ToolMissing(e.to_string()),
            process::ProcessError::TimedOut { after, .. } => MediaError::TimedOut(after),
            process::ProcessError::Io { source, .. } => MediaError::Io(source),
        }
    }
}

impl From<SplitError> for MediaError {
    fn from(e: SplitError) -> Self {
        MediaError::BadOutput(e.to_string())
    }
}

impl MediaError {
    /// The input itself is at fault; retrying will give the same result.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MediaError::NotAVideo(_)
                | MediaError::Corrupt(_)
                | MediaError::NoFrames
                | MediaError::OverBudget(_)
        )
    }

    /// A retry may succeed. False for permanent errors and for `Cancelled`.
    pub fn is_transient(&self) -> bool {
        !self.is_permanent() && !matches!(self, MediaError::Cancelled)
    }

    /// What went wrong, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            MediaError::ToolMissing(_) => "tool_missing",
            MediaError::TimedOut(_) => "timed_out",
            MediaError::Stalled(_) => "stalled",
            MediaError::NotAVideo(_) => "not_a_video",
            MediaError::Corrupt(_) => "corrupt",
            MediaError::NoFrames => "no_frames",
            MediaError::Exited { .. } => "exited",
            MediaError::BadOutput(_) => "bad_output",
            MediaError::Cancelled => "cancelled",
            MediaError::Sink(_) => "sink",
            MediaError::Io(_) => "io",
            MediaError::OverBudget(_) => "over_budget",
        }
    }

    /// Counts this failure of ffprobe (`stage` "probe") or ffmpeg
    /// ("extract") in `vp_media_failures_total`; a cancellation is no failure.
    pub fn record(&self, stage: &'static str) {
        if !matches!(self, MediaError::Cancelled) {
            metrics::counter!("vp_media_failures_total", "stage" => stage, "kind" => self.kind())
                .increment(1);
        }
    }

    /// A short sentence for the end user (no paths, no internals).
    pub fn reason(&self) -> String {
        match self {
            MediaError::NotAVideo(r) => capitalize(r),
            MediaError::Corrupt(r) => format!("The video appears to be damaged ({r})."),
            MediaError::NoFrames => "No frames could be extracted from the video.".into(),
            MediaError::Cancelled => "The job was cancelled.".into(),
            MediaError::OverBudget(o) => o.sentence(),
            MediaError::TimedOut(_) | MediaError::Stalled(_) => {
                "Processing the video took too long.".into()
            }
            MediaError::ToolMissing(_)
            | MediaError::Exited { .. }
            | MediaError::BadOutput(_)
            | MediaError::Sink(_)
            | MediaError::Io(_) => "An internal error occurred while processing the video.".into(),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => return "The file is not a video.".into(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let io = || std::io::Error::other("x");
        let cases: Vec<(MediaError, bool, bool)> = vec![
            (MediaError::NotAVideo("x".into()), true, false),
            (MediaError::Corrupt("x".into()), true, false),
            (MediaError::NoFrames, true, false),
            (MediaError::Cancelled, false, false),
            (MediaError::ToolMissing("ffmpeg".into()), false, true),
            (MediaError::TimedOut(Duration::from_secs(1)), false, true),
            (MediaError::Stalled(Duration::from_secs(1)), false, true),
            (
                MediaError::Exited {
                    code: Some(1),
                    reason: "x".into(),
                },
                false,
                true,
            ),
            (MediaError::BadOutput("x".into()), false, true),
            (MediaError::Sink(io()), false, true),
            (MediaError::Io(io()), false, true),
        ];
        for (e, permanent, transient) in cases {
            assert_eq!(e.is_permanent(), permanent, "{e:?}");
            assert_eq!(e.is_transient(), transient, "{e:?}");
            let r = e.reason();
            assert!(r.ends_with('.') && !r.contains('/'), "{r}");
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(
            MediaError::NotAVideo("the file has no video stream".into()).reason(),
            "The file has no video stream."
        );
        assert_eq!(
            MediaError::Corrupt("Invalid NAL unit size".into()).reason(),
            "The video appears to be damaged (Invalid NAL unit size)."
        );
    }
}
