use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub(crate) fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// ffmpeg's output options for the test videos: H.264 made fast, a
/// keyframe every 2 s at 25 fps (the unit tests' videos use them too).
pub const FAST_H264: [&str; 8] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "50",
    "-pix_fmt",
    "yuv420p",
];

/// Test videos made with ffmpeg's lavfi sources, once per test run.
pub fn fixture(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = fixture_dir();
    let _guard = LOCK.lock().unwrap();
    let (file, secs, size) = match name {
        "v60" => ("v60.mp4", 60, "160x120"),
        "v20" => ("v20.mp4", 20, "160x120"),
        "v60_big" => ("v60_big.mp4", 60, "320x240"),
        "corrupt" => ("corrupt.mp4", 20, "640x480"),
        // lossless 720p: few seconds, many bytes (an upload that takes a while)
        "bulky" => ("bulky.mp4", 8, "1280x720"),
        "text" => {
            let p = dir.join("notes.mp4");
            if !p.exists() {
                std::fs::write(
                    &p,
                    "this is not a video, only text pretending to be one\n".repeat(200),
                )
                .unwrap();
            }
            return p;
        }
        other => panic!("unknown fixture {other}"),
    };
    let path = dir.join(file);
    if path.exists() {
        return path;
    }
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &secs.to_string(),
        ])
        .args(FAST_H264)
        .args(if name == "bulky" {
            &["-qp", "0"][..]
        } else {
            &[]
        })
        .args(["-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed (see README: scripts/test)");
    assert!(status.success(), "generating {name}");
    if name == "corrupt" {
        // Overwrite most of the media data with noise: the headers still
        // probe as a video, but the frames cannot be decoded.
        let mut bytes = std::fs::read(&path).unwrap();
        let (from, to) = (bytes.len() / 10, bytes.len() * 8 / 10);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for b in &mut bytes[from..to] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    path
}
