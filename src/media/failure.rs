//! What a failed ffmpeg or ffprobe run means, decided in one place: from
//! its exit and its error lines to a [`MediaError`] — the input is not a
//! video, it is damaged, or the tool failed for a reason of its own. The
//! reasons kept are sanitized for the video's owner (no paths, no
//! addresses, short).

use super::MediaError;
use super::input::input_arg;
use super::process::Exit;

/// ffmpeg's words when an input's demuxer is not on the allow-list.
const NOT_ON_WHITELIST: &str = "not on whitelist";

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

/// Stderr fragments meaning ffprobe failed for a local reason, not because of the file's content.
const ENVIRONMENT_ERRORS: &[&str] = &[
    "no such file or directory",
    "permission denied",
    "cannot allocate memory",
    "too many open files",
    "resource temporarily unavailable",
];

/// The refusal of an input whose demuxer is not on the allow-list.
fn unsupported_container() -> MediaError {
    MediaError::NotAVideo(
        "the file is not a video in a container we accept (playlists, concat scripts \
         and files that refer to other files are refused)"
            .into(),
    )
}

/// Maps the end of an ffmpeg run to an error, or `None` when it succeeded.
///
/// A line matching [`NO_VIDEO_PATTERNS`] gives `NotAVideo`, one matching [`CORRUPT_PATTERNS`]
/// gives `Corrupt` (both even with exit status 0, e.g. errors ffmpeg concealed); otherwise a
/// failed exit gives `Exited` and a successful one `None`.
pub fn of_ffmpeg(exit: Exit, errors: &[String], input: &str) -> Option<MediaError> {
    let arg = input_arg(input);
    let find = |patterns: &[&str]| {
        errors.iter().find(|line| {
            let lower = line.to_ascii_lowercase();
            patterns.iter().any(|p| lower.contains(p))
        })
    };
    if find(NO_VIDEO_PATTERNS).is_some() {
        return Some(MediaError::NotAVideo("the file has no video stream".into()));
    }
    if find(&[NOT_ON_WHITELIST]).is_some() {
        return Some(unsupported_container());
    }
    if let Some(line) = find(CORRUPT_PATTERNS) {
        return Some(MediaError::Corrupt(sanitize_line(line, Some(&arg))));
    }
    if exit.success {
        return None;
    }
    let reason = errors
        .iter()
        .map(|l| sanitize_line(l, Some(&arg)))
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| match exit.code {
            Some(c) => format!("ffmpeg exited with status {c}"),
            None => "ffmpeg was killed by a signal".into(),
        });
    Some(MediaError::Exited {
        code: exit.code,
        reason,
    })
}

/// Maps the end of an ffprobe run to an error, or `None` when it succeeded.
///
/// ffprobe refuses what it cannot read as a video (`NotAVideo`), unless its
/// first error line names a local reason ([`ENVIRONMENT_ERRORS`]) or a signal
/// ended it (`Exited`).
pub fn of_ffprobe(exit: Exit, stderr: &str, input: &str) -> Option<MediaError> {
    if exit.success {
        return None;
    }
    let line = first_error_line(stderr, Some(&input_arg(input)));
    let lower = line.as_deref().unwrap_or_default().to_ascii_lowercase();
    if lower.contains(NOT_ON_WHITELIST) {
        return Some(unsupported_container());
    }
    if exit.code.is_none() || ENVIRONMENT_ERRORS.iter().any(|e| lower.contains(e)) {
        return Some(MediaError::Exited {
            code: exit.code,
            reason: line.unwrap_or_else(|| "ffprobe failed".into()),
        });
    }
    Some(MediaError::NotAVideo(match line {
        Some(l) => format!("the file is not a video (ffprobe: {l})"),
        None => "the file is not a video".into(),
    }))
}

/// The first meaningful line of a tool's stderr, sanitized for users: `[ctx @ 0x…]` / `[level]`
/// prefixes and a leading `INPUT:` are dropped, control characters removed, length capped.
pub fn first_error_line(stderr: &str, input: Option<&str>) -> Option<String> {
    stderr
        .split(['\n', '\r'])
        .map(|l| sanitize_line(l, input))
        .find(|l| !l.is_empty())
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
            let got = of_ffmpeg(Exit { success, code }, &errors, "/up/in.mp4");
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

    #[test]
    fn ffprobe_refusals() {
        let failed = |code| Exit {
            success: false,
            code,
        };
        // (exit, stderr, kind)
        let cases: &[(Exit, &str, &str)] = &[
            (
                Exit {
                    success: true,
                    code: Some(0),
                },
                "",
                "ok",
            ),
            (
                failed(Some(1)),
                "file:/up/x: Invalid data found when processing input\n",
                "novideo",
            ),
            (failed(Some(1)), "", "novideo"),
            (
                failed(Some(1)),
                "[mpegts @ 0x1] Format hls is not on whitelist 'mov,…'\n",
                "novideo",
            ),
            (
                failed(Some(1)),
                "file:/up/x: No such file or directory\n",
                "exited",
            ),
            (failed(None), "", "exited"),
        ];
        for (exit, stderr, expected) in cases {
            let kind = match of_ffprobe(*exit, stderr, "/up/x") {
                None => "ok",
                Some(MediaError::NotAVideo(r)) => {
                    assert!(!r.contains("/up/"), "{r}");
                    "novideo"
                }
                Some(MediaError::Exited { code, .. }) => {
                    assert_eq!(code, exit.code);
                    "exited"
                }
                Some(other) => panic!("{other:?}"),
            };
            assert_eq!(kind, *expected, "{stderr:?}");
        }
    }
}
