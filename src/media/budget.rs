//! What one job may cost. Checked before it runs, from the probe and the
//! plan: the source's picture size, and the pixels of every frame it would
//! write. Held to while it runs: the zip's bytes (absolute, and relative to
//! the upload), the media tools' memory (`limits`), and a time limit from
//! what the file really holds rather than what its header declares. A job
//! that runs out of its budget fails for good, with its reason, and is not
//! retried: a retry would spend the same again.

use super::{FramePlan, MediaInfo, Spacing};

/// The limits, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Pixels of one source picture (width × height).
    pub source_pixels: u64,
    /// Pixels of every frame written, together (frames × output width × height).
    pub output_pixels: u64,
    /// Bytes of one zip.
    pub zip_bytes: u64,
    /// Bytes of zip per byte uploaded (above [`ZIP_FLOOR`]).
    pub zip_per_upload_byte: u64,
}

impl Budget {
    /// What one job may cost, from the tuning.
    pub fn of(tuning: &crate::settings::Tuning) -> Self {
        Self {
            source_pixels: tuning.max_source_pixels,
            output_pixels: tuning.max_output_pixels,
            zip_bytes: tuning.max_zip_bytes,
            zip_per_upload_byte: tuning.zip_bytes_per_upload_byte,
        }
    }
}

/// A zip may always be this large, whatever its upload's size.
pub const ZIP_FLOOR: u64 = 256 * 1024 * 1024;
/// The least bytes a second of real video takes: a file holds at most its
/// size at this rate, whatever duration its header declares.
const MIN_BYTES_PER_SECOND: f64 = 1024.0;

/// Why a job is over its budget; the message is for the video's owner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverBudget {
    #[error(
        "the video's pictures are {width}×{height} pixels; at most {limit} megapixels a picture are taken"
    )]
    SourcePixels { width: u32, height: u32, limit: u64 },
    #[error(
        "{frames} frames of {width}×{height} pixels would be {gigapixels:.1} gigapixels, more than the {limit:.1} a video may make; ask for fewer frames (interval, count or max_frames) or a smaller width"
    )]
    OutputPixels {
        frames: u64,
        width: u64,
        height: u64,
        gigapixels: f64,
        limit: f64,
    },
    #[error("the frames grew past the {limit} bytes one video's zip may take")]
    ZipBytes { limit: u64 },
    #[error("processing ran out of its {secs} s time budget")]
    Time { secs: u64 },
}

impl OverBudget {
    /// The reason as a sentence for the video's owner.
    pub fn sentence(&self) -> String {
        let text = self.to_string();
        let mut chars = text.chars();
        let first: String = chars
            .next()
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default();
        format!("{first}{}.", chars.as_str())
    }
}

impl Budget {
    /// Plans the frames of a video probed as `info` and checks what they
    /// would cost: the one place that decides before a job runs, at upload
    /// and again before each run.
    pub fn plan(
        &self,
        info: &MediaInfo,
        spacing: Spacing,
        max_frames: u32,
        out_width: Option<u32>,
    ) -> Result<FramePlan, OverBudget> {
        let plan = super::plan(info.duration_secs, spacing, max_frames, info.pixel_rate());
        self.check(
            info.video.width,
            info.video.height,
            plan.timestamps.len(),
            out_width,
        )?;
        Ok(plan)
    }

    /// Checks a job before it runs: `frames` frames from pictures of
    /// `width` × `height`, scaled to `out_width` when given.
    pub fn check(
        &self,
        width: u32,
        height: u32,
        frames: usize,
        out_width: Option<u32>,
    ) -> Result<(), OverBudget> {
        let source = u64::from(width) * u64::from(height);
        if source > self.source_pixels {
            return Err(OverBudget::SourcePixels {
                width,
                height,
                limit: self.source_pixels / 1_000_000,
            });
        }
        let (w, h) = output_size(width, height, out_width);
        let total = (frames as u64).saturating_mul(w * h);
        if total > self.output_pixels {
            return Err(OverBudget::OutputPixels {
                frames: frames as u64,
                width: w,
                height: h,
                gigapixels: total as f64 / 1e9,
                limit: self.output_pixels as f64 / 1e9,
            });
        }
        Ok(())
    }

    /// The most bytes the zip of an upload of `upload_bytes` may take.
    pub fn zip_limit(&self, upload_bytes: u64) -> u64 {
        upload_bytes
            .saturating_mul(self.zip_per_upload_byte)
            .max(ZIP_FLOOR)
            .min(self.zip_bytes)
    }
}

/// A frame's size once scaled to `out_width` (the height keeps the aspect
/// ratio); the source's without one.
fn output_size(width: u32, height: u32, out_width: Option<u32>) -> (u64, u64) {
    match out_width.filter(|w| *w > 0 && width > 0) {
        Some(w) => (
            u64::from(w),
            (u64::from(height) * u64::from(w)).div_ceil(u64::from(width)),
        ),
        None => (u64::from(width), u64::from(height)),
    }
}

/// Seconds of video a file of `size_bytes` can really hold: the duration its
/// header declares, but no more than its bytes at a kibibyte a second.
pub fn content_secs(declared: f64, size_bytes: u64) -> f64 {
    declared.min(size_bytes as f64 / MIN_BYTES_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Budget = Budget {
        source_pixels: 33_177_600,
        output_pixels: 25_000_000_000,
        zip_bytes: 16 << 30,
        zip_per_upload_byte: 100,
    };

    #[test]
    fn the_tiny_file_bombs_are_refused_before_they_run() {
        // 10 000 frames of 4096² (a 50 KB file declaring 40 000 s)
        assert!(matches!(
            B.check(4096, 4096, 10_000, None),
            Err(OverBudget::OutputPixels { frames: 10_000, .. })
        ));
        // one picture of 8192²
        assert!(matches!(
            B.check(8192, 8192, 1, None),
            Err(OverBudget::SourcePixels { .. })
        ));
    }

    #[test]
    fn what_people_upload_fits() {
        // an hour of 1080p at one frame a second; 10 000 frames of 1080p
        assert_eq!(B.check(1920, 1080, 3600, None), Ok(()));
        assert_eq!(B.check(1920, 1080, 10_000, None), Ok(()));
        // 4K, scaled down to 1280 wide
        assert_eq!(B.check(3840, 2160, 10_000, Some(1280)), Ok(()));
        // 8K pictures are taken
        assert_eq!(B.check(7680, 4320, 10, None), Ok(()));
    }

    #[test]
    fn a_smaller_width_makes_a_job_fit() {
        assert!(B.check(4096, 4096, 2_000, None).is_err());
        assert_eq!(B.check(4096, 4096, 2_000, Some(640)), Ok(()));
    }

    #[test]
    fn the_zip_limit_follows_the_upload_between_a_floor_and_a_ceiling() {
        assert_eq!(B.zip_limit(50_000), ZIP_FLOOR);
        assert_eq!(B.zip_limit(10 << 20), 1000 << 20);
        assert_eq!(B.zip_limit(1 << 30), 16 << 30);
    }

    #[test]
    fn a_file_holds_no_more_video_than_its_bytes_allow() {
        // 50 KB declaring 40 000 s: at most ~49 s
        assert!(content_secs(40_000.0, 50_000) < 50.0);
        // an honest 20 MB hour of screen recording
        assert_eq!(content_secs(3600.0, 20_000_000), 3600.0);
    }
}
