//! Incremental splitter for a concatenated stream of JPEG or PNG images (ffmpeg `image2pipe`).
//!
//! Bytes arrive in arbitrary chunks; complete images are returned as soon as their last byte
//! arrives. The JPEG parser follows the marker structure (length-prefixed segments, then
//! entropy-coded data with byte stuffing and restart markers until EOI), so an `FF D9` inside a
//! table segment does not end the image. The PNG parser walks chunks until `IEND`.

use super::plan::ImageFormat;

/// Upper bound for one image; anything larger means the stream is not what we expect.
pub const MAX_IMAGE_BYTES: usize = 256 * 1024 * 1024;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("image stream does not start with a {0} signature")]
    BadSignature(&'static str),
    #[error("malformed {format} data at byte {offset} of an image")]
    Malformed { format: &'static str, offset: usize },
    #[error("image larger than {MAX_IMAGE_BYTES} bytes")]
    TooLarge,
    #[error("image stream ended inside an image ({0} bytes pending)")]
    Truncated(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the start of a new image at `pos`.
    Start,
    /// JPEG: expecting a marker (`FF xx`) at `pos`.
    JpegMarker,
    /// JPEG: inside entropy-coded data.
    JpegEntropy,
    /// PNG: expecting a chunk header at `pos`.
    PngChunk,
}

/// Splits a byte stream into whole images. See the module docs.
#[derive(Debug)]
pub struct ImageSplitter {
    format: ImageFormat,
    /// Bytes of the image in progress (starts at the image's first byte).
    buf: Vec<u8>,
    /// Parse position inside `buf`; everything before it has been validated.
    pos: usize,
    state: State,
}

enum Step {
    /// More bytes are needed.
    NeedMore,
    /// The image ends at this offset (exclusive).
    Done(usize),
    /// Keep parsing.
    Continue,
}

impl ImageSplitter {
    pub fn new(format: ImageFormat) -> Self {
        Self {
            format,
            buf: Vec::new(),
            pos: 0,
            state: State::Start,
        }
    }

    /// Feeds a chunk; returns the images completed by it, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, SplitError> {
        self.buf.extend_from_slice(chunk);
        let mut images = Vec::new();
        loop {
            match self.step()? {
                Step::Continue => {}
                Step::NeedMore => break,
                Step::Done(end) => {
                    let rest = self.buf.split_off(end);
                    images.push(std::mem::replace(&mut self.buf, rest));
                    self.pos = 0;
                    self.state = State::Start;
                }
            }
        }
        if self.buf.len() > MAX_IMAGE_BYTES {
            return Err(SplitError::TooLarge);
        }
        Ok(images)
    }

    /// Ends the stream; fails if a partial image is pending.
    pub fn finish(self) -> Result<(), SplitError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(SplitError::Truncated(self.buf.len()))
        }
    }

    fn malformed(&self, offset: usize) -> SplitError {
        SplitError::Malformed {
            format: self.format.extension(),
            offset,
        }
    }

    fn step(&mut self) -> Result<Step, SplitError> {
        let buf = &self.buf;
        let pos = self.pos;
        match self.state {
            State::Start => match self.format {
                ImageFormat::Jpg => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != 0xFF) {
                            return Err(SplitError::BadSignature("JPEG"));
                        }
                        return Ok(Step::NeedMore);
                    }
                    if buf[0..2] != [0xFF, 0xD8] {
                        return Err(SplitError::BadSignature("JPEG"));
                    }
                    self.pos = 2;
                    self.state = State::JpegMarker;
                    Ok(Step::Continue)
                }
                ImageFormat::Png => {
                    let n = buf.len().min(PNG_SIGNATURE.len());
                    if buf[..n] != PNG_SIGNATURE[..n] {
                        return Err(SplitError::BadSignature("PNG"));
                    }
                    if n < PNG_SIGNATURE.len() {
                        return Ok(Step::NeedMore);
                    }
                    self.pos = PNG_SIGNATURE.len();
                    self.state = State::PngChunk;
                    Ok(Step::Continue)
                }
            },
            State::JpegMarker => {
                // Optional 0xFF fill bytes precede the marker code.
                let Some(&first) = buf.get(pos) else {
                    return Ok(Step::NeedMore);
                };
                if first != 0xFF {
                    return Err(self.malformed(pos));
                }
                let mut i = pos + 1;
                while buf.get(i) == Some(&0xFF) {
                    i += 1;
                }
                let Some(&marker) = buf.get(i) else {
                    return Ok(Step::NeedMore);
                };
                match marker {
                    0xD9 => Ok(Step::Done(i + 1)),
                    // Standalone markers without a length: RSTn, TEM.
                    0xD0..=0xD7 | 0x01 => {
                        self.pos = i + 1;
                        Ok(Step::Continue)
                    }
                    0x00 | 0xD8 => Err(self.malformed(i)),
                    _ => {
                        let Some(len_bytes) = buf.get(i + 1..i + 3) else {
                            return Ok(Step::NeedMore);
                        };
                        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                        if len < 2 {
                            return Err(self.malformed(i + 1));
                        }
                        let end = i + 1 + len;
                        if buf.len() < end {
                            return Ok(Step::NeedMore);
                        }
                        self.pos = end;
                        if marker == 0xDA {
                            self.state = State::JpegEntropy;
                        }
                        Ok(Step::Continue)
                    }
                }
            }
            State::JpegEntropy => {
                let mut i = pos;
                loop {
                    let Some(off) = buf[i..].iter().position(|&b| b == 0xFF) else {
                        self.pos = buf.len();
                        return Ok(Step::NeedMore);
                    };
                    let ff = i + off;
                    let Some(&next) = buf.get(ff + 1) else {
                        // Resume at the 0xFF once the next byte arrives.
                        self.pos = ff;
                        return Ok(Step::NeedMore);
                    };
                    match next {
                        // Byte stuffing and restart markers stay inside the scan.
                        0x00 | 0xD0..=0xD7 => i = ff + 2,
                        // A run of fill bytes: look at the last one.
                        0xFF => i = ff + 1,
                        _ => {
                            self.pos = ff;
                            self.state = State::JpegMarker;
                            return Ok(Step::Continue);
                        }
                    }
                }
            }
            State::PngChunk => {
                let Some(header) = buf.get(pos..pos + 8) else {
                    return Ok(Step::NeedMore);
                };
                let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                let kind = [header[4], header[5], header[6], header[7]];
                if len > 0x7FFF_FFFF || !kind.iter().all(u8::is_ascii_alphabetic) {
                    return Err(self.malformed(pos));
                }
                let end = pos + 12 + len as usize;
                if end > MAX_IMAGE_BYTES {
                    return Err(SplitError::TooLarge);
                }
                if buf.len() < end {
                    return Ok(Step::NeedMore);
                }
                if &kind == b"IEND" {
                    return Ok(Step::Done(end));
                }
                self.pos = end;
                Ok(Step::Continue)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A minimal but structurally complete JPEG whose DQT table contains `FF D9`, whose scan
    /// contains stuffing, a restart marker and fill bytes.
    fn tricky_jpeg(tag: u8) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        // APP0 with a payload containing FF D9.
        v.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x08, 0xFF, 0xD9, 0xFF, 0xD9, tag, 0x00]);
        // DQT containing FF D9 inside the table.
        v.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x06, 0x00, 0xFF, 0xD9, 0x01]);
        // SOS header (length 8) then entropy data.
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]);
        v.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0x00, tag]);
        v.extend_from_slice(&[0xFF, 0xD3, 0x77]);
        // Progressive-style second scan preceded by a DHT, then fill bytes before EOI.
        v.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x04, 0xFF, 0xD9]);
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 0x00, 0x99, 0xFF, 0x00]);
        v.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xD9]);
        v
    }

    fn tiny_png(tag: u8) -> Vec<u8> {
        let mut v = PNG_SIGNATURE.to_vec();
        let mut chunk = |kind: &[u8; 4], data: &[u8]| {
            v.extend_from_slice(&(data.len() as u32).to_be_bytes());
            v.extend_from_slice(kind);
            v.extend_from_slice(data);
            v.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]); // CRC is not checked
        };
        chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
        // Data containing "IEND" must not end the image.
        chunk(b"tEXt", &[b'I', b'E', b'N', b'D', tag, 0xFF, 0xD9]);
        chunk(b"IDAT", &[tag; 5]);
        chunk(b"IEND", &[]);
        v
    }

    /// Splits `stream` with every single split position and with every chunk size up to 17.
    fn check_all_splits(format: ImageFormat, images: &[Vec<u8>]) {
        let stream: Vec<u8> = images.concat();
        for cut in 0..=stream.len() {
            let mut s = ImageSplitter::new(format);
            let mut out = s.push(&stream[..cut]).unwrap();
            out.extend(s.push(&stream[cut..]).unwrap());
            assert_eq!(out, images, "cut at {cut}");
            s.finish().unwrap();
        }
        for size in 1..=17 {
            let mut s = ImageSplitter::new(format);
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                out.extend(s.push(chunk).unwrap());
            }
            assert_eq!(out, images, "chunk size {size}");
            s.finish().unwrap();
        }
    }

    #[test]
    fn jpeg_markers_are_parsed_not_searched() {
        let images = vec![tricky_jpeg(1), tricky_jpeg(2), tricky_jpeg(3)];
        check_all_splits(ImageFormat::Jpg, &images);
    }

    #[test]
    fn png_chunks() {
        let images = vec![tiny_png(1), tiny_png(2), tiny_png(3)];
        check_all_splits(ImageFormat::Png, &images);
    }

    #[test]
    fn truncated_image_is_reported() {
        let img = tricky_jpeg(1);
        for cut in 1..img.len() {
            let mut s = ImageSplitter::new(ImageFormat::Jpg);
            assert!(s.push(&img[..cut]).unwrap().is_empty());
            assert_eq!(s.finish(), Err(SplitError::Truncated(cut)), "cut {cut}");
        }
        let png = tiny_png(1);
        let mut s = ImageSplitter::new(ImageFormat::Png);
        assert!(s.push(&png[..png.len() - 1]).unwrap().is_empty());
        assert!(matches!(s.finish(), Err(SplitError::Truncated(_))));
        assert_eq!(ImageSplitter::new(ImageFormat::Png).finish(), Ok(()));
    }

    #[test]
    fn garbage_is_rejected() {
        let cases: &[(ImageFormat, &[u8])] = &[
            (ImageFormat::Jpg, b"hello"),
            (ImageFormat::Jpg, &[0x00]),
            (ImageFormat::Png, b"\x89PNX"),
            (ImageFormat::Png, &[0xFF, 0xD8]),
            // Marker expected but data found.
            (ImageFormat::Jpg, &[0xFF, 0xD8, 0x12]),
            // Segment length < 2.
            (ImageFormat::Jpg, &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]),
            // Bad PNG chunk type.
            (ImageFormat::Png, b"\x89PNG\r\n\x1a\n\0\0\0\x01I\0ND"),
        ];
        for (format, bytes) in cases {
            let mut s = ImageSplitter::new(*format);
            assert!(s.push(bytes).is_err(), "{format:?} {bytes:?}");
        }
        // Trailing garbage after a valid image.
        let mut s = ImageSplitter::new(ImageFormat::Jpg);
        let mut bytes = tricky_jpeg(1);
        bytes.extend_from_slice(b"junk");
        assert!(s.push(&bytes).is_err());
    }

    /// Runs real ffmpeg twice: image2pipe to stdout, and image2 into numbered files.
    fn ffmpeg_frames(format: ImageFormat) -> (Vec<u8>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let ext = format.extension();
        let common = |cmd: &mut Command| {
            cmd.args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
                .arg("testsrc2=size=64x48:rate=10")
                .args(["-frames:v", "3", "-c:v", format.codec()]);
            if format == ImageFormat::Jpg {
                cmd.args(["-pix_fmt", "yuvj420p", "-q:v", "2"]);
            }
        };
        let mut pipe = Command::new("ffmpeg");
        common(&mut pipe);
        let out = pipe.args(["-f", "image2pipe", "-"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut files = Command::new("ffmpeg");
        common(&mut files);
        let pattern = dir.path().join(format!("f%03d.{ext}"));
        let st = files.args(["-f", "image2"]).arg(&pattern).status().unwrap();
        assert!(st.success());
        let frames = (1..=3)
            .map(|i| std::fs::read(dir.path().join(format!("f{i:03}.{ext}"))).unwrap())
            .collect();
        (out.stdout, frames)
    }

    fn check_real(format: ImageFormat) {
        let (stream, frames) = ffmpeg_frames(format);
        assert_eq!(frames.len(), 3);
        assert_eq!(stream, frames.concat());
        // Every cut position for a two-chunk split.
        for cut in 0..=stream.len() {
            let mut s = ImageSplitter::new(format);
            let mut out = s.push(&stream[..cut]).unwrap();
            out.extend(s.push(&stream[cut..]).unwrap());
            assert_eq!(out, frames, "cut {cut}");
            s.finish().unwrap();
        }
        // Odd chunk sizes.
        for size in [1, 2, 3, 7, 64, 1000, 65536] {
            let mut s = ImageSplitter::new(format);
            let out: Vec<_> = stream
                .chunks(size)
                .flat_map(|c| s.push(c).unwrap())
                .collect();
            assert_eq!(out, frames, "size {size}");
            s.finish().unwrap();
        }
    }

    #[test]
    fn real_ffmpeg_jpeg_stream() {
        check_real(ImageFormat::Jpg);
    }

    #[test]
    fn real_ffmpeg_png_stream() {
        check_real(ImageFormat::Png);
    }
}
