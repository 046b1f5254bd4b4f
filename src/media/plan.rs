//! Pure planning: which timestamps to extract and how (seek per frame or one decoding pass).

use serde::{Deserialize, Serialize};

// The strategy's cost model, in CPU seconds; measured on the benchmark
// machine (docs/BENCHMARKS.md), H.264 in software.

/// Decoding one pixel on one core (1080p at about 230 frames a second).
pub const DECODE_SECS_PER_PIXEL: f64 = 2.1e-9;
/// One seek beyond its decoding: its part of a batched ffmpeg run
/// (start-up, opening the input, seeking) and encoding the image.
pub const SEEK_OVERHEAD_SECS: f64 = 0.03;
/// Keyframe distance assumed (the probe does not tell it): a seek decodes
/// from the keyframe before its timestamp, half of that on average.
pub const ASSUMED_KEYFRAME_SECS: f64 = 10.0;
/// Pixels a second assumed when the probe gives no frame rate (720p30).
pub const DEFAULT_PIXEL_RATE: f64 = 1280.0 * 720.0 * 30.0;

/// Output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpg,
    Png,
}

impl ImageFormat {
    /// File extension without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            ImageFormat::Jpg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    /// ffmpeg encoder name.
    pub fn codec(&self) -> &'static str {
        match self {
            ImageFormat::Jpg => "mjpeg",
            ImageFormat::Png => "png",
        }
    }
}

/// How frames are spaced over the video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spacing {
    /// One frame every `millis` milliseconds, starting at 0.
    Interval { millis: u32 },
    /// `n` frames evenly spread over the duration, starting at 0.
    Count(u32),
}

/// How the frames are extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One ffmpeg run with an input seek per timestamp (cheap when frames are sparse).
    SeekEach,
    /// One decoding pass with the `fps` filter (cheap when frames are dense).
    SinglePass,
}

/// The planned timestamps (seconds, ascending) and the chosen strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct FramePlan {
    pub timestamps: Vec<f64>,
    pub strategy: Strategy,
    pub spacing: Spacing,
}

impl FramePlan {
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }
}

/// Duration in whole milliseconds (at least 1 for any positive finite duration).
fn duration_millis(duration_secs: f64) -> Option<u64> {
    if !duration_secs.is_finite() || duration_secs <= 0.0 {
        return None;
    }
    // Clamp absurd values (more than ~292 million years) instead of overflowing.
    let ms = (duration_secs * 1000.0).round().min(u64::MAX as f64 / 4.0) as u64;
    Some(ms.max(1))
}

/// Plans the timestamps to extract.
///
/// * `Interval { millis }`: `t_k = k·millis` while `t_k < duration` (integer milliseconds).
/// * `Count(n)`: `t_k = k·duration/n` for `k in 0..n`.
///
/// At most `max_frames` timestamps. A non-finite or non-positive duration, a zero
/// interval, `Count(0)` or `max_frames == 0` give an empty plan. The strategy
/// is the cheaper one for a source of `pixel_rate` pixels a second (width ×
/// height × frame rate; `None`: unknown).
pub fn plan(
    duration_secs: f64,
    spacing: Spacing,
    max_frames: u32,
    pixel_rate: Option<f64>,
) -> FramePlan {
    let empty = |spacing| FramePlan {
        timestamps: Vec::new(),
        strategy: Strategy::SinglePass,
        spacing,
    };
    let Some(dur_ms) = duration_millis(duration_secs) else {
        return empty(spacing);
    };
    let cap = u64::from(max_frames);
    let timestamps: Vec<f64> = match spacing {
        Spacing::Interval { millis } if millis > 0 => {
            let step = u64::from(millis);
            let n = dur_ms.div_ceil(step).min(cap);
            (0..n).map(|k| (k * step) as f64 / 1000.0).collect()
        }
        Spacing::Count(n) if n > 0 => {
            let n_total = u64::from(n);
            (0..n_total.min(cap))
                .map(|k| (k as f64 * dur_ms as f64) / (n_total as f64 * 1000.0))
                .collect()
        }
        _ => return empty(spacing),
    };
    let strategy = choose_strategy(timestamps.len(), duration_secs, pixel_rate);
    FramePlan {
        timestamps,
        strategy,
        spacing,
    }
}

/// Seeks decode about half a keyframe distance each; one pass decodes it all.
fn choose_strategy(frames: usize, duration_secs: f64, pixel_rate: Option<f64>) -> Strategy {
    let rate = pixel_rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .unwrap_or(DEFAULT_PIXEL_RATE);
    let decode_per_sec = rate * DECODE_SECS_PER_PIXEL;
    let one_pass = duration_secs * decode_per_sec;
    let seeks = frames as f64 * (SEEK_OVERHEAD_SECS + ASSUMED_KEYFRAME_SECS / 2.0 * decode_per_sec);
    if seeks < one_pass {
        Strategy::SeekEach
    } else {
        Strategy::SinglePass
    }
}

/// The exact `fps` filter for a single-pass extraction of `plan`, e.g. `fps=1000/1500`.
///
/// The rate is a rational built from integer milliseconds, so output slot `k` of the filter is
/// exactly `plan.timestamps[k]`. The extractor appends `:round=up` so that slot `k` gets the
/// frame on screen at that time (the last frame with `pts <= t_k`); with the default
/// `round=near` it would be the frame half an interval later.
pub fn fps_filter(plan: &FramePlan, duration_secs: f64) -> String {
    match plan.spacing {
        Spacing::Interval { millis } => format!("fps=1000/{}", millis.max(1)),
        Spacing::Count(n) => {
            let dur_ms = duration_millis(duration_secs).unwrap_or(1);
            format!("fps={}/{}", u64::from(n.max(1)) * 1000, dur_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_counts() {
        // (duration, millis, max, expected count, expected last timestamp)
        let cases: &[(f64, u32, u32, usize, Option<f64>)] = &[
            (60.0, 1000, 1000, 60, Some(59.0)),
            (20.0, 5000, 1000, 4, Some(15.0)),
            (0.5, 1000, 1000, 1, Some(0.0)),
            (10.0, 1000, 1000, 10, Some(9.0)),
            (10.0, 2500, 1000, 4, Some(7.5)),
            (10.001, 2500, 1000, 5, Some(10.0)),
            (60.0, 1000, 7, 7, Some(6.0)),
            (3.0, 100, 1000, 30, Some(2.9)),
            (1.0, 1, 100_000, 1000, Some(0.999)),
            (0.0, 1000, 1000, 0, None),
            (-1.0, 1000, 1000, 0, None),
            (f64::NAN, 1000, 1000, 0, None),
            (f64::INFINITY, 1000, 1000, 0, None),
            (10.0, 0, 1000, 0, None),
            (10.0, 1000, 0, 0, None),
        ];
        for &(dur, millis, max, count, last) in cases {
            let p = plan(dur, Spacing::Interval { millis }, max, None);
            assert_eq!(
                p.timestamps.len(),
                count,
                "dur={dur} millis={millis} max={max}"
            );
            assert_eq!(
                p.timestamps.last().copied(),
                last,
                "dur={dur} millis={millis}"
            );
            assert_eq!(p.spacing, Spacing::Interval { millis });
            if count > 0 {
                assert_eq!(p.timestamps[0], 0.0);
            }
        }
    }

    #[test]
    fn interval_has_no_float_drift() {
        let p = plan(3.0, Spacing::Interval { millis: 100 }, 1000, None);
        for (k, t) in p.timestamps.iter().enumerate() {
            assert_eq!(*t, (k as f64 * 100.0) / 1000.0);
        }
        assert_eq!(p.timestamps[3], 0.3);
        assert!(p.timestamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn count_spacing() {
        let cases: &[(f64, u32, u32, usize)] = &[
            (60.0, 7, 1000, 7),
            (10.0, 7, 1000, 7),
            (10.0, 7, 3, 3),
            (0.5, 10, 1000, 10),
            (10.0, 0, 1000, 0),
            (0.0, 5, 1000, 0),
        ];
        for &(dur, n, max, count) in cases {
            let p = plan(dur, Spacing::Count(n), max, None);
            assert_eq!(p.timestamps.len(), count, "dur={dur} n={n} max={max}");
            for (k, t) in p.timestamps.iter().enumerate() {
                let expected = k as f64 * dur / f64::from(n);
                assert!(
                    (t - expected).abs() < 1e-9,
                    "k={k} t={t} expected={expected}"
                );
                assert!(*t < dur);
            }
        }
    }

    #[test]
    fn strategy_choice() {
        const P1080: f64 = 1920.0 * 1080.0 * 25.0;
        const P720: f64 = 1280.0 * 720.0 * 25.0;
        const TINY: f64 = 160.0 * 120.0 * 25.0;
        let every = |secs: u32| Spacing::Interval {
            millis: secs * 1000,
        };
        // (duration, spacing, pixel rate, expected)
        let cases: &[(f64, Spacing, Option<f64>, Strategy)] = &[
            // the benchmark's dense case: 60 s 720p, a frame a second
            (60.0, every(1), Some(P720), Strategy::SinglePass),
            // its sparse cases: 5 and 10 min 1080p, a frame every 20 s
            (300.0, every(20), Some(P1080), Strategy::SeekEach),
            (600.0, every(20), Some(P1080), Strategy::SeekEach),
            // a seek decodes ~5 s: frames 3 s apart are cheaper in one pass
            (
                600.0,
                Spacing::Count(200),
                Some(P1080),
                Strategy::SinglePass,
            ),
            (3600.0, every(60), None, Strategy::SeekEach),
            // tiny pictures decode so fast that a seek's overhead dominates
            (60.0, Spacing::Count(7), Some(TINY), Strategy::SinglePass),
            (60.0, Spacing::Count(7), Some(P1080), Strategy::SeekEach),
            // an unusable rate counts as unknown
            (60.0, Spacing::Count(7), Some(f64::NAN), Strategy::SeekEach),
        ];
        for &(dur, spacing, rate, expected) in cases {
            assert_eq!(
                plan(dur, spacing, 10_000, rate).strategy,
                expected,
                "{dur} {spacing:?} {rate:?}"
            );
        }
    }

    #[test]
    fn fps_filters() {
        let cases: &[(f64, Spacing, &str)] = &[
            (60.0, Spacing::Interval { millis: 1500 }, "fps=1000/1500"),
            (60.0, Spacing::Interval { millis: 1000 }, "fps=1000/1000"),
            (60.0, Spacing::Count(7), "fps=7000/60000"),
            (10.0, Spacing::Count(7), "fps=7000/10000"),
            (12.3456, Spacing::Count(3), "fps=3000/12346"),
        ];
        for &(dur, spacing, expected) in cases {
            let p = plan(dur, spacing, 1000, None);
            assert_eq!(fps_filter(&p, dur), expected);
        }
    }

    #[test]
    fn format_names_and_serde() {
        assert_eq!(ImageFormat::Jpg.extension(), "jpg");
        assert_eq!(ImageFormat::Png.extension(), "png");
        assert_eq!(ImageFormat::Jpg.codec(), "mjpeg");
        assert_eq!(ImageFormat::Png.codec(), "png");
        assert_eq!(serde_json::to_string(&ImageFormat::Jpg).unwrap(), "\"jpg\"");
        assert_eq!(
            serde_json::from_str::<ImageFormat>("\"png\"").unwrap(),
            ImageFormat::Png
        );
        assert_eq!(
            serde_json::to_string(&Strategy::SinglePass).unwrap(),
            "\"singlepass\""
        );
        assert_eq!(
            serde_json::to_string(&Strategy::SeekEach).unwrap(),
            "\"seekeach\""
        );
    }
}
