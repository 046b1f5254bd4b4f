//! Helpers for tests that need real media files (generated with ffmpeg's lavfi sources).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const FFMPEG: &str = "/usr/bin/ffmpeg";
pub const FFPROBE: &str = "/usr/bin/ffprobe";

fn ffmpeg(args: &[&str], out: &Path) {
    let o = Command::new(FFMPEG)
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .arg(out)
        .output()
        .expect("run ffmpeg");
    assert!(
        o.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A `secs`-second H.264 testsrc2 video at 25 fps, keyframe every 2 s.
pub fn make_video(dir: &Path, name: &str, secs: u32, size: &str) -> PathBuf {
    let out = dir.join(name);
    let src = format!("testsrc2=size={size}:rate=25");
    let t = secs.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &src, "-t", &t];
    args.extend(videoproject_test_support::FAST_H264);
    ffmpeg(&args, &out);
    out
}

/// A 2-second audio-only AAC file.
pub fn make_audio(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac"], &out);
    out
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

pub fn random_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let out = dir.join(name);
    std::fs::write(&out, noise(len, 0x9E37_79B9_7F4A_7C15)).unwrap();
    out
}

/// Overwrites the middle third of a file with noise.
pub fn corrupt_middle(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let (a, b) = (data.len() / 3, 2 * data.len() / 3);
    data[a..b].copy_from_slice(&noise(b - a, 42));
    std::fs::write(path, data).unwrap();
}

/// Width and height from a JPEG SOF segment or a PNG IHDR chunk.
pub fn image_size(data: &[u8]) -> (u32, u32) {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        let w = u32::from_be_bytes(data[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(data[20..24].try_into().unwrap());
        return (w, h);
    }
    assert_eq!(&data[..2], &[0xFF, 0xD8], "not a JPEG");
    let mut i = 2;
    while i + 9 < data.len() {
        assert_eq!(data[i], 0xFF, "bad marker at {i}");
        let marker = data[i + 1];
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([data[i + 5], data[i + 6]]);
            let w = u16::from_be_bytes([data[i + 7], data[i + 8]]);
            return (u32::from(w), u32::from(h));
        }
        i += 2 + len;
    }
    panic!("no SOF segment");
}
