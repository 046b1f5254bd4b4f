//! Streaming zip of frames (stored, not compressed) with a trailing `manifest.json`.
//! Works on non-seekable writers (e.g. an HTTP body or a pipe). Where each
//! frame's bytes land in the zip is recorded as it is written (entries are
//! stored, so a frame is one byte range of the zip): the frame index.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use super::extract::Frame;
use super::plan::{ImageFormat, Strategy};
use super::probe::MediaInfo;

#[derive(Debug, Serialize)]
struct ManifestFrame {
    file: String,
    index: u32,
    timestamp: f64,
}

#[derive(Serialize)]
struct Manifest<'a> {
    frames: &'a [ManifestFrame],
    count: usize,
    format: ImageFormat,
    strategy: Strategy,
    options: &'a serde_json::Value,
    source: &'a MediaInfo,
}

/// Writes frames into a zip as `frame_00000.jpg`, `frame_00001.jpg`, … (zero-padded to
/// `max(5, digits(expected_frames))`, so lexical order is time order) and finally `manifest.json`.
pub struct FrameZip<W: Write> {
    zip: ZipWriter<StreamWriter<Counted<W>>>,
    /// Bytes handed to the writer so far.
    written: Arc<AtomicU64>,
    format: ImageFormat,
    width: usize,
    frames: Vec<ManifestFrame>,
    /// Each frame's bytes in the zip.
    ranges: Vec<Range<u64>>,
}

/// A writer that counts what passes through it, unchanged.
struct Counted<W> {
    inner: W,
    written: Arc<AtomicU64>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<W: Write> FrameZip<W> {
    pub fn new(w: W, format: ImageFormat, expected_frames: usize) -> Self {
        let digits = expected_frames.max(1).ilog10() as usize + 1;
        let written = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: w,
            written: written.clone(),
        };
        Self {
            zip: ZipWriter::new_stream(counted),
            written,
            format,
            width: digits.max(5),
            frames: Vec::with_capacity(expected_frames),
            ranges: Vec::with_capacity(expected_frames),
        }
    }

    /// Entry name for a frame index.
    pub fn file_name(&self, index: u32) -> String {
        format!(
            "frame_{index:0width$}.{ext}",
            width = self.width,
            ext = self.format.extension()
        )
    }

    fn options() -> SimpleFileOptions {
        // Stored: JPEG/PNG do not compress.
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
    }

    /// Appends one frame. Frames must arrive in time order.
    pub fn add(&mut self, frame: &Frame) -> io::Result<()> {
        let file = self.file_name(frame.index);
        self.zip
            .start_file(file.as_str(), Self::options())
            .map_err(zip_err)?;
        // the stream writer writes the local header through at once: the
        // data starts here
        let start = self.written.load(Ordering::Relaxed);
        self.zip.write_all(&frame.data)?;
        self.ranges.push(start..start + frame.data.len() as u64);
        self.frames.push(ManifestFrame {
            file,
            index: frame.index,
            timestamp: frame.timestamp,
        });
        Ok(())
    }

    /// Number of frames added so far.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Where each frame added so far lies in the zip, in the order added.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// Writes `manifest.json`, the central directory, and returns the inner writer (not flushed
    /// beyond what the zip writer does; flush it yourself if buffered).
    pub fn finish(
        mut self,
        source: &MediaInfo,
        options: &serde_json::Value,
        strategy: Strategy,
    ) -> io::Result<W> {
        let manifest = Manifest {
            frames: &self.frames,
            count: self.frames.len(),
            format: self.format,
            strategy,
            options,
            source,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        self.zip
            .start_file("manifest.json", Self::options())
            .map_err(zip_err)?;
        self.zip.write_all(&json)?;
        let stream = self.zip.finish().map_err(zip_err)?;
        Ok(stream.into_inner().inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::probe::VideoStream;
    use super::*;
    use std::io::{Cursor, Read};

    fn info() -> MediaInfo {
        MediaInfo {
            duration_secs: 10.0,
            format_name: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            size_bytes: Some(1234),
            bit_rate: None,
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
    }

    fn frame(index: u32, timestamp: f64) -> Frame {
        Frame {
            index,
            timestamp,
            data: format!("image {index}").into_bytes(),
            thumbnail: None,
        }
    }

    /// A writer that refuses to seek, to prove streaming works.
    struct NoSeek(Vec<u8>);
    impl Write for NoSeek {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn round_trip() {
        let mut z = FrameZip::new(NoSeek(Vec::new()), ImageFormat::Jpg, 12);
        for (i, t) in [0.0, 1.5, 3.0].into_iter().enumerate() {
            z.add(&frame(i as u32, t)).unwrap();
        }
        assert_eq!(z.len(), 3);
        let opts = serde_json::json!({"interval_ms": 1500});
        let bytes = z.finish(&info(), &opts, Strategy::SinglePass).unwrap().0;

        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "frame_00000.jpg",
                "frame_00001.jpg",
                "frame_00002.jpg",
                "manifest.json"
            ]
        );
        for i in 0..3 {
            let mut f = archive.by_index(i).unwrap();
            assert_eq!(f.compression(), CompressionMethod::Stored);
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            assert_eq!(s, format!("image {i}"));
        }
        let mut m = String::new();
        archive
            .by_name("manifest.json")
            .unwrap()
            .read_to_string(&mut m)
            .unwrap();
        let m: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(m["count"], 3);
        assert_eq!(m["format"], "jpg");
        assert_eq!(m["strategy"], "singlepass");
        assert_eq!(m["options"], opts);
        assert_eq!(m["source"], serde_json::to_value(info()).unwrap());
        assert_eq!(
            m["frames"],
            serde_json::json!([
                {"file": "frame_00000.jpg", "index": 0, "timestamp": 0.0},
                {"file": "frame_00001.jpg", "index": 1, "timestamp": 1.5},
                {"file": "frame_00002.jpg", "index": 2, "timestamp": 3.0},
            ])
        );
        let back: MediaInfo = serde_json::from_value(m["source"].clone()).unwrap();
        assert_eq!(back, info());
    }

    /// Today's zip, written as `FrameZip` wrote it before it recorded
    /// ranges: the layout the users' zips keep, byte for byte.
    fn reference_zip(frames: &[Frame], manifest: &[u8]) -> Vec<u8> {
        let mut zip = ZipWriter::new_stream(NoSeek(Vec::new()));
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for f in frames {
            zip.start_file(format!("frame_{:05}.jpg", f.index), stored)
                .unwrap();
            zip.write_all(&f.data).unwrap();
        }
        zip.start_file("manifest.json", stored).unwrap();
        zip.write_all(manifest).unwrap();
        zip.finish().unwrap().into_inner().0
    }

    #[test]
    fn the_ranges_are_the_entries_data_and_the_bytes_are_todays() {
        let frames: Vec<Frame> = (0..4)
            .map(|i| Frame {
                index: i,
                timestamp: f64::from(i),
                data: vec![i as u8; 1000 + i as usize * 7],
                thumbnail: None,
            })
            .collect();
        let mut z = FrameZip::new(NoSeek(Vec::new()), ImageFormat::Jpg, 4);
        for f in &frames {
            z.add(f).unwrap();
        }
        let ranges = z.ranges().to_vec();
        let opts = serde_json::json!({});
        let bytes = z.finish(&info(), &opts, Strategy::SinglePass).unwrap().0;

        let mut archive = zip::ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        for (i, range) in ranges.iter().enumerate() {
            let entry = archive.by_index(i).unwrap();
            assert_eq!(entry.data_start(), Some(range.start), "{i}");
            assert_eq!(entry.size(), range.end - range.start);
            drop(entry);
            let (s, e) = (range.start as usize, range.end as usize);
            assert_eq!(bytes[s..e], frames[i].data[..], "{i}");
        }
        let mut manifest = Vec::new();
        archive
            .by_name("manifest.json")
            .unwrap()
            .read_to_end(&mut manifest)
            .unwrap();
        assert_eq!(bytes, reference_zip(&frames, &manifest));
    }

    #[test]
    fn padding_keeps_lexical_order() {
        let cases: &[(usize, u32, &str)] = &[
            (0, 0, "frame_00000.png"),
            (10, 9, "frame_00009.png"),
            (99_999, 12, "frame_00012.png"),
            (100_000, 12, "frame_000012.png"),
            (1_234_567, 1_234_566, "frame_1234566.png"),
        ];
        for &(expected, index, name) in cases {
            let z = FrameZip::new(Vec::new(), ImageFormat::Png, expected);
            assert_eq!(z.file_name(index), name);
        }
        let z = FrameZip::new(Vec::new(), ImageFormat::Png, 150_000);
        let names: Vec<String> = [0, 9, 10, 99_999, 100_000, 149_999]
            .iter()
            .map(|&i| z.file_name(i))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn empty_archive_has_only_manifest() {
        let z = FrameZip::new(Vec::new(), ImageFormat::Png, 0);
        assert!(z.is_empty());
        let bytes = z
            .finish(&info(), &serde_json::Value::Null, Strategy::SeekEach)
            .unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut m = String::new();
        archive.by_index(0).unwrap().read_to_string(&mut m).unwrap();
        let m: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(m["count"], 0);
        assert_eq!(m["strategy"], "seekeach");
        assert_eq!(m["format"], "png");
    }
}
