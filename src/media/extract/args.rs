//! ffmpeg's command lines for both strategies: pure functions of the request.
//!
//! Every run has two outputs from one filter graph: the frames on stdout
//! and, split off the same decoded pictures, their thumbnails on
//! [`SECOND_OUTPUT_FD`] (at most [`thumbnail::MAX_WIDTH`] a side, small
//! JPEGs). So a thumbnail costs a scale and a small encode, never a second
//! decode of the frame.

use std::fmt::Write as _;

use super::ExtractRequest;
use super::log::LEVEL_ARGS;
use crate::media::input::input_args;
use crate::media::plan::{ImageFormat, fps_filter};
use crate::media::process::SECOND_OUTPUT_FD;
use crate::media::thumbnail;

/// The thumbnails' JPEG quality (ffmpeg's scale, 2 best to 31): about
/// 6 KB for a 320×180 picture.
const THUMBNAIL_QUALITY: &str = "5";

/// Every run's first options: the log as [`super::log`] reads it, no
/// banner, no stdin, and the first error ends the run.
fn common() -> Vec<String> {
    LEVEL_ARGS
        .into_iter()
        .chain(["-hide_banner", "-nostdin", "-xerror"])
        .map(String::from)
        .collect()
}

fn scale_filter(req: &ExtractRequest) -> Option<String> {
    req.width
        .filter(|w| *w > 0)
        .map(|w| format!("scale={w}:-2"))
}

/// The graph's two outputs, as the filter graph names them.
const FRAMES: &str = "[frames]";
const THUMBS: &str = "[thumbs]";

/// The end of a filter graph whose pictures so far are the frames: splits
/// them into [`FRAMES`] and [`THUMBS`], the latter shrunk to fit
/// [`thumbnail::MAX_WIDTH`] square (never enlarged, each pixel the mean of
/// those it covers).
fn split_thumbnails() -> String {
    let max = thumbnail::MAX_WIDTH;
    format!(
        "split=2{FRAMES}[t];[t]scale=w='min({max},iw)':h='min({max},ih)':\
         force_original_aspect_ratio=decrease:flags=area{THUMBS}"
    )
}

/// `threads`: the encoder's threads (`None`: ffmpeg's choice, every core);
/// `passthrough`: each picture the graph makes is written, timestamps aside.
fn output_args(
    req: &ExtractRequest,
    frames: usize,
    threads: Option<usize>,
    passthrough: bool,
) -> Vec<String> {
    // both outputs take the same pictures
    let each = |map: &str| {
        let mut args: Vec<String> = ["-map", map, "-an", "-sn", "-dn"].map(String::from).into();
        if passthrough {
            args.extend(["-fps_mode".into(), "passthrough".into()]);
        }
        args.extend(["-frames:v".into(), frames.to_string()]);
        args
    };
    let mut args = each(FRAMES);
    if let Some(n) = threads {
        args.extend(["-threads".into(), n.to_string()]);
    }
    args.extend(["-f", "image2pipe", "-c:v", req.format.codec()].map(String::from));
    if req.format == ImageFormat::Jpg {
        // mjpeg wants full-range YUV; -q:v 2 is near-lossless.
        args.extend(["-pix_fmt", "yuvj420p", "-q:v", "2"].map(String::from));
    }
    args.push("-".into());
    // the thumbnails: one encoder thread is plenty for their size
    args.extend(each(THUMBS));
    args.extend(
        [
            "-threads",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "mjpeg",
            "-pix_fmt",
            "yuvj420p",
        ]
        .map(String::from),
    );
    args.extend(["-q:v".into(), THUMBNAIL_QUALITY.into()]);
    args.push(format!("pipe:{SECOND_OUTPUT_FD}"));
    args
}

/// One decoding pass that keeps a frame per planned timestamp.
pub(super) fn single_pass(req: &ExtractRequest) -> Vec<String> {
    let mut args = common();
    // alone on the node ffmpeg takes every core (its default); beside other
    // jobs only this job's share, for decoder, filters and encoder alike
    let share = req.cores.share();
    let threads = (share < req.cores.cores()).then_some(share);
    if let Some(n) = threads {
        let n = n.to_string();
        // the graph is a complex one (two outputs): ffmpeg 5 reads the
        // second option for it, later versions the first
        for option in ["-filter_threads", "-filter_complex_threads", "-threads"] {
            args.extend([option.into(), n.clone()]);
        }
    }
    args.extend(input_args(req.input));
    // round=up: slot k takes the last frame with pts <= t_k (see `fps_filter`).
    let fps = format!("{}:round=up", fps_filter(req.plan, req.duration_secs));
    let graph = [Some(fps), scale_filter(req), Some(split_thumbnails())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(",");
    args.extend(["-filter_complex".into(), format!("[0:v:0]{graph}")]);
    args.extend(output_args(req, req.plan.timestamps.len(), threads, false));
    args
}

/// One ffmpeg run for several seeks: the input is opened once per timestamp
/// with an input seek (`-ss T -i`, exact: decoded from the keyframe before
/// T), each takes its first frame, and `concat` joins them in order into one
/// image stream. Each decoder gets one thread: a batch runs on one core.
pub(super) fn seek_batch(req: &ExtractRequest, timestamps: &[f64]) -> Vec<String> {
    let mut args = common();
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
        args.extend(input_args(req.input));
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
    let _ = write!(graph, ",{}", split_thumbnails());
    args.extend(["-filter_complex".into(), graph]);
    args.extend(output_args(req, timestamps.len(), Some(1), true));
    args
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::media::cores::CoreShare;
    use crate::media::extract::CancelFlag;
    use crate::media::plan::{FramePlan, Spacing, Strategy};

    fn with<T>(
        format: ImageFormat,
        width: Option<u32>,
        cores: &CoreShare,
        f: impl FnOnce(&ExtractRequest) -> T,
    ) -> T {
        let plan = FramePlan {
            timestamps: vec![0.0, 2.0, 4.0],
            strategy: Strategy::SinglePass,
            spacing: Spacing::Interval { millis: 2000 },
        };
        let cancel = CancelFlag::new();
        f(&ExtractRequest {
            ffmpeg: Path::new("ffmpeg"),
            input: "/up/in.mp4",
            plan: &plan,
            duration_secs: 6.0,
            format,
            width,
            stall_timeout: Duration::from_secs(20),
            cpu_limit: Duration::from_secs(60),
            cores,
            picture: None,
            cancel: &cancel,
        })
    }

    fn value<'a>(args: &'a [String], option: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == option)?;
        args.get(at + 1).map(String::as_str)
    }

    /// The options of the output that maps `map`, up to its file.
    fn output<'a>(args: &'a [String], map: &str) -> &'a [String] {
        let from = args
            .windows(2)
            .position(|w| w[0] == "-map" && w[1] == map)
            .unwrap_or_else(|| panic!("no output of {map}: {args:?}"));
        let to = args[from..]
            .iter()
            .position(|a| a == "-" || a.starts_with("pipe:"))
            .unwrap();
        &args[from..=from + to]
    }

    #[test]
    fn every_run_writes_frames_to_stdout_and_their_thumbnails_to_fd_3() {
        let alone = CoreShare::new(2);
        for args in [
            with(ImageFormat::Png, None, &alone, single_pass),
            with(ImageFormat::Png, None, &alone, |r| seek_batch(r, &[1.0])),
        ] {
            assert_eq!(args[..2], ["-loglevel", "level+info"]);
            assert!(args.contains(&"file:/up/in.mp4".to_string()));
            let graph = value(&args, "-filter_complex").unwrap();
            assert!(
                graph.ends_with(
                    "split=2[frames][t];[t]scale=w='min(320,iw)':h='min(320,ih)':\
                     force_original_aspect_ratio=decrease:flags=area[thumbs]"
                ),
                "{graph}"
            );
            let frames = output(&args, FRAMES);
            assert_eq!(value(frames, "-f"), Some("image2pipe"));
            assert_eq!(value(frames, "-c:v"), Some("png"));
            assert_eq!(frames.last().map(String::as_str), Some("-"));
            let thumbs = output(&args, THUMBS);
            assert_eq!(value(thumbs, "-c:v"), Some("mjpeg"));
            assert_eq!(value(thumbs, "-frames:v"), value(frames, "-frames:v"));
            assert_eq!(value(thumbs, "-fps_mode"), value(frames, "-fps_mode"));
            assert_eq!(thumbs.last().map(String::as_str), Some("pipe:3"));
            assert_eq!(args.last().map(String::as_str), Some("pipe:3"));
        }
    }

    #[test]
    fn a_single_pass_takes_the_planned_frames_on_the_job_s_share() {
        let alone = CoreShare::new(2);
        let args = with(ImageFormat::Png, Some(160), &alone, single_pass);
        assert_eq!(value(&args, "-frames:v"), Some("3"));
        let graph = value(&args, "-filter_complex").unwrap();
        assert!(graph.starts_with("[0:v:0]fps="), "{graph}");
        assert!(graph.contains(":round=up,scale=160:-2,split=2"), "{graph}");
        assert_eq!(value(&args, "-c:v"), Some("png"));
        assert_eq!(
            value(&args, "-filter_threads"),
            None,
            "alone: ffmpeg's choice"
        );
        assert_eq!(value(output(&args, FRAMES), "-threads"), None);

        let busy = CoreShare::new(2);
        let mut a = busy.reserve().unwrap();
        let mut b = busy.reserve().unwrap();
        a.claimed();
        b.claimed();
        let args = with(ImageFormat::Jpg, None, &busy, single_pass);
        assert_eq!(value(&args, "-filter_threads"), Some("1"));
        assert_eq!(value(&args, "-filter_complex_threads"), Some("1"));
        assert_eq!(value(&args, "-threads"), Some("1"));
        assert_eq!(value(output(&args, FRAMES), "-threads"), Some("1"));
    }

    #[test]
    fn a_seek_batch_opens_the_input_once_per_timestamp_and_joins_the_frames() {
        let alone = CoreShare::new(2);
        let args = with(ImageFormat::Jpg, Some(100), &alone, |r| {
            seek_batch(r, &[1.0, 2.5])
        });
        let seeks: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "-ss")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(seeks, ["1.000", "2.500"]);
        assert_eq!(
            value(&args, "-filter_complex"),
            Some(
                "[0:v:0]trim=end_frame=1[f0];[1:v:0]trim=end_frame=1[f1];\
                 [f0][f1]concat=n=2:v=1:a=0,setpts=N/TB,scale=100:-2,split=2[frames][t];\
                 [t]scale=w='min(320,iw)':h='min(320,ih)':\
                 force_original_aspect_ratio=decrease:flags=area[thumbs]"
            )
        );
        let frames = output(&args, FRAMES);
        assert_eq!(value(frames, "-frames:v"), Some("2"));
        assert_eq!(value(frames, "-fps_mode"), Some("passthrough"));
    }
}
