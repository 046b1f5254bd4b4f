//! `ffprobe`: runs it (through [`super::process`]), parses its JSON and decides whether the
//! input is a usable video.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MediaError;
use super::process::{Process, Tool};

/// What the service needs to know about an uploaded file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MediaInfo {
    /// Duration of the first video stream, else of the container. Always finite and > 0.
    pub duration_secs: f64,
    /// ffprobe's container name list, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub format_name: String,
    pub size_bytes: Option<u64>,
    pub bit_rate: Option<u64>,
    pub video: VideoStream,
    pub has_audio: bool,
}

impl MediaInfo {
    /// Pixels decoded per second of video (width × height × frame rate), when known.
    pub fn pixel_rate(&self) -> Option<f64> {
        let v = &self.video;
        v.frame_rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| f64::from(v.width) * f64::from(v.height) * r)
    }
}

/// What a person is shown of a probe: how long, how large, which codec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MediaSummary {
    pub duration_secs: f64,
    pub width: u32,
    pub height: u32,
    pub codec: String,
}

impl MediaSummary {
    pub fn of(info: &MediaInfo) -> Self {
        Self {
            duration_secs: info.duration_secs,
            width: info.video.width,
            height: info.video.height,
            codec: info.video.codec.clone(),
        }
    }
}

/// The first (non cover-art) video stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VideoStream {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Option<f64>,
    pub frames: Option<u64>,
    pub duration_secs: Option<f64>,
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: HashMap<String, i64>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
    size: Option<String>,
    bit_rate: Option<String>,
}

/// The largest picture side accepted (8K is 7680): every frame is decoded,
/// scaled and encoded in memory, so a huge declared size is refused early.
const MAX_SIDE: u32 = 16_384;

/// Codecs that are (nearly always) single still images when they come without a duration.
const STILL_IMAGE_CODECS: &[&str] = &[
    "png", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp", "gif", "apng", "ppm", "pgm",
    "pam", "pbm", "pcx", "tga", "sgi", "dpx", "exr", "qoi", "xbm", "xwd", "svg", "jpegxl",
];

/// Text-art "video" demuxers/codecs that ffmpeg happily applies to arbitrary bytes
/// (e.g. any `.bin` or `.txt` upload).
const TEXT_FORMATS: &[&str] = &["bin", "tty", "xbin", "adf", "idf"];
const TEXT_CODECS: &[&str] = &["bintext", "xbin", "idf", "ansi"];

/// Containers that reference other files; refused so a crafted upload cannot make ffmpeg read
/// other local files or URLs during extraction.
const PLAYLIST_FORMATS: &[&str] = &["hls", "concat", "ffconcat", "dash"];

fn parse_positive_f64(s: Option<&str>) -> Option<f64> {
    s?.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
}

fn parse_u64(s: Option<&str>) -> Option<u64> {
    s?.trim().parse::<u64>().ok()
}

fn parse_rate(s: Option<&str>) -> Option<f64> {
    let s = s?.trim();
    let rate = match s.split_once('/') {
        Some((n, d)) => {
            let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
            if d == 0.0 {
                return None;
            }
            n / d
        }
        None => s.parse::<f64>().ok()?,
    };
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// Parses `ffprobe -print_format json -show_format -show_streams` output and validates that it
/// describes a video. Fails with [`MediaError::NotAVideo`] (no video stream, only cover art, a
/// still image, a playlist, no duration, no picture size) or [`MediaError::BadOutput`] (JSON).
pub fn parse_probe(json: &str) -> Result<MediaInfo, MediaError> {
    let raw: RawProbe = serde_json::from_str(json)
        .map_err(|e| MediaError::BadOutput(format!("unreadable ffprobe output: {e}")))?;
    let format = raw.format.unwrap_or(RawFormat {
        format_name: None,
        duration: None,
        size: None,
        bit_rate: None,
    });
    let format_name = format.format_name.clone().unwrap_or_default();
    let format_names: Vec<&str> = format_name.split(',').map(str::trim).collect();
    if format_names.iter().any(|f| PLAYLIST_FORMATS.contains(f)) {
        return Err(MediaError::NotAVideo(
            "the file is a playlist, not a video".into(),
        ));
    }

    let flag = |s: &RawStream, key: &str| s.disposition.get(key).copied().unwrap_or(0) != 0;
    let has_audio = raw
        .streams
        .iter()
        .any(|s| s.codec_type.as_deref() == Some("audio"));
    let Some(stream) = raw.streams.iter().find(|s| {
        s.codec_type.as_deref() == Some("video")
            && !flag(s, "attached_pic")
            && !flag(s, "timed_thumbnails")
    }) else {
        return Err(MediaError::NotAVideo("the file has no video stream".into()));
    };

    let codec = stream.codec_name.clone().unwrap_or_default();
    if format_names.iter().any(|f| TEXT_FORMATS.contains(f))
        || TEXT_CODECS.contains(&codec.as_str())
    {
        return Err(MediaError::NotAVideo("the file is not a video".into()));
    }
    let stream_duration = parse_positive_f64(stream.duration.as_deref());
    let format_duration = parse_positive_f64(format.duration.as_deref());
    let image_container = format_names
        .iter()
        .any(|f| *f == "image2" || f.ends_with("_pipe"));
    let still_codec = STILL_IMAGE_CODECS.contains(&codec.as_str())
        && stream_duration.is_none()
        && format_duration.is_none();
    if image_container || still_codec || flag(stream, "still_image") {
        return Err(MediaError::NotAVideo(
            "the file is a still image, not a video".into(),
        ));
    }

    let Some(duration_secs) = stream_duration.or(format_duration) else {
        return Err(MediaError::NotAVideo(
            "the video's duration could not be determined".into(),
        ));
    };
    let (width, height) = match (stream.width, stream.height) {
        (Some(w), Some(h)) if w > MAX_SIDE || h > MAX_SIDE => {
            return Err(MediaError::NotAVideo(format!(
                "the picture is {w}x{h}; at most {MAX_SIDE} pixels on a side are accepted"
            )));
        }
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(MediaError::NotAVideo(
                "the video has no picture size".into(),
            ));
        }
    };

    Ok(MediaInfo {
        duration_secs,
        format_name,
        size_bytes: parse_u64(format.size.as_deref()),
        bit_rate: parse_u64(format.bit_rate.as_deref()),
        video: VideoStream {
            codec,
            width,
            height,
            frame_rate: parse_rate(stream.avg_frame_rate.as_deref())
                .or_else(|| parse_rate(stream.r_frame_rate.as_deref())),
            frames: parse_u64(stream.nb_frames.as_deref()).filter(|n| *n > 0),
            duration_secs: stream_duration,
        },
        has_audio,
    })
}

/// Probes running at once, at most: one per core. Under a burst of uploads,
/// probes sharing the cores all finish late; taken in turn, the first finish
/// early and their jobs start while the others wait.
static PROBING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
});

/// Runs ffprobe on `input` (a path or URL) and validates the result with [`parse_probe`].
///
/// Errors: `ToolMissing`, `TimedOut`, `NotAVideo` (including when ffprobe rejects the file),
/// `Exited` (ffprobe failed for a local reason such as a missing file), `BadOutput`.
pub async fn probe(
    ffprobe: &Path,
    input: &str,
    timeout: Duration,
) -> Result<MediaInfo, MediaError> {
    let options = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ];
    let input_args = super::input::input_args(input);
    let args = options
        .into_iter()
        .chain(input_args.iter().map(String::as_str));
    // waiting for a core counts like running too long: the node is busy
    let _core = match tokio::time::timeout(timeout, PROBING.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(MediaError::TimedOut(timeout)),
    };
    let out = Process::new(Tool::Ffprobe, ffprobe)
        .args(args)
        .output(timeout)
        .await?;
    if let Some(failed) = super::failure::of_ffprobe(out.exit(), &out.stderr, input) {
        return Err(failed);
    }
    if out.truncated {
        return Err(MediaError::BadOutput("ffprobe output too large".into()));
    }
    parse_probe(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use super::*;

    fn not_a_video(json: &str) -> String {
        match parse_probe(json) {
            Err(MediaError::NotAVideo(r)) => r,
            other => panic!("expected NotAVideo, got {other:?}"),
        }
    }

    #[test]
    fn parses_mp4() {
        let info = parse_probe(include_str!("testdata/probe_v_mp4.json")).unwrap();
        assert_eq!(
            info,
            MediaInfo {
                duration_secs: 10.0,
                format_name: "mov,mp4,m4a,3gp,3g2,mj2".into(),
                size_bytes: info.size_bytes,
                bit_rate: info.bit_rate,
                video: VideoStream {
                    codec: "h264".into(),
                    width: 320,
                    height: 240,
                    frame_rate: Some(25.0),
                    frames: Some(250),
                    duration_secs: Some(10.0),
                },
                has_audio: false,
            }
        );
        assert!(info.size_bytes.unwrap() > 1000);
        assert!(info.bit_rate.unwrap() > 1000);
    }

    #[test]
    fn webm_falls_back_to_format_duration() {
        let info = parse_probe(include_str!("testdata/probe_v_webm.json")).unwrap();
        assert_eq!(info.duration_secs, 3.008);
        assert_eq!(info.video.duration_secs, None);
        assert_eq!(info.video.codec, "vp9");
        assert_eq!(info.video.frames, None);
        assert!(info.has_audio);
    }

    #[test]
    fn animated_gif_is_a_video() {
        let info = parse_probe(include_str!("testdata/probe_anim_gif.json")).unwrap();
        assert_eq!(info.duration_secs, 1.0);
        assert_eq!(info.video.frame_rate, Some(10.0));
    }

    #[test]
    fn rejections() {
        let cases: &[(&str, &str)] = &[
            (include_str!("testdata/probe_a_m4a.json"), "no video stream"),
            (
                include_str!("testdata/probe_cover_mp3.json"),
                "no video stream",
            ),
            (include_str!("testdata/probe_i_png.json"), "still image"),
            (include_str!("testdata/probe_i_jpg.json"), "still image"),
            (r#"{"streams":[],"format":{}}"#, "no video stream"),
            (r#"{}"#, "no video stream"),
            (
                r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":320,"height":240}],"format":{"format_name":"mpegts","duration":"N/A"}}"#,
                "duration",
            ),
            (
                r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":0,"height":240,"duration":"5"}],"format":{"format_name":"mpegts"}}"#,
                "picture size",
            ),
            (
                r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":320,"height":240,"duration":"0.000"}],"format":{"format_name":"mpegts","duration":"0"}}"#,
                "duration",
            ),
            (
                r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":320,"height":240,"duration":"5"}],"format":{"format_name":"hls"}}"#,
                "playlist",
            ),
            (
                r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":65535,"height":240,"duration":"5"}],"format":{"format_name":"mpegts"}}"#,
                "at most 16384 pixels",
            ),
            (
                r#"{"streams":[{"codec_type":"video","codec_name":"bintext","width":1280,"height":10000}],"format":{"format_name":"bin"}}"#,
                "not a video",
            ),
        ];
        for (json, needle) in cases {
            let reason = not_a_video(json);
            assert!(
                reason.contains(needle),
                "{reason:?} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn bad_json_is_bad_output() {
        assert!(matches!(
            parse_probe("not json"),
            Err(MediaError::BadOutput(_))
        ));
    }

    #[test]
    fn rate_parsing() {
        let cases: &[(&str, Option<f64>)] = &[
            ("25/1", Some(25.0)),
            ("30000/1001", Some(30000.0 / 1001.0)),
            ("0/0", None),
            ("24", Some(24.0)),
            ("x", None),
        ];
        for (s, expected) in cases {
            assert_eq!(parse_rate(Some(s)), *expected, "{s}");
        }
    }

    const T: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn real_video() {
        let dir = tempfile::tempdir().unwrap();
        let v = testutil::make_video(dir.path(), "v.mp4", 4, "320x240");
        let info = probe(Path::new(testutil::FFPROBE), v.to_str().unwrap(), T)
            .await
            .unwrap();
        assert_eq!((info.video.width, info.video.height), (320, 240));
        assert!(
            (info.duration_secs - 4.0).abs() < 0.1,
            "{}",
            info.duration_secs
        );
        assert_eq!(info.video.codec, "h264");
    }

    #[tokio::test]
    async fn real_rejections() {
        let dir = tempfile::tempdir().unwrap();
        // A .bin name makes ffprobe try its "binary text" demuxer, which accepts anything.
        let rnd_bin = testutil::random_file(dir.path(), "upload.bin", 200_000);
        let rnd_mp4 = testutil::random_file(dir.path(), "upload.mp4", 200_000);
        let txt = dir.path().join("notes.txt");
        std::fs::write(&txt, "hello, this is text\n").unwrap();
        let audio = testutil::make_audio(dir.path(), "a.m4a");
        let cases = [
            (rnd_bin, "not a video"),
            (
                rnd_mp4,
                "the file is not a video (ffprobe: moov atom not found)",
            ),
            (txt, "Invalid data found"),
            (audio, "no video stream"),
        ];
        for (path, needle) in cases {
            let err = probe(Path::new(testutil::FFPROBE), path.to_str().unwrap(), T)
                .await
                .unwrap_err();
            let MediaError::NotAVideo(reason) = &err else {
                panic!("{path:?}: expected NotAVideo, got {err:?}");
            };
            assert!(reason.contains(needle), "{reason}");
            assert!(!reason.contains(dir.path().to_str().unwrap()), "{reason}");
            assert!(err.is_permanent());
        }
    }

    #[tokio::test]
    async fn missing_input_is_not_permanent() {
        let err = probe(Path::new(testutil::FFPROBE), "/nonexistent/x.mp4", T)
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::Exited { .. }), "{err:?}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn missing_ffprobe() {
        let err = probe(Path::new("/nonexistent/ffprobe"), "x.mp4", T)
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::ToolMissing(_)), "{err:?}");
    }
}
