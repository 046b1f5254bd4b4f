//! ffmpeg's command lines for both strategies: pure functions of the request.

use std::fmt::Write as _;

use super::ExtractRequest;
use super::log::LEVEL_ARGS;
use crate::media::input::input_args;
use crate::media::plan::{ImageFormat, fps_filter};

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

/// One decoding pass that keeps a frame per planned timestamp.
pub(super) fn single_pass(req: &ExtractRequest) -> Vec<String> {
    let mut args = common();
    // alone on the node ffmpeg takes every core (its default); beside other
    // jobs only this job's share, for decoder, filters and encoder alike
    let share = req.cores.share();
    let threads = (share < req.cores.cores()).then_some(share);
    if let Some(n) = threads {
        let n = n.to_string();
        args.extend(["-filter_threads".into(), n.clone(), "-threads".into(), n]);
    }
    args.extend(input_args(req.input));
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
    graph.push_str("[out]");
    args.extend(["-filter_complex".into(), graph]);
    args.extend(["-fps_mode".into(), "passthrough".into()]);
    args.extend(output_args(req, "[out]", None, timestamps.len(), Some(1)));
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

    #[test]
    fn every_run_logs_with_levels_and_writes_images_to_stdout() {
        let alone = CoreShare::new(2);
        for args in [
            with(ImageFormat::Jpg, None, &alone, single_pass),
            with(ImageFormat::Jpg, None, &alone, |r| seek_batch(r, &[1.0])),
        ] {
            assert_eq!(args[..2], ["-loglevel", "level+info"]);
            assert_eq!(value(&args, "-f"), Some("image2pipe"));
            assert_eq!(value(&args, "-c:v"), Some("mjpeg"));
            assert_eq!(args.last().map(String::as_str), Some("-"));
            assert!(args.contains(&"file:/up/in.mp4".to_string()));
        }
    }

    #[test]
    fn a_single_pass_takes_the_planned_frames_on_the_job_s_share() {
        let alone = CoreShare::new(2);
        let args = with(ImageFormat::Png, Some(160), &alone, single_pass);
        assert_eq!(value(&args, "-frames:v"), Some("3"));
        let vf = value(&args, "-vf").unwrap();
        assert!(vf.contains(":round=up,scale=160:-2"), "{vf}");
        assert_eq!(value(&args, "-c:v"), Some("png"));
        assert_eq!(value(&args, "-threads"), None, "alone: ffmpeg's choice");

        let busy = CoreShare::new(2);
        let mut a = busy.reserve().unwrap();
        let mut b = busy.reserve().unwrap();
        a.claimed();
        b.claimed();
        let args = with(ImageFormat::Jpg, None, &busy, single_pass);
        assert_eq!(value(&args, "-filter_threads"), Some("1"));
        assert_eq!(value(&args, "-threads"), Some("1"));
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
                 [f0][f1]concat=n=2:v=1:a=0,setpts=N/TB,scale=100:-2[out]"
            )
        );
        assert_eq!(value(&args, "-map"), Some("[out]"));
        assert_eq!(value(&args, "-frames:v"), Some("2"));
    }
}
