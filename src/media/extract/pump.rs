//! One ffmpeg run, pumped: started through [`crate::media::process`], its
//! frames (stdout), thumbnails (the second output) and log (stderr) each
//! read by a thread, all into one bounded channel that the calling thread
//! polls. So the caller splits both outputs into images as they come and
//! pairs them ([`super::pair`]), enforces the stall watchdog, reacts to
//! cancellation while ffmpeg runs, and classifies the run's end; the child
//! is killed (if it still runs) and reaped before [`run`] returns, however
//! it returns.

use std::io::{BufReader, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::log::{ErrorLines, Lines};
use super::pair::{Image, Pairs};
use super::{ExtractRequest, POLL};
use crate::media::MediaError;
use crate::media::failure;
use crate::media::plan::ImageFormat;
use crate::media::process::{Process, Running, Tool};
use crate::media::split::ImageSplitter;

/// How long to wait for the reader threads after ffmpeg was killed or has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Bytes read from stdout at a time.
const CHUNK: usize = 64 * 1024;

/// ffmpeg's two outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Frames,
    Thumbnails,
}

enum Msg {
    Chunk(Output, Vec<u8>),
    End(Output),
    ReadError(Output, std::io::Error),
    Line(String),
    LogEnd,
}

/// Both outputs, split into images and paired.
struct Images {
    frames: ImageSplitter,
    thumbnails: ImageSplitter,
    pairs: Pairs,
}

impl Images {
    fn new(req: &ExtractRequest) -> Self {
        Self {
            frames: ImageSplitter::new(req.format),
            thumbnails: ImageSplitter::new(ImageFormat::Jpg),
            pairs: Pairs::default(),
        }
    }

    fn push(&mut self, output: Output, chunk: &[u8]) -> Result<(), MediaError> {
        match output {
            Output::Frames => {
                for frame in self.frames.push(chunk)? {
                    self.pairs.frame(frame);
                }
            }
            Output::Thumbnails => match self.thumbnails.push(chunk) {
                Ok(thumbnails) => thumbnails.into_iter().for_each(|t| self.pairs.thumbnail(t)),
                Err(e) => self.thumbnails_broke(&e),
            },
        }
        Ok(())
    }

    /// The thumbnails are not worth failing a job over: the frames go on without.
    fn thumbnails_broke(&mut self, error: &dyn std::fmt::Display) {
        broken(error);
        self.pairs.thumbnails_ended();
    }

    /// At the run's end: the frames still waiting for a thumbnail.
    fn finish(self) -> Result<impl Iterator<Item = Image>, MediaError> {
        let Images {
            frames,
            thumbnails,
            mut pairs,
        } = self;
        frames.finish()?;
        if let Err(e) = thumbnails.finish() {
            broken(&e);
        }
        pairs.thumbnails_ended();
        Ok(pairs.rest())
    }
}

fn broken(error: &dyn std::fmt::Display) {
    tracing::warn!(%error, "ffmpeg's thumbnails are unreadable; frames go on without them");
}

/// Runs one ffmpeg command, feeding every complete image to `on_image`.
pub(super) fn run(
    req: &ExtractRequest,
    args: &[String],
    on_image: &mut dyn FnMut(Image) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    tracing::debug!(?args, "spawning ffmpeg");
    let mut ffmpeg = Process::new(Tool::Ffmpeg, req.ffmpeg)
        .args(args)
        .cpu_limit(req.cpu_limit)
        .second_output()?
        .spawn()?;
    let (tx, rx) = sync_channel::<Msg>(16);
    // on failure `ffmpeg` is dropped, which kills and reaps it
    let readers = start_readers(&mut ffmpeg, tx)?;

    let mut images = Images::new(req);
    let mut errors = ErrorLines::default();
    let outcome = pump(req, &mut ffmpeg, &rx, &mut images, &mut errors, on_image);

    if outcome.is_err() {
        // Stop ffmpeg now; it may already be gone, which is fine.
        ffmpeg.kill();
    }
    // Let the reader threads run to completion so they release the pipes.
    drain(&rx, &mut errors);
    let exit = ffmpeg.wait();
    for t in readers {
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("ffmpeg reader thread did not finish; detaching it");
        }
    }
    outcome?;
    let exit = exit?;
    if let Some(err) = failure::of_ffmpeg(exit, errors.lines(), req.input) {
        tracing::info!(code = ?exit.code, errors = ?errors.lines(), "ffmpeg failed");
        return Err(err);
    }
    if !errors.lines().is_empty() {
        tracing::warn!(errors = ?errors.lines(), "ffmpeg succeeded but logged errors");
    }
    for image in images.finish()? {
        on_image(image)?;
    }
    Ok(())
}

/// Reads `from` in chunks into `tx` as `output`, until its end.
fn read_output(output: Output, mut from: impl Read, tx: &SyncSender<Msg>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let msg = match from.read(&mut buf) {
            Ok(0) => Msg::End(output),
            Ok(n) => Msg::Chunk(output, buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Msg::ReadError(output, e),
        };
        let last = !matches!(msg, Msg::Chunk(..));
        if tx.send(msg).is_err() || last {
            break;
        }
    }
}

fn start_readers(
    ffmpeg: &mut Running,
    tx: SyncSender<Msg>,
) -> Result<Vec<JoinHandle<()>>, MediaError> {
    let stdout = ffmpeg.take_stdout()?;
    let thumbnails = ffmpeg.take_second_output()?;
    let stderr = ffmpeg.take_stderr()?;
    let out_tx = tx.clone();
    let out = std::thread::Builder::new()
        .name("ffmpeg-stdout".into())
        .spawn(move || read_output(Output::Frames, stdout, &out_tx))?;
    let thumbs_tx = tx.clone();
    let thumbs = std::thread::Builder::new()
        .name("ffmpeg-thumbs".into())
        .spawn(move || read_output(Output::Thumbnails, thumbnails, &thumbs_tx))?;
    let log = std::thread::Builder::new()
        .name("ffmpeg-log".into())
        .spawn(move || {
            let mut lines = Lines::new(BufReader::new(stderr));
            loop {
                let msg = match lines.next_line() {
                    Ok(Some(line)) => Msg::Line(line),
                    Ok(None) => Msg::LogEnd,
                    Err(e) => {
                        tracing::debug!(error = %e, "reading ffmpeg's log failed");
                        Msg::LogEnd
                    }
                };
                let last = matches!(msg, Msg::LogEnd);
                if tx.send(msg).is_err() || last {
                    break;
                }
            }
        })?;
    Ok(vec![out, thumbs, log])
}

/// Receives messages until both readers are done or something forces an early stop.
fn pump(
    req: &ExtractRequest,
    ffmpeg: &mut Running,
    rx: &Receiver<Msg>,
    images: &mut Images,
    errors: &mut ErrorLines,
    on_image: &mut dyn FnMut(Image) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let mut last_activity = Instant::now();
    let (mut stdout_done, mut thumbs_done, mut log_done) = (false, false, false);
    let mut exited_at: Option<Instant> = None;
    while !(stdout_done && thumbs_done && log_done) {
        if req.cancel.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        match rx.recv_timeout(POLL) {
            Ok(msg) => {
                match msg {
                    Msg::Chunk(output, chunk) => images.push(output, &chunk)?,
                    Msg::End(Output::Frames) => stdout_done = true,
                    Msg::End(Output::Thumbnails) => {
                        thumbs_done = true;
                        images.pairs.thumbnails_ended();
                    }
                    Msg::ReadError(Output::Frames, e) => return Err(MediaError::Io(e)),
                    Msg::ReadError(Output::Thumbnails, e) => {
                        thumbs_done = true;
                        images.thumbnails_broke(&e);
                    }
                    Msg::Line(line) => errors.record(line),
                    Msg::LogEnd => log_done = true,
                }
                while let Some(image) = images.pairs.next_ready() {
                    on_image(image)?;
                    if req.cancel.is_cancelled() {
                        return Err(MediaError::Cancelled);
                    }
                }
                last_activity = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if last_activity.elapsed() >= req.stall_timeout {
                    tracing::warn!(timeout = ?req.stall_timeout, "ffmpeg stalled; killing it");
                    return Err(MediaError::Stalled(req.stall_timeout));
                }
                // If ffmpeg has exited and its output is consumed but its log
                // never ends (a child of a wrapper script holding the pipe), stop waiting.
                if stdout_done && ffmpeg.has_exited() {
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

/// Waits (bounded) until the reader threads hang up, keeping any late error lines.
fn drain(rx: &Receiver<Msg>, errors: &mut ErrorLines) {
    let deadline = Instant::now() + DRAIN_GRACE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Msg::Line(line)) => errors.record(line),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
