//! Small pictures of frames. ffmpeg makes them beside the frames, from the
//! same decoded pictures ([`made_by_ffmpeg`] only reads their sizes). When
//! it did not, [`thumbnail`] makes one from the frame as cheaply as the
//! frame allows: a JPEG is decoded already shrunk (the decoder's DCT
//! scaling: 1/2, 1/4 or 1/8 of the work), then area-averaged to at most
//! [`MAX_WIDTH`] and encoded as a small JPEG. A PNG has no such shortcut:
//! it is decoded whole.

use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;

use super::plan::ImageFormat;

/// The widest a thumbnail is.
pub const MAX_WIDTH: u32 = 320;
/// Thumbnails are glanced at, not studied: a few KB each.
const QUALITY: u8 = 70;

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("the frame could not be decoded: {0}")]
    Decode(String),
    #[error("the thumbnail could not be encoded: {0}")]
    Encode(String),
}

/// An 8-bit RGB picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row by row.
    pub rgb: Vec<u8>,
}

impl Picture {
    /// A picture of one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let pixels = width as usize * height as usize;
        Self {
            width,
            height,
            rgb: rgb.repeat(pixels),
        }
    }

    fn at(&self, x: u32, y: u32) -> usize {
        (y as usize * self.width as usize + x as usize) * 3
    }

    /// Copies `other` into this picture with its top-left corner at (`x`, `y`),
    /// clipped to this picture.
    pub fn paste(&mut self, other: &Picture, x: u32, y: u32) {
        let w = other.width.min(self.width.saturating_sub(x));
        for row in 0..other.height.min(self.height.saturating_sub(y)) {
            let from = other.at(0, row);
            let to = self.at(x, y + row);
            let n = w as usize * 3;
            self.rgb[to..to + n].copy_from_slice(&other.rgb[from..from + n]);
        }
    }

    /// Sets one pixel; outside the picture, nothing.
    pub fn set(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = self.at(x, y);
            self.rgb[i..i + 3].copy_from_slice(&rgb);
        }
    }

    /// Shrunk to at most `max_width` wide (and at most `max_width`
    /// tall), keeping the aspect ratio; each pixel the mean of the
    /// source pixels it covers. Never enlarged.
    pub fn shrink_to(&self, max_width: u32) -> Picture {
        let (width, height) = fit(self.width, self.height, max_width);
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            let (y0, y1) = span(y, height, self.height);
            for x in 0..width {
                let (x0, x1) = span(x, width, self.width);
                let mut sum = [0u32; 3];
                for sy in y0..y1 {
                    let row = self.at(x0, sy);
                    for px in self.rgb[row..row + (x1 - x0) as usize * 3].chunks_exact(3) {
                        sum[0] += u32::from(px[0]);
                        sum[1] += u32::from(px[1]);
                        sum[2] += u32::from(px[2]);
                    }
                }
                let n = (x1 - x0) * (y1 - y0);
                rgb.extend(sum.map(|s| ((s + n / 2) / n) as u8));
            }
        }
        Picture { width, height, rgb }
    }

    /// As a baseline JPEG.
    pub fn to_jpeg(&self, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
        let mut out = Vec::with_capacity(self.rgb.len() / 8);
        JpegEncoder::new_with_quality(&mut out, quality)
            .write_image(
                &self.rgb,
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
        Ok(out)
    }
}

/// The size of a `width`×`height` picture fitted within `max`×`max`,
/// aspect kept, at least 1×1; never larger than it was.
pub fn fit(width: u32, height: u32, max: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max || longest == 0 {
        return (width.max(1), height.max(1));
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max) + u64::from(longest) / 2) / u64::from(longest)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

/// The source pixels `[from, to)` that target pixel `i` of `out` covers in `len`.
fn span(i: u32, out: u32, len: u32) -> (u32, u32) {
    let from = (u64::from(i) * u64::from(len) / u64::from(out)) as u32;
    let to = ((u64::from(i) + 1) * u64::from(len) / u64::from(out)) as u32;
    (from, to.max(from + 1).min(len))
}

/// One frame's thumbnail.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// The thumbnail as a JPEG.
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The frame's own size.
    pub frame_width: u32,
    pub frame_height: u32,
}

/// The thumbnail of a frame in `format`: at most [`MAX_WIDTH`] wide.
pub fn thumbnail(frame: &[u8], format: ImageFormat) -> Result<Thumbnail, ThumbnailError> {
    let (full, picture) = match format {
        ImageFormat::Jpg => decode_jpeg_scaled(frame, MAX_WIDTH)?,
        ImageFormat::Png => decode_png(frame)?,
    };
    let picture = picture.shrink_to(MAX_WIDTH);
    Ok(Thumbnail {
        jpeg: picture.to_jpeg(QUALITY)?,
        width: picture.width,
        height: picture.height,
        frame_width: full.0,
        frame_height: full.1,
    })
}

/// The thumbnail ffmpeg made of `frame` (a JPEG), checked: only the
/// headers of both are read.
pub fn made_by_ffmpeg(
    jpeg: Vec<u8>,
    frame: &[u8],
    format: ImageFormat,
) -> Result<Thumbnail, ThumbnailError> {
    let (width, height) = dimensions(&jpeg, ImageFormat::Jpg)?;
    let (frame_width, frame_height) = dimensions(frame, format)?;
    if width > MAX_WIDTH.min(frame_width) || height > MAX_WIDTH.min(frame_height) {
        return Err(ThumbnailError::Decode(format!(
            "a thumbnail of {width}×{height} is too large"
        )));
    }
    Ok(Thumbnail {
        jpeg,
        width,
        height,
        frame_width,
        frame_height,
    })
}

/// An image's size, from its header.
fn dimensions(data: &[u8], format: ImageFormat) -> Result<(u32, u32), ThumbnailError> {
    let format = match format {
        ImageFormat::Jpg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
    };
    image::ImageReader::with_format(std::io::Cursor::new(data), format)
        .into_dimensions()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))
}

/// A thumbnail's picture, decoded as small as the DCT scaling allows
/// while it stays at least `at_least` wide or tall.
pub fn decode(jpeg: &[u8], at_least: u32) -> Result<Picture, ThumbnailError> {
    decode_jpeg_scaled(jpeg, at_least).map(|(_, picture)| picture)
}

/// Decodes a JPEG at the smallest DCT scale still at least `at_least`
/// wide or tall; its full size and the picture.
fn decode_jpeg_scaled(data: &[u8], at_least: u32) -> Result<((u32, u32), Picture), ThumbnailError> {
    let bad = |e: jpeg_decoder::Error| ThumbnailError::Decode(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.read_info().map_err(bad)?;
    let info = decoder
        .info()
        .ok_or_else(|| ThumbnailError::Decode("no header".into()))?;
    let full = (u32::from(info.width), u32::from(info.height));
    let (want_w, want_h) = fit(full.0, full.1, at_least);
    let (width, height) = decoder
        .scale(
            want_w.min(u32::from(u16::MAX)) as u16,
            want_h.min(u32::from(u16::MAX)) as u16,
        )
        .map_err(bad)?;
    let pixels = decoder.decode().map_err(bad)?;
    let (width, height) = (u32::from(width), u32::from(height));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|l| [l[0], l[0], l[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                [0, 1, 2].map(|c| (u16::from(p[c]) * k / 255) as u8)
            })
            .collect(),
    };
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(ThumbnailError::Decode("unexpected picture size".into()));
    }
    Ok((full, Picture { width, height, rgb }))
}

/// Decodes a PNG whole (the format has no cheaper way to a small picture).
fn decode_png(data: &[u8]) -> Result<((u32, u32), Picture), ThumbnailError> {
    let decoded = image::load_from_memory_with_format(data, image::ImageFormat::Png)
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?
        .into_rgb8();
    let (width, height) = decoded.dimensions();
    Ok((
        (width, height),
        Picture {
            width,
            height,
            rgb: decoded.into_raw(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with a gradient, to encode as a frame.
    pub(crate) fn gradient(width: u32, height: u32) -> Picture {
        let mut p = Picture::filled(width, height, [0, 0, 0]);
        for y in 0..height {
            for x in 0..width {
                p.set(
                    x,
                    y,
                    [(x * 255 / width) as u8, (y * 255 / height) as u8, 128],
                );
            }
        }
        p
    }

    fn png(p: &Picture) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&p.rgb, p.width, p.height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn fitting_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit(1920, 1080, 320), (320, 180));
        assert_eq!(fit(1080, 1920, 320), (180, 320));
        assert_eq!(fit(320, 240, 320), (320, 240));
        assert_eq!(fit(100, 50, 320), (100, 50));
        assert_eq!(fit(4000, 1, 320), (320, 1));
        assert_eq!(fit(0, 0, 320), (1, 1));
    }

    #[test]
    fn shrinking_averages_what_each_pixel_covers() {
        let mut p = Picture::filled(4, 2, [0, 0, 0]);
        p.set(0, 0, [200, 100, 40]);
        p.set(1, 1, [200, 100, 40]);
        let small = p.shrink_to(2);
        assert_eq!((small.width, small.height), (2, 1));
        // the left 2×2 block holds two coloured pixels of four
        assert_eq!(&small.rgb[..3], &[100, 50, 20]);
        assert_eq!(&small.rgb[3..], &[0, 0, 0]);
        assert_eq!(p.shrink_to(10), p, "never enlarged");
    }

    #[test]
    fn a_jpeg_frame_is_decoded_scaled_and_its_thumbnail_is_small() {
        let frame = gradient(1280, 720).to_jpeg(90).unwrap();
        let (full, scaled) = decode_jpeg_scaled(&frame, 320).unwrap();
        assert_eq!(full, (1280, 720));
        assert_eq!((scaled.width, scaled.height), (320, 180), "1/4 DCT scale");
        let t = thumbnail(&frame, ImageFormat::Jpg).unwrap();
        assert_eq!((t.frame_width, t.frame_height), (1280, 720));
        assert_eq!((t.width, t.height), (320, 180));
        assert!(t.jpeg.len() < 16 * 1024, "{} bytes", t.jpeg.len());
        let back = image::load_from_memory(&t.jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (320, 180));
    }

    #[test]
    fn a_png_frame_is_decoded_whole_then_shrunk() {
        let frame = png(&gradient(640, 480));
        let t = thumbnail(&frame, ImageFormat::Png).unwrap();
        assert_eq!((t.frame_width, t.frame_height), (640, 480));
        assert_eq!((t.width, t.height), (320, 240));
        // the gradient survives: left dark, right bright in red
        let picture = decode(&t.jpeg, MAX_WIDTH).unwrap();
        assert_eq!((picture.width, picture.height), (320, 240));
        let left = picture.rgb[0];
        let right = picture.rgb[(319 * 3) as usize];
        assert!(left < 10 && right > 240, "{left} {right}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for format in [ImageFormat::Jpg, ImageFormat::Png] {
            assert!(matches!(
                thumbnail(b"not an image", format),
                Err(ThumbnailError::Decode(_))
            ));
        }
        let good = gradient(64, 32).to_jpeg(80).unwrap();
        assert!(made_by_ffmpeg(b"junk".to_vec(), &good, ImageFormat::Jpg).is_err());
        assert!(made_by_ffmpeg(good.clone(), b"junk", ImageFormat::Jpg).is_err());
    }

    #[test]
    fn ffmpeg_s_thumbnail_is_taken_as_it_is_with_both_sizes_read_from_headers() {
        let frame = png(&gradient(640, 360));
        let small = gradient(320, 180).to_jpeg(70).unwrap();
        let t = made_by_ffmpeg(small.clone(), &frame, ImageFormat::Png).unwrap();
        assert_eq!(t.jpeg, small);
        assert_eq!((t.width, t.height), (320, 180));
        assert_eq!((t.frame_width, t.frame_height), (640, 360));
        // larger than a thumbnail is: refused (its frame is used instead)
        let big = gradient(640, 360).to_jpeg(70).unwrap();
        let frame = gradient(1280, 720).to_jpeg(70).unwrap();
        assert!(made_by_ffmpeg(big, &frame, ImageFormat::Jpg).is_err());
    }
}
