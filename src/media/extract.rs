//! Blocking frame extraction with ffmpeg (via `ffmpeg-sidecar`). Run it in `spawn_blocking`.
//!
//! Each ffmpeg run writes an `image2pipe` stream to stdout. Stdout is read by our own thread and
//! ffmpeg's log events by a second thread (ffmpeg-sidecar's iterator); both feed one bounded
//! channel that the calling thread polls, so it can enforce the stall watchdog and react to
//! cancellation while ffmpeg runs, kill the child, and always reap it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};

use super::MediaError;
use super::cores::CoreShare;
use super::plan::{FramePlan, ImageFormat, Strategy, fps_filter};
use super::split::ImageSplitter;

/// How often the calling thread wakes up to check cancellation and the stall watchdog.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for the reader threads after ffmpeg was killed or has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// At most this many error lines are kept per ffmpeg run.
const MAX_ERROR_LINES: usize = 32;
/// At most this many seeks share one ffmpeg run: enough to spread its
/// start-up (~70 ms, mostly loading libraries) over several frames.
const MAX_SEEKS_PER_RUN: usize = 8;
/// A run opens a decoder per seek, all at once; their pictures may take
/// about this many bytes per pixel (reference frames, threads' copies).
const DECODER_BYTES_PER_PIXEL: u64 = 24;
/// What the decoders of one batched run may take together.
const SEEK_RUN_MEMORY: u64 = 256 << 20;

/// One extracted image. `index` counts produced frames (dense, from 0); `timestamp` is the
/// planned position in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub index: u32,
    pub timestamp: f64,
    pub data: Vec<u8>,
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
    let mut emit = |timestamp: f64, data: Vec<u8>| -> Result<(), MediaError> {
        on_frame(Frame {
            index: produced,
            timestamp,
            data,
        })
        .map_err(MediaError::Sink)?;
        produced += 1;
        Ok(())
    };
    match req.plan.strategy {
        Strategy::SinglePass => {
            let args = single_pass_args(req);
            let mut slot = 0usize;
            run_ffmpeg(req, &args, &mut |data| {
                let Some(&timestamp) = req.plan.timestamps.get(slot) else {
                    tracing::debug!("ignoring an image beyond the plan");
                    return Ok(());
                };
                slot += 1;
                emit(timestamp, data)
            })?;
        }
        Strategy::SeekEach => seek_each(req, &mut emit)?,
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

fn scale_filter(req: &ExtractRequest) -> Option<String> {
    req.width
        .filter(|w| *w > 0)
        .map(|w| format!("scale={w}:-2"))
}

/// `threads`: the encoder's threads (`None`: ffmpeg's choice, every core).
fn output_args(
    req: &ExtractRequest,
    map: &str,
    vf: Option<String>,
    frames: usize,
    threads: Option<usize>,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["-map".into(), map.into()];
    args.extend(["-an", "-sn", "-dn"].map(String::from));
    if let Some(n) = threads {
        args.extend(["-threads".into(), n.to_string()]);
    }
    if let Some(vf) = vf {
        args.extend(["-vf".into(), vf]);
    }
    args.extend(["-frames:v".into(), frames.to_string()]);
    args.extend(["-f", "image2pipe", "-c:v", req.format.codec()].map(String::from));
    if req.format == ImageFormat::Jpg {
        // mjpeg wants full-range YUV; -q:v 2 is near-lossless.
        args.extend(["-pix_fmt", "yuvj420p", "-q:v", "2"].map(String::from));
    }
    args.push("-".into());
    args
}

const COMMON_ARGS: [&str; 3] = ["-hide_banner", "-nostdin", "-xerror"];

fn single_pass_args(req: &ExtractRequest) -> Vec<String> {
    let mut args: Vec<String> = COMMON_ARGS.map(String::from).to_vec();
    // alone on the node ffmpeg takes every core (its default); beside other
    // jobs only this job's share, for decoder, filters and encoder alike
    let share = req.cores.share();
    let threads = (share < req.cores.cores()).then_some(share);
    if let Some(n) = threads {
        let n = n.to_string();
        args.extend(["-filter_threads".into(), n.clone(), "-threads".into(), n]);
    }
    args.extend(super::input_args(req.input));
    // round=up: slot k takes the last frame with pts <= t_k (see `fps_filter`).
    let fps = format!("{}:round=up", fps_filter(req.plan, req.duration_secs));
    let vf = [Some(fps), scale_filter(req)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(",");
    args.extend(output_args(
        req,
        "0:v:0",
        Some(vf),
        req.plan.timestamps.len(),
        threads,
    ));
    args
}

/// One ffmpeg run for several seeks: the input is opened once per timestamp
/// with an input seek (`-ss T -i`, exact: decoded from the keyframe before
/// T), each takes its first frame, and `concat` joins them in order into one
/// image stream. Each decoder gets one thread: a batch runs on one core.
fn seek_batch_args(req: &ExtractRequest, timestamps: &[f64]) -> Vec<String> {
    let mut args: Vec<String> = COMMON_ARGS.map(String::from).to_vec();
    args.extend(["-filter_threads".into(), "1".into()]);
    let mut graph = String::new();
    let mut joined = String::new();
    for (k, t) in timestamps.iter().enumerate() {
        args.extend([
            "-threads".into(),
            "1".into(),
            "-ss".into(),
            format!("{t:.3}"),
        ]);
        args.extend(super::input_args(req.input));
        let _ = write!(graph, "[{k}:v:0]trim=end_frame=1[f{k}];");
        let _ = write!(joined, "[f{k}]");
    }
    // every run's frame starts at time 0: renumbered, none is taken for a duplicate
    let _ = write!(
        graph,
        "{joined}concat=n={}:v=1:a=0,setpts=N/TB",
        timestamps.len()
    );
    if let Some(scale) = scale_filter(req) {
        let _ = write!(graph, ",{scale}");
    }
    graph.push_str("[out]");
    args.extend(["-filter_complex".into(), graph]);
    args.extend(["-fps_mode".into(), "passthrough".into()]);
    args.extend(output_args(req, "[out]", None, timestamps.len(), Some(1)));
    args
}

/// Seeks per run for `timestamps` seeks spread over `workers` cores.
fn seeks_per_run(timestamps: usize, workers: usize, picture: Option<(u32, u32)>) -> usize {
    let pixels = picture.map_or(1920 * 1080, |(w, h)| u64::from(w) * u64::from(h));
    let by_memory = SEEK_RUN_MEMORY / (pixels * DECODER_BYTES_PER_PIXEL).max(1);
    timestamps
        .div_ceil(workers.max(1))
        .min(MAX_SEEKS_PER_RUN)
        .min(by_memory as usize)
        .max(1)
}

/// The frames of one batch of seeks, with their timestamps. A seek past the
/// end yields nothing, and then the batch cannot tell which frame is whose:
/// its seeks are run again one by one.
fn seek_batch(req: &ExtractRequest, timestamps: &[f64]) -> Result<Vec<(f64, Vec<u8>)>, MediaError> {
    let mut images = Vec::with_capacity(timestamps.len());
    run_ffmpeg(req, &seek_batch_args(req, timestamps), &mut |data| {
        images.push(data);
        Ok(())
    })?;
    if images.len() == timestamps.len() {
        return Ok(timestamps.iter().copied().zip(images).collect());
    }
    if timestamps.len() == 1 {
        tracing::debug!(timestamp = timestamps[0], "seek produced no frame; skipped");
        return Ok(Vec::new());
    }
    let mut frames = Vec::new();
    for t in timestamps {
        frames.extend(seek_batch(req, std::slice::from_ref(t))?);
    }
    Ok(frames)
}

/// Runs the seeks in batches on as many cores as the job's share allows and
/// emits the frames in time order. A worker beyond the share (other jobs
/// started meanwhile) stops after its batch: it gives its core back.
fn seek_each(
    req: &ExtractRequest,
    emit: &mut dyn FnMut(f64, Vec<u8>) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let workers = req.cores.share();
    let size = seeks_per_run(req.plan.timestamps.len(), workers, req.picture);
    let batches: Vec<&[f64]> = req.plan.timestamps.chunks(size).collect();
    let workers = workers.min(batches.len());
    // stops the other workers' runs when one fails or the job is cancelled
    let stop = CancelFlag::new();
    let inner = ExtractRequest {
        cancel: &stop,
        ..*req
    };
    let next = AtomicUsize::new(0);
    type Done = (usize, Result<Vec<(f64, Vec<u8>)>, MediaError>);
    let (tx, rx) = sync_channel::<Done>(workers);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (tx, inner, next, batches) = (tx.clone(), &inner, &next, &batches);
            scope.spawn(move || {
                while !inner.cancel.is_cancelled() && (worker == 0 || worker < inner.cores.share())
                {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(batch) = batches.get(i) else { break };
                    let result = seek_batch(inner, batch);
                    let failed = result.is_err();
                    if tx.send((i, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut outcome = Ok(());
        let fail = |outcome: &mut Result<(), MediaError>, e: MediaError| {
            stop.cancel();
            if outcome.is_ok() {
                *outcome = Err(e);
            }
        };
        let mut waiting: BTreeMap<usize, Vec<(f64, Vec<u8>)>> = BTreeMap::new();
        let mut emitted = 0;
        loop {
            if req.cancel.is_cancelled() {
                fail(&mut outcome, MediaError::Cancelled);
            }
            match rx.recv_timeout(POLL) {
                Ok((i, Ok(frames))) => {
                    waiting.insert(i, frames);
                    while let Some(frames) = waiting.remove(&emitted) {
                        emitted += 1;
                        for (t, data) in frames {
                            if outcome.is_err() {
                                break;
                            }
                            if let Err(e) = emit(t, data) {
                                fail(&mut outcome, e);
                            } else if req.cancel.is_cancelled() {
                                fail(&mut outcome, MediaError::Cancelled);
                            }
                        }
                    }
                }
                Ok((_, Err(e))) => fail(&mut outcome, e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return outcome,
            }
        }
    })
}

enum Msg {
    Chunk(Vec<u8>),
    StdoutEnd,
    StdoutError(std::io::Error),
    Log(LogLevel, String),
    Activity,
    LogEnd,
}

/// Runs one ffmpeg command, feeding every complete image to `on_image`.
fn run_ffmpeg(
    req: &ExtractRequest,
    args: &[String],
    on_image: &mut dyn FnMut(Vec<u8>) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    tracing::debug!(?args, "spawning ffmpeg");
    let mut command = FfmpegCommand::new_with_path(req.ffmpeg);
    command
        .as_inner_mut()
        .env_clear()
        .envs(super::limits::tool_environment());
    let mut child = command.args(args).spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            MediaError::ToolMissing(format!("{}: {e}", req.ffmpeg.display()))
        }
        _ => MediaError::Io(e),
    })?;
    super::limits::limit_tool(Some(child.as_inner().id()), req.cpu_limit);
    let (tx, rx) = sync_channel::<Msg>(16);
    let threads = match start_readers(&mut child, tx) {
        Ok(t) => t,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };

    let mut splitter = ImageSplitter::new(req.format);
    let mut errors: Vec<String> = Vec::new();
    let outcome = pump(req, &mut child, &rx, &mut splitter, &mut errors, on_image);

    if outcome.is_err() {
        // Stop ffmpeg now; it may already be gone, which is fine.
        let _ = child.kill();
    }
    // Let the reader threads run to completion so they release the pipes.
    drain(&rx, &mut errors);
    let status = child.wait();
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("ffmpeg reader thread did not finish; detaching it");
        }
    }
    outcome?;
    let status: ExitStatus = status?;
    if let Some(err) = classify(status.success(), status.code(), &errors, req.input) {
        tracing::info!(code = ?status.code(), ?errors, "ffmpeg failed");
        return Err(err);
    }
    if !errors.is_empty() {
        tracing::warn!(?errors, "ffmpeg succeeded but logged errors");
    }
    splitter.finish()?;
    Ok(())
}

fn start_readers(
    child: &mut FfmpegChild,
    tx: SyncSender<Msg>,
) -> Result<Vec<JoinHandle<()>>, MediaError> {
    let mut stdout = child
        .take_stdout()
        .ok_or_else(|| std::io::Error::other("ffmpeg stdout is not piped"))?;
    let events = child
        .iter()
        .map_err(|e| MediaError::Io(std::io::Error::other(e.to_string())))?;
    let out_tx = tx.clone();
    let out = std::thread::Builder::new()
        .name("ffmpeg-stdout".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let msg = match stdout.read(&mut buf) {
                    Ok(0) => Msg::StdoutEnd,
                    Ok(n) => Msg::Chunk(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Msg::StdoutError(e),
                };
                let last = !matches!(msg, Msg::Chunk(_));
                if out_tx.send(msg).is_err() || last {
                    break;
                }
            }
        })?;
    let log = std::thread::Builder::new()
        .name("ffmpeg-log".into())
        .spawn(move || {
            for event in events {
                let msg = match event {
                    FfmpegEvent::Log(level, line) => Msg::Log(level, line),
                    FfmpegEvent::Error(e) => {
                        // Raised by ffmpeg-sidecar itself, not by ffmpeg.
                        tracing::debug!(error = %e, "ffmpeg-sidecar event error");
                        Msg::Activity
                    }
                    FfmpegEvent::LogEOF => break,
                    _ => Msg::Activity,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::LogEnd);
        })?;
    Ok(vec![out, log])
}

/// Receives messages until both readers are done or something forces an early stop.
fn pump(
    req: &ExtractRequest,
    child: &mut FfmpegChild,
    rx: &Receiver<Msg>,
    splitter: &mut ImageSplitter,
    errors: &mut Vec<String>,
    on_image: &mut dyn FnMut(Vec<u8>) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let mut last_activity = Instant::now();
    let (mut stdout_done, mut log_done) = (false, false);
    let mut exited_at: Option<Instant> = None;
    while !(stdout_done && log_done) {
        if req.cancel.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        match rx.recv_timeout(POLL) {
            Ok(msg) => {
                match msg {
                    Msg::Chunk(chunk) => {
                        for image in splitter.push(&chunk)? {
                            on_image(image)?;
                            if req.cancel.is_cancelled() {
                                return Err(MediaError::Cancelled);
                            }
                        }
                    }
                    Msg::StdoutEnd => stdout_done = true,
                    Msg::StdoutError(e) => return Err(MediaError::Io(e)),
                    Msg::Log(level, line) => record_log(errors, level, line),
                    Msg::Activity => {}
                    Msg::LogEnd => log_done = true,
                }
                last_activity = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if last_activity.elapsed() >= req.stall_timeout {
                    tracing::warn!(timeout = ?req.stall_timeout, "ffmpeg stalled; killing it");
                    return Err(MediaError::Stalled(req.stall_timeout));
                }
                // If ffmpeg has exited and its output is consumed but the log reader never
                // finishes (ffmpeg-sidecar's parser can give up on odd lines), stop waiting.
                if stdout_done && matches!(child.as_inner_mut().try_wait(), Ok(Some(_))) {
                    let since = *exited_at.get_or_insert_with(Instant::now);
                    if since.elapsed() >= DRAIN_GRACE {
                        return Ok(());
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
    Ok(())
}

fn record_log(errors: &mut Vec<String>, level: LogLevel, line: String) {
    match level {
        LogLevel::Error | LogLevel::Fatal => {
            tracing::debug!(line = %line, "ffmpeg error");
            if errors.len() < MAX_ERROR_LINES {
                errors.push(line);
            }
        }
        _ => tracing::trace!(line = %line, "ffmpeg"),
    }
}

/// Waits (bounded) until the reader threads hang up, keeping any late error lines.
fn drain(rx: &Receiver<Msg>, errors: &mut Vec<String>) {
    let deadline = Instant::now() + DRAIN_GRACE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Msg::Log(level, line)) => record_log(errors, level, line),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Log fragments that mean the input has no usable video stream.
const NO_VIDEO_PATTERNS: &[&str] = &[
    "matches no streams",
    "does not contain any stream",
    "no video stream",
];

/// Log fragments that mean the input data is damaged or undecodable.
const CORRUPT_PATTERNS: &[&str] = &[
    "invalid data",
    "corrupt",
    "error while decoding",
    "invalid nal unit",
    "moov atom not found",
    "missing picture",
    "decode_slice_header error",
    "no frame!",
    "truncat",
    "invalid frame",
    "error splitting the input into nal units",
    "non-existing pps",
    "non-existing sps",
    "ac-tex damaged",
    "header damaged",
    "end of file",
    "could not find codec parameters",
    "impossible to open",
];

/// Maps the end of an ffmpeg run to an error, or `None` when it succeeded.
///
/// A line matching [`NO_VIDEO_PATTERNS`] gives `NotAVideo`, one matching [`CORRUPT_PATTERNS`]
/// gives `Corrupt` (both even with exit status 0, e.g. errors ffmpeg concealed); otherwise a
/// failed exit gives `Exited` and a successful one `None`.
fn classify(
    success: bool,
    code: Option<i32>,
    errors: &[String],
    input: &str,
) -> Option<MediaError> {
    let arg = super::input_arg(input);
    let find = |patterns: &[&str]| {
        errors.iter().find(|line| {
            let lower = line.to_ascii_lowercase();
            patterns.iter().any(|p| lower.contains(p))
        })
    };
    if find(NO_VIDEO_PATTERNS).is_some() {
        return Some(MediaError::NotAVideo("the file has no video stream".into()));
    }
    if find(&[super::NOT_ON_WHITELIST]).is_some() {
        return Some(super::unsupported_container());
    }
    if let Some(line) = find(CORRUPT_PATTERNS) {
        return Some(MediaError::Corrupt(super::sanitize_line(line, Some(&arg))));
    }
    if success {
        return None;
    }
    let reason = errors
        .iter()
        .map(|l| super::sanitize_line(l, Some(&arg)))
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| match code {
            Some(c) => format!("ffmpeg exited with status {c}"),
            None => "ffmpeg was killed by a signal".into(),
        });
    Some(MediaError::Exited { code, reason })
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Spacing, plan};
    use super::super::testutil::{self, FFMPEG, image_size};
    use super::*;
    use std::path::{Path, PathBuf};

    struct Run {
        result: Result<ExtractStats, MediaError>,
        frames: Vec<Frame>,
    }

    fn request<'a>(
        input: &'a Path,
        plan: &'a FramePlan,
        duration: f64,
        format: ImageFormat,
        width: Option<u32>,
        cancel: &'a CancelFlag,
    ) -> ExtractRequest<'a> {
        ExtractRequest {
            ffmpeg: Path::new(FFMPEG),
            input: input.to_str().unwrap(),
            plan,
            duration_secs: duration,
            format,
            width,
            stall_timeout: Duration::from_secs(20),
            cpu_limit: Duration::from_secs(600),
            cores: &TWO_CORES,
            picture: None,
            cancel,
        }
    }

    /// Two cores whatever the machine has, so seeks run in parallel batches.
    static TWO_CORES: std::sync::LazyLock<CoreShare> =
        std::sync::LazyLock::new(|| CoreShare::new(2));

    fn run(req: &ExtractRequest) -> Run {
        let mut frames = Vec::new();
        let result = extract_frames(req, &mut |f| {
            frames.push(f);
            Ok(())
        });
        Run { result, frames }
    }

    fn video(secs: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = testutil::make_video(dir.path(), "in.mp4", secs, "320x240");
        (dir, path)
    }

    fn with_strategy(mut p: FramePlan, s: Strategy) -> FramePlan {
        p.strategy = s;
        p
    }

    fn assert_frames(r: &Run, p: &FramePlan, format: ImageFormat, size: (u32, u32)) {
        let stats = r.result.as_ref().unwrap();
        assert_eq!(stats.frames as usize, p.timestamps.len());
        assert_eq!(stats.strategy, p.strategy);
        assert_eq!(r.frames.len(), p.timestamps.len());
        for (k, f) in r.frames.iter().enumerate() {
            assert_eq!(f.index as usize, k);
            assert_eq!(f.timestamp, p.timestamps[k]);
            match format {
                ImageFormat::Jpg => assert!(f.data.starts_with(&[0xFF, 0xD8])),
                ImageFormat::Png => assert!(f.data.starts_with(b"\x89PNG")),
            }
            assert_eq!(image_size(&f.data), size);
        }
    }

    #[test]
    fn seeks_are_batched_by_cores_and_memory() {
        type Picture = Option<(u32, u32)>;
        // (timestamps, workers, picture, seeks per run)
        let cases: &[(usize, usize, Picture, usize)] = &[
            (30, 2, Some((640, 360)), MAX_SEEKS_PER_RUN),
            (6, 2, Some((640, 360)), 3),
            (1, 4, None, 1),
            // 1080p decoders are big: fewer at once
            (30, 2, Some((1920, 1080)), 5),
            (30, 2, None, 5),
            // 8K: one at a time, never none
            (30, 2, Some((7680, 4320)), 1),
            (3, 0, Some((320, 240)), 3),
        ];
        for &(n, workers, picture, expected) in cases {
            assert_eq!(
                seeks_per_run(n, workers, picture),
                expected,
                "{n} {workers} {picture:?}"
            );
        }
    }

    #[test]
    fn exact_counts_both_strategies() {
        let (_dir, input) = video(10);
        let cancel = CancelFlag::new();
        let spacings = [
            (Spacing::Interval { millis: 1000 }, 10),
            (Spacing::Interval { millis: 2500 }, 4),
            (Spacing::Count(7), 7),
        ];
        for (spacing, expected) in spacings {
            for strategy in [Strategy::SinglePass, Strategy::SeekEach] {
                let p = with_strategy(plan(10.0, spacing, 1000, None), strategy);
                assert_eq!(p.timestamps.len(), expected);
                let req = request(&input, &p, 10.0, ImageFormat::Jpg, None, &cancel);
                let r = run(&req);
                assert!(r.result.is_ok(), "{spacing:?} {strategy:?}: {:?}", r.result);
                assert_frames(&r, &p, ImageFormat::Jpg, (320, 240));
            }
        }
    }

    #[test]
    fn both_strategies_pick_the_same_frames() {
        // testsrc2 changes every frame and PNG encoding is deterministic, so identical bytes
        // mean both strategies picked the same source frame.
        let (_dir, input) = video(6);
        let cancel = CancelFlag::new();
        // 1200 ms is a whole number of 25 fps frames, so both methods target the same frame.
        let spacing = Spacing::Interval { millis: 1200 };
        let single = with_strategy(plan(6.0, spacing, 100, None), Strategy::SinglePass);
        let seek = with_strategy(plan(6.0, spacing, 100, None), Strategy::SeekEach);
        let a = run(&request(
            &input,
            &single,
            6.0,
            ImageFormat::Png,
            None,
            &cancel,
        ));
        let b = run(&request(
            &input,
            &seek,
            6.0,
            ImageFormat::Png,
            None,
            &cancel,
        ));
        assert_eq!(a.frames.len(), 5);
        assert_eq!(b.frames.len(), 5);
        for (x, y) in a.frames.iter().zip(&b.frames) {
            assert!(x.data == y.data, "frame at {} differs", x.timestamp);
        }
    }

    #[test]
    fn png_and_scaling() {
        let (_dir, input) = video(4);
        let cancel = CancelFlag::new();
        for strategy in [Strategy::SinglePass, Strategy::SeekEach] {
            for (format, width, size) in [
                (ImageFormat::Png, None, (320, 240)),
                (ImageFormat::Png, Some(160), (160, 120)),
                (ImageFormat::Jpg, Some(100), (100, 76)),
            ] {
                let p = with_strategy(plan(4.0, Spacing::Count(3), 100, None), strategy);
                let r = run(&request(&input, &p, 4.0, format, width, &cancel));
                assert_frames(&r, &p, format, size);
            }
        }
    }

    #[test]
    fn seek_past_the_end_is_skipped_with_dense_indices() {
        let (_dir, input) = video(3);
        let cancel = CancelFlag::new();
        let p = FramePlan {
            timestamps: vec![0.0, 50.0, 2.0],
            strategy: Strategy::SeekEach,
            spacing: Spacing::Count(3),
        };
        let r = run(&request(&input, &p, 3.0, ImageFormat::Jpg, None, &cancel));
        assert_eq!(r.result.unwrap().frames, 2);
        let got: Vec<(u32, f64)> = r.frames.iter().map(|f| (f.index, f.timestamp)).collect();
        assert_eq!(got, vec![(0, 0.0), (1, 2.0)]);

        let nothing = FramePlan {
            timestamps: vec![50.0],
            ..p
        };
        let r = run(&request(
            &input,
            &nothing,
            3.0,
            ImageFormat::Jpg,
            None,
            &cancel,
        ));
        assert!(
            matches!(r.result, Err(MediaError::NoFrames)),
            "{:?}",
            r.result
        );
    }

    #[test]
    fn corrupt_middle_is_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let input = testutil::make_video(dir.path(), "in.mp4", 10, "320x240");
        testutil::corrupt_middle(&input);
        let cancel = CancelFlag::new();
        for strategy in [Strategy::SinglePass, Strategy::SeekEach] {
            let p = with_strategy(
                plan(10.0, Spacing::Interval { millis: 500 }, 100, None),
                strategy,
            );
            let r = run(&request(&input, &p, 10.0, ImageFormat::Jpg, None, &cancel));
            let err = r.result.unwrap_err();
            assert!(
                matches!(err, MediaError::Corrupt(_)),
                "{strategy:?}: {err:?}"
            );
            assert!(err.is_permanent());
            assert!(!err.reason().contains(dir.path().to_str().unwrap()));
        }
    }

    #[test]
    fn non_video_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let rnd = testutil::random_file(dir.path(), "x.bin", 100_000);
        let audio = testutil::make_audio(dir.path(), "a.m4a");
        let cancel = CancelFlag::new();
        let p = plan(2.0, Spacing::Count(2), 10, None);
        let r = run(&request(&rnd, &p, 2.0, ImageFormat::Jpg, None, &cancel));
        let err = r.result.unwrap_err();
        assert!(
            matches!(err, MediaError::Corrupt(ref m) if m.contains("Invalid data")),
            "{err:?}"
        );
        assert!(!err.reason().contains("x.bin"), "{}", err.reason());
        let r = run(&request(&audio, &p, 2.0, ImageFormat::Jpg, None, &cancel));
        let err = r.result.unwrap_err();
        assert!(matches!(err, MediaError::NotAVideo(_)), "{err:?}");
    }

    #[test]
    fn cancel_is_prompt() {
        let (_dir, input) = video(4);
        let cancel = CancelFlag::new();
        for strategy in [Strategy::SinglePass, Strategy::SeekEach] {
            // A slow decode: lavfi input running in real time would be ideal, but any input
            // works because we cancel from inside the first frame callback.
            let p = with_strategy(
                plan(4.0, Spacing::Interval { millis: 40 }, 1000, None),
                strategy,
            );
            let req = request(&input, &p, 4.0, ImageFormat::Jpg, None, &cancel);
            let flag = cancel.clone();
            let mut seen = 0;
            let start = Instant::now();
            let result = extract_frames(&req, &mut |_| {
                seen += 1;
                flag.cancel();
                Ok(())
            });
            assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
            assert_eq!(seen, 1, "{strategy:?}");
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{:?}",
                start.elapsed()
            );
            cancel.0.store(false, Ordering::SeqCst);
        }
    }

    fn fifo(dir: &Path) -> PathBuf {
        let fifo = dir.join("never.mp4");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        fifo
    }

    #[test]
    fn cancel_from_another_thread_while_ffmpeg_blocks() {
        use std::io::Write;
        // Input from a FIFO that never receives data: ffmpeg blocks reading it and prints
        // nothing, so only the cancel flag can end this run (the stall timeout is long).
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(dir.path());
        let cancel = CancelFlag::new();
        let flag = cancel.clone();
        let fifo2 = fifo.clone();
        let worker = std::thread::spawn(move || {
            let p = plan(4.0, Spacing::Count(4), 10, None);
            let req = request(&fifo2, &p, 4.0, ImageFormat::Jpg, None, &flag);
            let r = run(&req);
            (r.result, Instant::now())
        });
        // Opening for writing blocks until ffmpeg has opened the FIFO for reading.
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let cancelled_at = Instant::now();
        cancel.cancel();
        let (result, finished_at) = worker.join().unwrap();
        assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
        let latency = finished_at - cancelled_at;
        assert!(latency < Duration::from_millis(250), "{latency:?}");
        // ffmpeg is gone, so nobody reads the FIFO any more.
        let err = writer.write_all(&[0]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn stall_is_detected() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(dir.path());
        let cancel = CancelFlag::new();
        let fifo2 = fifo.clone();
        let worker = std::thread::spawn(move || {
            let p = plan(4.0, Spacing::Count(4), 10, None);
            let mut req = request(&fifo2, &p, 4.0, ImageFormat::Jpg, None, &cancel);
            req.stall_timeout = Duration::from_millis(300);
            let start = Instant::now();
            (run(&req).result, start.elapsed())
        });
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let (result, elapsed) = worker.join().unwrap();
        assert!(matches!(result, Err(MediaError::Stalled(_))), "{result:?}");
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        let err = writer.write_all(&[0]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn sink_error_stops_extraction() {
        let (_dir, input) = video(4);
        let cancel = CancelFlag::new();
        for strategy in [Strategy::SinglePass, Strategy::SeekEach] {
            let p = with_strategy(plan(4.0, Spacing::Count(4), 10, None), strategy);
            let req = request(&input, &p, 4.0, ImageFormat::Jpg, None, &cancel);
            let mut calls = 0;
            let result = extract_frames(&req, &mut |_| {
                calls += 1;
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "disk full",
                ))
            });
            match result {
                Err(MediaError::Sink(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
                other => panic!("{other:?}"),
            }
            assert_eq!(calls, 1);
        }
    }

    #[test]
    fn missing_ffmpeg() {
        let cancel = CancelFlag::new();
        let p = plan(4.0, Spacing::Count(4), 10, None);
        let mut req = request(Path::new("x.mp4"), &p, 4.0, ImageFormat::Jpg, None, &cancel);
        req.ffmpeg = Path::new("/nonexistent/ffmpeg");
        let r = run(&req);
        assert!(
            matches!(r.result, Err(MediaError::ToolMissing(_))),
            "{:?}",
            r.result
        );
    }

    #[test]
    fn empty_plan_and_precancelled() {
        let cancel = CancelFlag::new();
        let p = plan(0.0, Spacing::Count(4), 10, None);
        let req = request(Path::new("x.mp4"), &p, 0.0, ImageFormat::Jpg, None, &cancel);
        assert!(matches!(run(&req).result, Err(MediaError::NoFrames)));
        let p = plan(4.0, Spacing::Count(4), 10, None);
        cancel.cancel();
        let req = request(Path::new("x.mp4"), &p, 4.0, ImageFormat::Jpg, None, &cancel);
        assert!(matches!(run(&req).result, Err(MediaError::Cancelled)));
    }

    #[test]
    fn classification_table() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: Vec<(bool, Option<i32>, Vec<String>, &str)> = vec![
            (true, Some(0), s(&[]), "ok"),
            (true, Some(0), s(&["[error] something odd"]), "ok"),
            (
                false,
                Some(1),
                s(&["[error] file:/up/in.mp4: Invalid data found when processing input"]),
                "corrupt",
            ),
            (
                false,
                Some(1),
                s(&["[h264 @ 0x1] [error] Invalid NAL unit size (5 > 3)."]),
                "corrupt",
            ),
            (
                true,
                Some(0),
                s(&["[h264 @ 0x1] [error] error while decoding MB 14 9"]),
                "corrupt",
            ),
            (
                false,
                Some(1),
                s(&["[fatal] Stream map '0:v:0' matches no streams."]),
                "novideo",
            ),
            (
                false,
                Some(1),
                s(&["[error] Output file #0 does not contain any stream"]),
                "novideo",
            ),
            (
                false,
                Some(1),
                s(&["[error] Cannot allocate memory"]),
                "exited",
            ),
            (false, None, s(&[]), "exited"),
        ];
        for (success, code, errors, expected) in cases {
            let got = classify(success, code, &errors, "/up/in.mp4");
            let kind = match &got {
                None => "ok",
                Some(MediaError::Corrupt(r)) => {
                    assert!(!r.contains("/up/") && !r.contains('['), "{r}");
                    "corrupt"
                }
                Some(MediaError::NotAVideo(_)) => "novideo",
                Some(MediaError::Exited { code: c, .. }) => {
                    assert_eq!(*c, code);
                    "exited"
                }
                Some(other) => panic!("{other:?}"),
            };
            assert_eq!(kind, expected, "{errors:?}");
        }
    }
}
