//! Media handling: probing uploads with ffprobe, planning which frames to take, extracting them
//! with ffmpeg and packing them into a streaming zip.
//!
//! * [`plan`] — pure timestamp planning and strategy choice (seek per frame vs. one pass).
//! * [`probe`] — `ffprobe` JSON parsing and validation (is this a video at all?).
//! * [`cores`] — the node's cores, shared by the jobs running on it.
//! * [`extract`] — blocking frame extraction via `ffmpeg-sidecar`, with stall watchdog and
//!   cancellation; run it in `spawn_blocking`.
//! * [`split`] — splits ffmpeg's `image2pipe` byte stream into whole images.
//! * [`archive`] — writes frames plus a `manifest.json` into a zip on any `Write`.
//! * [`process`] — the async subprocess wrapper used for ffprobe.

pub mod archive;
pub mod budget;
pub mod cores;
pub mod extract;
mod limits;
pub mod plan;
pub mod probe;
pub mod process;
pub mod split;
#[cfg(test)]
mod testutil;

use std::time::Duration;

pub use archive::FrameZip;
pub use budget::{Budget, OverBudget};
pub use cores::CoreShare;
pub use extract::{CancelFlag, ExtractRequest, ExtractStats, Frame, extract_frames};
pub use limits::{cpu_budget, set_memory_limit};
pub use plan::{FramePlan, ImageFormat, Spacing, Strategy, fps_filter, plan};
pub use probe::{MediaInfo, VideoStream, parse_probe, probe};
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

/// Demuxers an upload may be read with: containers and raw streams that hold
/// their pictures themselves. Playlists (hls, dash), concat scripts, image
/// sequences and the like make ffmpeg open other files or URLs, so they are
/// not on it, and an upload that probes as one of them is refused.
const DEMUXERS: &str = "mov,matroska,avi,mpegts,mpeg,mpegvideo,m4v,h264,hevc,flv,asf,ogg,mxf,\
nut,ivf,dv,yuv4mpegpipe,gif,rm,wtv";

/// The input as an ffmpeg/ffprobe argument: always through the `file`
/// protocol, so neither a leading `-` nor a `scheme:` in the path is read as
/// anything but a local file.
fn input_arg(input: &str) -> String {
    format!("file:{input}")
}

/// The options that confine ffmpeg or ffprobe to reading `input` itself,
/// then the input: local files only (no network protocol exists for it) and
/// only the demuxers of [`DEMUXERS`].
fn input_args(input: &str) -> [String; 6] {
    [
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        DEMUXERS.into(),
        "-i".into(),
        input_arg(input),
    ]
}

/// ffmpeg's words when an input's demuxer is not on [`DEMUXERS`].
const NOT_ON_WHITELIST: &str = "not on whitelist";

/// The refusal of an input whose demuxer is not on [`DEMUXERS`].
fn unsupported_container() -> MediaError {
    MediaError::NotAVideo(
        "the file is not a video in a container we accept (playlists, concat scripts \
         and files that refer to other files are refused)"
            .into(),
    )
}

/// Makes one line of tool output fit for a user-facing reason: drops `[ctx @ 0x…]` and
/// `[level]` prefixes and a leading `input:`, removes control characters, shortens.
fn sanitize_line(line: &str, input: Option<&str>) -> String {
    let mut s = line.trim();
    while let Some(rest) = s.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => s = rest[end + 1..].trim_start(),
            None => break,
        }
    }
    if let Some(input) = input.filter(|i| !i.is_empty())
        && let Some(rest) = s.strip_prefix(input)
    {
        s = rest.trim_start_matches(':').trim_start();
    }
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .trim_end_matches('.')
        .to_string();
    const MAX: usize = 120;
    if cleaned.chars().count() > MAX {
        let mut short: String = cleaned.chars().take(MAX).collect();
        short.push('…');
        short
    } else {
        cleaned
    }
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

    #[test]
    fn inputs_are_confined_to_a_local_file() {
        assert_eq!(input_arg("-x.mp4"), "file:-x.mp4");
        assert_eq!(input_arg("/up/x.mp4"), "file:/up/x.mp4");
        assert_eq!(input_arg("http://x/y"), "file:http://x/y");
        let args = input_args("/up/x");
        assert_eq!(args[..2], ["-protocol_whitelist", "file"]);
        assert_eq!(args[4..], ["-i", "file:/up/x"]);
    }

    #[test]
    fn sanitize() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                "/tmp/x/in.bin: Invalid data found when processing input",
                Some("/tmp/x/in.bin"),
                "Invalid data found when processing input",
            ),
            (
                "[h264 @ 0x5640959bf7c0] [error] Invalid NAL unit size (-2 > 3216).",
                None,
                "Invalid NAL unit size (-2 > 3216)",
            ),
            ("[fatal] moov atom not found\r", None, "moov atom not found"),
            ("  plain\u{7} text ", None, "plain text"),
        ];
        for (line, input, expected) in cases {
            assert_eq!(sanitize_line(line, *input), *expected);
        }
        let long = "x".repeat(500);
        assert_eq!(sanitize_line(&long, None).chars().count(), 121);
    }
}
