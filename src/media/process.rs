//! The one way media starts an external tool. Every run of ffmpeg or ffprobe
//! goes through [`Process`] and gets the same treatment:
//!
//! * a cleared environment: the search path and a fixed locale, nothing of
//!   the node's (database URL, keys, cloud credentials) reaches a program
//!   that parses untrusted files;
//! * stdin closed, stdout and stderr piped, and on request a second output
//!   pipe as fd 3 ([`Process::second_output`]);
//! * the kernel's CPU-time and memory limits ([`super::limits`]);
//! * kill on drop: a cancelled or failed job never leaves a child running;
//! * a metrics guard: `vp_media_tool_runs_total{tool,outcome}` and
//!   `vp_media_tool_seconds{tool}`;
//! * one mapping of start-up and pipe failures to [`ProcessError`].
//!
//! Two ways to run: [`Process::output`] (async, to the end within a timeout,
//! output captured and bounded: ffprobe) and [`Process::spawn`] (blocking,
//! the caller streams stdout and stderr: ffmpeg). What a tool's failure
//! *means* is [`super::failure`]'s.

use std::ffi::OsStr;
use std::io::{self, PipeReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::limits;

/// At most this much stderr is kept (the rest is read and discarded).
pub const MAX_STDERR_BYTES: usize = 64 * 1024;
/// At most this much stdout is kept (the rest is read and discarded).
pub const MAX_STDOUT_BYTES: usize = 16 * 1024 * 1024;
/// The descriptor of [`Process::second_output`] in the tool (`pipe:3` to ffmpeg).
pub const SECOND_OUTPUT_FD: i32 = 3;

/// What a run is for: names it in logs, errors and metric labels. The
/// program itself is configurable (and a wrapper script in some tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Ffmpeg,
    Ffprobe,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ffmpeg => "ffmpeg",
            Tool::Ffprobe => "ffprobe",
        }
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tool that could not be run to its end. How it ended, when it did, is
/// an [`Exit`] for the caller to classify.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program is missing or not executable.
    #[error("{tool} ({program}) could not be started: {source}")]
    Missing {
        tool: Tool,
        program: PathBuf,
        source: io::Error,
    },
    /// It did not finish within its time limit and was killed.
    #[error("{tool} timed out after {after:?}")]
    TimedOut { tool: Tool, after: Duration },
    /// Starting it (other than [`ProcessError::Missing`]), its pipes or
    /// waiting for it failed.
    #[error("{tool}: {source}")]
    Io { tool: Tool, source: io::Error },
}

/// How a tool ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub success: bool,
    /// `None` when ended by a signal.
    pub code: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        Self {
            success: status.success(),
            code: status.code(),
        }
    }
}

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub success: bool,
    pub stdout: Vec<u8>,
    /// Lossy UTF-8, at most [`MAX_STDERR_BYTES`].
    pub stderr: String,
    /// True when stdout or stderr exceeded its limit and was cut.
    pub truncated: bool,
}

impl CommandOutput {
    pub fn exit(&self) -> Exit {
        Exit {
            success: self.success,
            code: self.code,
        }
    }
}

/// One run of a tool, being prepared.
#[derive(Debug)]
pub struct Process {
    tool: Tool,
    program: PathBuf,
    command: std::process::Command,
    cpu: Option<Duration>,
    second: Option<PipeReader>,
}

impl Process {
    pub fn new(tool: Tool, program: &Path) -> Self {
        let mut command = std::process::Command::new(program);
        command
            .env_clear()
            .envs(environment())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self {
            tool,
            program: program.to_owned(),
            command,
            cpu: None,
            second: None,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// CPU time the tool may use before the kernel ends it. Without it, a
    /// run with a timeout gets [`limits::cpu_budget`] of its timeout, one
    /// without gets none.
    pub fn cpu_limit(mut self, cpu: Duration) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// A second output pipe, [`SECOND_OUTPUT_FD`] in the tool, for
    /// [`Running::take_second_output`]. Only the tool holds its writing end
    /// (the node's copy is closed once it started, and no other child
    /// inherits it), so the reader sees the end when the tool exits.
    pub fn second_output(mut self) -> Result<Self, ProcessError> {
        let io = |source| ProcessError::Io {
            tool: self.tool,
            source,
        };
        let (reader, writer) = io::pipe().map_err(io)?;
        self.command
            .fd_mappings(vec![FdMapping {
                parent_fd: writer.into(),
                child_fd: SECOND_OUTPUT_FD,
            }])
            .map_err(|e| io(io::Error::other(e)))?;
        self.second = Some(reader);
        Ok(self)
    }

    /// Runs it to its end within `timeout`, capturing stdout and stderr
    /// (bounded). A non-zero exit is `Ok`, for the caller to classify; on
    /// timeout the child is killed and reaped. If this future is dropped,
    /// the child is killed.
    pub async fn output(self, timeout: Duration) -> Result<CommandOutput, ProcessError> {
        let tool = self.tool;
        let io = |source| ProcessError::Io { tool, source };
        let cpu = self.cpu.unwrap_or_else(|| limits::cpu_budget(timeout));
        let mut command = tokio::process::Command::from(self.command);
        command.kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| not_started(tool, &self.program, e))?;
        let mut guard = RunGuard::started(tool, child.id(), Some(cpu));
        let stdout = child.stdout.take().ok_or_else(|| io(no_pipe()))?;
        let stderr = child.stderr.take().ok_or_else(|| io(no_pipe()))?;

        let work = async {
            let (out, err, status) = tokio::join!(
                read_bounded(stdout, MAX_STDOUT_BYTES),
                read_bounded(stderr, MAX_STDERR_BYTES),
                child.wait()
            );
            let (stdout, out_cut) = out?;
            let (stderr, err_cut) = err?;
            Ok::<_, io::Error>((status?, stdout, stderr, out_cut || err_cut))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok((status, stdout, stderr, truncated))) => {
                guard.exited(status);
                Ok(CommandOutput {
                    code: status.code(),
                    success: status.success(),
                    stdout,
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                    truncated,
                })
            }
            Ok(Err(e)) => {
                let _ = child.kill().await;
                Err(io(e))
            }
            Err(_) => {
                tracing::warn!(%tool, ?timeout, "command timed out; killing it");
                // kill() also reaps the child.
                if let Err(e) = child.kill().await {
                    tracing::warn!(%tool, error = %e, "failed to kill timed-out command");
                }
                Err(ProcessError::TimedOut {
                    tool,
                    after: timeout,
                })
            }
        }
    }

    /// Starts it for the caller to stream its stdout and stderr. The
    /// returned [`Running`] kills and reaps the child when dropped.
    pub fn spawn(self) -> Result<Running, ProcessError> {
        let Process {
            tool,
            program,
            mut command,
            cpu,
            second,
        } = self;
        let child = command
            .spawn()
            .map_err(|e| not_started(tool, &program, e))?;
        // closes the node's copy of the second output's writing end
        drop(command);
        let guard = RunGuard::started(tool, Some(child.id()), cpu);
        Ok(Running {
            child,
            guard,
            second,
        })
    }
}

/// Why `program` did not start: missing (or not executable), or else.
fn not_started(tool: Tool, program: &Path, e: io::Error) -> ProcessError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ProcessError::Missing {
            tool,
            program: program.to_owned(),
            source: e,
        },
        _ => ProcessError::Io { tool, source: e },
    }
}

/// The whole environment a tool starts with: the search path (wrapper
/// scripts find the real tool through it) and a fixed locale.
fn environment() -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env = vec![("LC_ALL", "C".into())];
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH", path));
    }
    env
}

fn no_pipe() -> io::Error {
    io::Error::other("pipe not set up")
}

/// A started tool whose output the caller reads (blocking). Dropped before
/// [`Running::wait`] returned, it kills the child and reaps it.
#[derive(Debug)]
pub struct Running {
    child: std::process::Child,
    guard: RunGuard,
    second: Option<PipeReader>,
}

impl Running {
    pub fn take_stdout(&mut self) -> io::Result<ChildStdout> {
        self.child.stdout.take().ok_or_else(no_pipe)
    }

    pub fn take_stderr(&mut self) -> io::Result<ChildStderr> {
        self.child.stderr.take().ok_or_else(no_pipe)
    }

    /// The reading end of [`Process::second_output`].
    pub fn take_second_output(&mut self) -> io::Result<PipeReader> {
        self.second.take().ok_or_else(no_pipe)
    }

    /// Ends the child now; harmless when it has ended already.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.guard.killed = true;
            let _ = self.child.kill();
        }
    }

    /// Whether the child has ended (it is reaped then).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the child's end and reaps it.
    pub fn wait(&mut self) -> Result<Exit, ProcessError> {
        let status = self.child.wait().map_err(|source| ProcessError::Io {
            tool: self.guard.tool,
            source,
        })?;
        self.guard.exited(status);
        Ok(status.into())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.guard.outcome.is_none() {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// How a run ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    /// Exited with a non-zero status.
    Failure,
    /// Ended by a signal it was not sent by us (the kernel's CPU limit).
    Signal,
    /// Killed by us: timed out, stalled, cancelled, dropped.
    Killed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Signal => "signal",
            Outcome::Killed => "killed",
        }
    }
}

/// Applies the limits to a started child and counts its run, with its
/// wall time, when dropped. A run that was never seen to exit counts as
/// killed: its owner gave it up.
#[derive(Debug)]
struct RunGuard {
    tool: Tool,
    started: Instant,
    killed: bool,
    outcome: Option<Outcome>,
}

impl RunGuard {
    fn started(tool: Tool, pid: Option<u32>, cpu: Option<Duration>) -> Self {
        limits::limit_tool(pid, cpu);
        Self {
            tool,
            started: Instant::now(),
            killed: false,
            outcome: None,
        }
    }

    fn exited(&mut self, status: ExitStatus) {
        self.outcome = Some(match (self.killed, status.success(), status.code()) {
            (true, _, _) => Outcome::Killed,
            (false, true, _) => Outcome::Success,
            (false, false, Some(_)) => Outcome::Failure,
            (false, false, None) => Outcome::Signal,
        });
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let tool = self.tool.name();
        let outcome = self.outcome.unwrap_or(Outcome::Killed).label();
        metrics::counter!("vp_media_tool_runs_total", "tool" => tool, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("vp_media_tool_seconds", "tool" => tool)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Reads `r` to EOF, keeping at most `max` bytes. Returns the bytes and whether any were dropped.
async fn read_bounded<R: AsyncRead + Unpin>(mut r: R, max: usize) -> io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, cut));
        }
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        cut |= n > room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Process {
        Process::new(Tool::Ffprobe, Path::new("sh")).args(["-c", script])
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let out = sh("echo out; echo err >&2; exit 3")
            .output(Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert!(!out.success);
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn stderr_is_bounded() {
        let out = sh("head -c 200000 /dev/zero | tr '\\0' x >&2; echo done")
            .output(Duration::from_secs(10))
            .await
            .unwrap();
        assert!(out.success);
        assert_eq!(out.stderr.len(), MAX_STDERR_BYTES);
        assert!(out.truncated);
        assert_eq!(out.stdout, b"done\n");
    }

    /// How running `program args…` to its end fails.
    async fn failure(program: &str, args: &[&str], timeout: Duration) -> ProcessError {
        Process::new(Tool::Ffprobe, Path::new(program))
            .args(args)
            .output(timeout)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn missing_binary() {
        let err = failure(
            "/nonexistent/ffprobe",
            &["-version"],
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(err, ProcessError::Missing { .. }), "{err:?}");
        let err = Process::new(Tool::Ffmpeg, Path::new("/nonexistent/ffmpeg"))
            .spawn()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Missing { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let start = std::time::Instant::now();
        let err = failure("sleep", &["30"], Duration::from_millis(200)).await;
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_environment_is_cleared() {
        // the test process has HOME, CARGO_* and more; the tool sees none of it
        let out = sh("env").output(Duration::from_secs(10)).await.unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort_unstable();
        // sh adds PWD (and some shells SHLVL and `_`) of its own
        names.retain(|n| !["PWD", "SHLVL", "_"].contains(n));
        assert_eq!(names, ["LC_ALL", "PATH"], "{env}");
    }

    #[test]
    fn a_dropped_run_leaves_no_child() {
        let mut running = sh("echo started; exec sleep 30").spawn().unwrap();
        let mut stdout = running.take_stdout().unwrap();
        let pid = running.child.id();
        // once it has written, it runs
        let mut first = [0u8; 8];
        io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(running);
        // reaped: the pid names no process (nor a zombie) any more
        let proc = PathBuf::from(format!("/proc/{pid}"));
        assert!(!proc.exists(), "{pid} still there");
    }

    #[test]
    fn a_second_output_reaches_the_tool_as_fd_3_and_ends_with_it() {
        let mut running = sh("echo one; echo two >&3; exec 3>&-; echo three")
            .second_output()
            .unwrap()
            .spawn()
            .unwrap();
        let mut second = running.take_second_output().unwrap();
        let mut stdout = running.take_stdout().unwrap();
        // read to its end: no copy of the writer stays open in the node
        let mut got = String::new();
        io::Read::read_to_string(&mut second, &mut got).unwrap();
        assert_eq!(got, "two\n");
        let mut out = String::new();
        io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        assert_eq!(out, "one\nthree\n");
        assert!(running.wait().unwrap().success);
        assert!(running.take_second_output().is_err(), "taken once");
    }

    #[test]
    fn a_run_ends_with_its_exit() {
        let mut running = sh("exit 4").spawn().unwrap();
        assert_eq!(
            running.wait().unwrap(),
            Exit {
                success: false,
                code: Some(4)
            }
        );
        // already reaped: dropping kills nothing
        drop(running);
    }
}
