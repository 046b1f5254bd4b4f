//! Extraction end to end, with real ffmpeg on generated videos.

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
static TWO_CORES: std::sync::LazyLock<CoreShare> = std::sync::LazyLock::new(|| CoreShare::new(2));

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
    assert_thumbnails(&r.frames, format, size);
}

/// Each frame came with ffmpeg's thumbnail of that very frame (the n-th
/// thumbnail matched to the n-th frame): of the right size, and closer to
/// its own frame than to any other.
fn assert_thumbnails(frames: &[Frame], format: ImageFormat, size: (u32, u32)) {
    use crate::media::thumbnail::{self, MAX_WIDTH, fit};
    let theirs: Vec<_> = frames
        .iter()
        .map(|f| {
            let jpeg = f.thumbnail.as_ref().expect("ffmpeg made a thumbnail");
            assert_eq!(image_size(jpeg), fit(size.0, size.1, MAX_WIDTH));
            thumbnail::decode(jpeg, MAX_WIDTH).unwrap()
        })
        .collect();
    let ours: Vec<_> = frames
        .iter()
        .map(|f| {
            let ours = thumbnail::thumbnail(&f.data, format).unwrap();
            thumbnail::decode(&ours.jpeg, MAX_WIDTH).unwrap()
        })
        .collect();
    let distance = |a: &thumbnail::Picture, b: &thumbnail::Picture| -> u64 {
        a.rgb
            .iter()
            .zip(&b.rgb)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum()
    };
    for (k, t) in theirs.iter().enumerate() {
        let nearest = (0..ours.len())
            .min_by_key(|&j| distance(t, &ours[j]))
            .unwrap();
        assert_eq!(
            nearest, k,
            "the thumbnail of frame {k} looks like frame {nearest}"
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
        let result = extract_frames(&req, &mut |_| {
            seen += 1;
            flag.cancel();
            Ok(())
        });
        assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
        assert_eq!(seen, 1, "{strategy:?}");
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
        run(&req).result
    });
    // Opening for writing blocks until ffmpeg has opened the FIFO for reading.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    cancel.cancel();
    let result = worker.join().unwrap();
    // cancelled, not stalled: the flag ended the run, not the watchdog
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
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
    // the FIFO's writing end, without waiting for ffmpeg to open it (on a
    // busy machine the watchdog may stop ffmpeg before it does): opened
    // while a reading and writing end of our own (which never waits) holds
    // the FIFO, which is then let go
    let ours = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(ours);
    let (result, elapsed) = worker.join().unwrap();
    assert!(matches!(result, Err(MediaError::Stalled(_))), "{result:?}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    // ffmpeg is gone, so nobody reads the FIFO any more
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
