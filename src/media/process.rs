//! The one async subprocess wrapper: spawn with `kill_on_drop`, enforce a timeout, capture
//! bounded stdout/stderr. Non-zero exits are returned as output for the caller to classify.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::MediaError;

/// At most this much stderr is kept (the rest is read and discarded).
pub const MAX_STDERR_BYTES: usize = 64 * 1024;
/// At most this much stdout is kept (the rest is read and discarded).
pub const MAX_STDOUT_BYTES: usize = 16 * 1024 * 1024;

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

/// Runs `program args…` with stdin closed. Errors: [`MediaError::ToolMissing`] when the binary
/// cannot be started, [`MediaError::TimedOut`] (the child is killed and reaped),
/// [`MediaError::Io`] for pipe failures. A non-zero exit is `Ok` with `success == false`.
pub async fn run<I, S>(
    program: &Path,
    args: I,
    timeout: Duration,
) -> Result<CommandOutput, MediaError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_limited(program, args, timeout, super::limits::cpu_budget(timeout)).await
}

/// [`run`] with a CPU-time budget of its own (see [`super::limits`]).
pub async fn run_limited<I, S>(
    program: &Path,
    args: I,
    timeout: Duration,
    cpu: Duration,
) -> Result<CommandOutput, MediaError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let tool = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.display().to_string());
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(super::limits::tool_environment())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                MediaError::ToolMissing(format!("{tool}: {e}"))
            }
            _ => MediaError::Io(e),
        })?;
    super::limits::limit_tool(child.id(), cpu);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;

    let work = async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, MAX_STDOUT_BYTES),
            read_bounded(stderr, MAX_STDERR_BYTES),
            child.wait()
        );
        let (stdout, out_cut) = out?;
        let (stderr, err_cut) = err?;
        let status = status?;
        Ok::<_, io::Error>(CommandOutput {
            code: status.code(),
            success: status.success(),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            truncated: out_cut || err_cut,
        })
    };
    let result = tokio::time::timeout(timeout, work).await;
    match result {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => {
            let _ = child.kill().await;
            Err(MediaError::Io(e))
        }
        Err(_) => {
            tracing::warn!(tool = %tool, ?timeout, "command timed out; killing it");
            // kill() also reaps the child.
            if let Err(e) = child.kill().await {
                tracing::warn!(tool = %tool, error = %e, "failed to kill timed-out command");
            }
            Err(MediaError::TimedOut(timeout))
        }
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

/// The first meaningful line of a tool's stderr, sanitized for users: `[ctx @ 0x…]` / `[level]`
/// prefixes and a leading `INPUT:` are dropped, control characters removed, length capped.
pub fn first_error_line(stderr: &str, input: Option<&str>) -> Option<String> {
    stderr
        .split(['\n', '\r'])
        .map(|l| super::sanitize_line(l, input))
        .find(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_line_picks_meaningful_line() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("", None, None),
            ("\n\r\n  \n", None, None),
            (
                "/up/x.bin: Invalid data found when processing input\n",
                Some("/up/x.bin"),
                Some("Invalid data found when processing input"),
            ),
            (
                "\n[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c] moov atom not found\nx.mp4: Invalid data\n",
                Some("x.mp4"),
                Some("moov atom not found"),
            ),
            (
                "[fatal] Stream map '0:v:0' matches no streams.\nTo ignore this, add a trailing '?' to the map.\n",
                None,
                Some("Stream map '0:v:0' matches no streams"),
            ),
        ];
        for (stderr, input, expected) in cases {
            assert_eq!(
                first_error_line(stderr, *input).as_deref(),
                *expected,
                "{stderr:?}"
            );
        }
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let out = run(
            Path::new("sh"),
            ["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        )
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
        let out = run(
            Path::new("sh"),
            ["-c", "head -c 200000 /dev/zero | tr '\\0' x >&2; echo done"],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(out.success);
        assert_eq!(out.stderr.len(), MAX_STDERR_BYTES);
        assert!(out.truncated);
        assert_eq!(out.stdout, b"done\n");
    }

    #[tokio::test]
    async fn missing_binary() {
        let err = run(
            Path::new("/nonexistent/ffprobe"),
            ["-version"],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MediaError::ToolMissing(_)), "{err:?}");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let start = std::time::Instant::now();
        let err = run(Path::new("sleep"), ["30"], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::TimedOut(_)), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
