//! One ffmpeg run, pumped: started through [`crate::media::process`], its
//! stdout read by one thread and its log by another, both into one bounded
//! channel that the calling thread polls. So the caller splits the output
//! into images as they come, enforces the stall watchdog, reacts to
//! cancellation while ffmpeg runs, and classifies the run's end; the child
//! is killed (if it still runs) and reaped before [`run`] returns, however
//! it returns.

use std::io::{BufReader, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::log::{ErrorLines, Lines};
use super::{ExtractRequest, POLL};
use crate::media::MediaError;
use crate::media::failure;
use crate::media::process::{Process, Running, Tool};
use crate::media::split::ImageSplitter;

/// How long to wait for the reader threads after ffmpeg was killed or has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Bytes read from stdout at a time.
const CHUNK: usize = 64 * 1024;

enum Msg {
    Chunk(Vec<u8>),
    StdoutEnd,
    StdoutError(std::io::Error),
    Line(String),
    LogEnd,
}

/// Runs one ffmpeg command, feeding every complete image to `on_image`.
pub(super) fn run(
    req: &ExtractRequest,
    args: &[String],
    on_image: &mut dyn FnMut(Vec<u8>) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    tracing::debug!(?args, "spawning ffmpeg");
    let mut ffmpeg = Process::new(Tool::Ffmpeg, req.ffmpeg)
        .args(args)
        .cpu_limit(req.cpu_limit)
        .spawn()?;
    let (tx, rx) = sync_channel::<Msg>(16);
    // on failure `ffmpeg` is dropped, which kills and reaps it
    let readers = start_readers(&mut ffmpeg, tx)?;

    let mut splitter = ImageSplitter::new(req.format);
    let mut errors = ErrorLines::default();
    let outcome = pump(req, &mut ffmpeg, &rx, &mut splitter, &mut errors, on_image);

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
    splitter.finish()?;
    Ok(())
}

fn start_readers(
    ffmpeg: &mut Running,
    tx: SyncSender<Msg>,
) -> Result<Vec<JoinHandle<()>>, MediaError> {
    let mut stdout = ffmpeg.take_stdout()?;
    let stderr = ffmpeg.take_stderr()?;
    let out_tx = tx.clone();
    let out = std::thread::Builder::new()
        .name("ffmpeg-stdout".into())
        .spawn(move || {
            let mut buf = vec![0u8; CHUNK];
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
    Ok(vec![out, log])
}

/// Receives messages until both readers are done or something forces an early stop.
fn pump(
    req: &ExtractRequest,
    ffmpeg: &mut Running,
    rx: &Receiver<Msg>,
    splitter: &mut ImageSplitter,
    errors: &mut ErrorLines,
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
                    Msg::Line(line) => errors.record(line),
                    Msg::LogEnd => log_done = true,
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
