//! ffmpeg's log on stderr, as `-loglevel level+info` writes it: each line
//! tagged with its level in brackets, after any `[context @ 0x…]`; progress
//! lines end in `\r`, the others in `\n`. Every line is a sign of life for
//! the stall watchdog; the error lines of a run are kept, a few, for
//! [`crate::media::failure`].

use std::io::{self, BufRead};

/// The options that make ffmpeg tag its lines with their level.
pub(super) const LEVEL_ARGS: [&str; 2] = ["-loglevel", "level+info"];
/// At most this many error lines are kept per ffmpeg run.
const MAX_ERROR_LINES: usize = 32;
/// A line is cut after this many bytes; ffmpeg's own are far shorter.
const MAX_LINE_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warning,
    Error,
    Fatal,
    Other,
}

fn level(line: &str) -> Level {
    // the tag follows the context, if any: `[h264 @ 0x…] [error] …`
    [
        ("[info]", Level::Info),
        ("[warning]", Level::Warning),
        ("[error]", Level::Error),
        ("[fatal]", Level::Fatal),
    ]
    .into_iter()
    .find_map(|(tag, level)| line.contains(tag).then_some(level))
    .unwrap_or(Level::Other)
}

/// The lines of a log, split at `\r` or `\n`, trimmed, blank ones skipped,
/// each cut at [`MAX_LINE_BYTES`].
pub(super) struct Lines<R> {
    reader: R,
    line: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::new(),
        }
    }

    /// The next line with something on it; `None` at the end.
    pub(super) fn next_line(&mut self) -> io::Result<Option<String>> {
        self.line.clear();
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let end = available.iter().position(|b| matches!(b, b'\r' | b'\n'));
            let part = &available[..end.unwrap_or(available.len())];
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            let at_eof = available.is_empty();
            let used = end.map_or(available.len(), |i| i + 1);
            self.reader.consume(used);
            if end.is_some() || at_eof {
                let text = String::from_utf8_lossy(&self.line).trim().to_owned();
                if !text.is_empty() {
                    return Ok(Some(text));
                }
                if at_eof {
                    return Ok(None);
                }
                self.line.clear();
            }
        }
    }
}

/// The error (and fatal) lines of one run, the first [`MAX_ERROR_LINES`].
#[derive(Debug, Default)]
pub(super) struct ErrorLines(Vec<String>);

impl ErrorLines {
    pub(super) fn record(&mut self, line: String) {
        match level(&line) {
            Level::Error | Level::Fatal => {
                tracing::debug!(line = %line, "ffmpeg error");
                if self.0.len() < MAX_ERROR_LINES {
                    self.0.push(line);
                }
            }
            Level::Info | Level::Warning | Level::Other => {
                tracing::trace!(line = %line, "ffmpeg")
            }
        }
    }

    pub(super) fn lines(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(log: &[u8]) -> Vec<String> {
        // a tiny buffer: lines straddle refills
        let mut lines = Lines::new(io::BufReader::with_capacity(4, log));
        std::iter::from_fn(|| lines.next_line().unwrap()).collect()
    }

    #[test]
    fn lines_end_at_either_break_and_blank_ones_are_skipped() {
        let log = b"[info] Input #0, mov\n  [info]   Duration: 00:00:10.00\r\n\
            [info] frame=    5 fps=0.0\r[info] frame=   10 fps=9.1\r\n\n\r\
            [h264 @ 0x55] [error] Invalid NAL unit size (5 > 3).\n[fatal] no newline";
        assert_eq!(
            lines(log),
            [
                "[info] Input #0, mov",
                "[info]   Duration: 00:00:10.00",
                "[info] frame=    5 fps=0.0",
                "[info] frame=   10 fps=9.1",
                "[h264 @ 0x55] [error] Invalid NAL unit size (5 > 3).",
                "[fatal] no newline",
            ]
        );
        assert!(lines(b"").is_empty());
        assert!(lines(b"\r\n \n").is_empty());
    }

    #[test]
    fn a_long_line_is_cut_and_the_next_one_kept() {
        let mut log = vec![b'x'; 3 * MAX_LINE_BYTES];
        log.extend_from_slice(b"\nnext\n");
        let got = lines(&log);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE_BYTES);
        assert_eq!(got[1], "next");
    }

    #[test]
    fn levels() {
        let cases = [
            ("[info] frame=1", Level::Info),
            ("[warning] deprecated pixel format", Level::Warning),
            ("[mov @ 0x1] [error] moov atom not found", Level::Error),
            (
                "[fatal] Stream map '0:v:0' matches no streams.",
                Level::Fatal,
            ),
            ("no tag at all", Level::Other),
        ];
        for (line, expected) in cases {
            assert_eq!(level(line), expected, "{line}");
        }
    }

    #[test]
    fn only_the_first_error_lines_are_kept() {
        let mut errors = ErrorLines::default();
        errors.record("[info] frame=1".into());
        errors.record("[warning] odd".into());
        for k in 0..2 * MAX_ERROR_LINES {
            errors.record(format!("[error] line {k}"));
        }
        errors.record("[fatal] last".into());
        assert_eq!(errors.lines().len(), MAX_ERROR_LINES);
        assert_eq!(errors.lines()[0], "[error] line 0");
    }
}
