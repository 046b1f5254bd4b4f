//! Frame options of an upload, from multipart fields or query parameters.
//! Out-of-range and unknown values are refused, never clamped.

use serde::{Deserialize, Serialize};

use crate::media::{ImageFormat, Spacing};

/// The longest interval we accept: one frame a day is already absurd.
const MAX_INTERVAL_MILLIS: u64 = 86_400_000;
const MIN_INTERVAL_MILLIS: u64 = 40;
const MIN_WIDTH: u32 = 16;
const MAX_WIDTH: u32 = 8192;

/// A refused option, naming the field so a client can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    pub field: String,
    pub message: String,
}

impl OptionsError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Option values as the client sent them, before parsing.
#[derive(Debug, Default, Clone)]
pub struct RawOptions {
    fields: Vec<(String, String)>,
}

impl RawOptions {
    /// Records one field; a field given twice (say in the query and the form) is refused.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), OptionsError> {
        if !FrameOptions::FIELDS.contains(&name) {
            return Err(OptionsError::new(
                name,
                format!(
                    "unknown option `{name}` (known: {})",
                    FrameOptions::FIELDS.join(", ")
                ),
            ));
        }
        if self.get(name).is_some() {
            return Err(OptionsError::new(
                name,
                format!("option `{name}` is given twice"),
            ));
        }
        self.fields.push((name.to_owned(), value.trim().to_owned()));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the client asked for, as stored with the job and shown in the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameOptions {
    /// Seconds between frames, when frames are spaced by time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    /// Number of evenly spaced frames, when frames are counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    pub max_frames: u32,
    pub format: ImageFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
}

impl FrameOptions {
    pub const FIELDS: [&'static str; 5] = ["interval", "count", "max_frames", "format", "width"];

    /// Parses the raw fields; `frames_cap` is the node's hard cap and default `max_frames`.
    pub fn parse(raw: &RawOptions, frames_cap: u32) -> Result<Self, OptionsError> {
        let err = |field: &str, m: String| Err(OptionsError::new(field, m));
        let max_frames = match raw.get("max_frames") {
            None => frames_cap,
            Some(v) => match parse_int(v) {
                Some(n) if (1..=u64::from(frames_cap)).contains(&n) => n as u32,
                _ => {
                    return err(
                        "max_frames",
                        format!("max_frames must be a whole number from 1 to {frames_cap}"),
                    );
                }
            },
        };
        let (interval, count) = match (raw.get("interval"), raw.get("count")) {
            (Some(_), Some(_)) => {
                return err("count", "give either interval or count, not both".into());
            }
            (None, Some(v)) => match parse_int(v) {
                Some(n) if (1..=u64::from(max_frames)).contains(&n) => (None, Some(n as u32)),
                _ => {
                    return err(
                        "count",
                        format!("count must be a whole number from 1 to max_frames ({max_frames})"),
                    );
                }
            },
            (Some(v), None) => match parse_millis(v) {
                Some(ms) if (MIN_INTERVAL_MILLIS..=MAX_INTERVAL_MILLIS).contains(&ms) => {
                    (Some(ms as f64 / 1000.0), None)
                }
                _ => {
                    return err(
                        "interval",
                        "interval must be seconds from 0.04 to 86400, with at most 3 decimals"
                            .into(),
                    );
                }
            },
            (None, None) => (Some(1.0), None),
        };
        let format = match raw.get("format") {
            None | Some("jpg") => ImageFormat::Jpg,
            Some("png") => ImageFormat::Png,
            Some(other) => {
                return err(
                    "format",
                    format!("format must be jpg or png, not `{other}`"),
                );
            }
        };
        let width = match raw.get("width") {
            None => None,
            Some(v) => match parse_int(v) {
                Some(w) if (u64::from(MIN_WIDTH)..=u64::from(MAX_WIDTH)).contains(&w) => {
                    Some(w as u32)
                }
                _ => {
                    return err(
                        "width",
                        format!(
                            "width must be a whole number of pixels from {MIN_WIDTH} to {MAX_WIDTH}"
                        ),
                    );
                }
            },
        };
        Ok(Self {
            interval,
            count,
            max_frames,
            format,
            width,
        })
    }

    /// The spacing rule the frame planner works with.
    pub fn spacing(&self) -> Spacing {
        match (self.count, self.interval) {
            (Some(n), _) => Spacing::Count(n),
            (None, Some(secs)) => Spacing::Interval {
                millis: (secs * 1000.0).round() as u32,
            },
            (None, None) => Spacing::Interval { millis: 1000 },
        }
    }
}

/// The options stored with a job (the `options` column). Every version of
/// this service wrote [`FrameOptions`] in the same shape; a row made by hand
/// (an operator, a fixture) may hold anything, which is kept as found: shown
/// as it is, and refused by the processor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StoredOptions {
    Frames(FrameOptions),
    Unreadable(serde_json::Value),
}

impl StoredOptions {
    /// The options a job runs with, or why they cannot be read.
    pub fn frames(&self) -> Result<&FrameOptions, serde_json::Error> {
        match self {
            StoredOptions::Frames(options) => Ok(options),
            // the same words as reading them gives
            StoredOptions::Unreadable(value) => Err(FrameOptions::deserialize(value)
                .err()
                .unwrap_or_else(|| serde::de::Error::custom("not frame options"))),
        }
    }
}

impl From<FrameOptions> for StoredOptions {
    fn from(options: FrameOptions) -> Self {
        StoredOptions::Frames(options)
    }
}

/// Through a JSON value, whose keys are sorted: the same bytes as when the
/// column was read as plain JSON.
impl Serialize for StoredOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StoredOptions::Frames(options) => serde_json::to_value(options)
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
            StoredOptions::Unreadable(value) => value.serialize(serializer),
        }
    }
}

/// The stored JSON, compact (the operator's view of a job).
impl std::fmt::Display for StoredOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => Err(std::fmt::Error),
        }
    }
}

fn parse_int(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Decimal seconds to whole milliseconds, exactly: `0.04` is 40, `1.0005` is refused.
fn parse_millis(v: &str) -> Option<u64> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if whole.len() > 6
        || frac.len() > 3
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_ms: u64 = format!("{frac:0<3}").parse().ok()?;
    Some(whole * 1000 + frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: &[(&str, &str)]) -> Result<FrameOptions, OptionsError> {
        let mut raw = RawOptions::default();
        for (k, v) in fields {
            raw.insert(k, v)?;
        }
        FrameOptions::parse(&raw, 10_000)
    }

    #[test]
    fn stored_options_read_as_today_and_keep_what_they_cannot_read() {
        let stored = r#"{"format":"png","interval":0.5,"max_frames":20,"width":320}"#;
        let read: StoredOptions = serde_json::from_str(stored).unwrap();
        let options = parse(&[
            ("interval", "0.5"),
            ("format", "png"),
            ("width", "320"),
            ("max_frames", "20"),
        ])
        .unwrap();
        assert_eq!(read, StoredOptions::Frames(options.clone()));
        assert_eq!(read.frames().unwrap(), &options);
        // written back in the same shape
        assert_eq!(read.to_string(), stored);

        let odd: StoredOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(odd, StoredOptions::Unreadable(serde_json::json!({})));
        assert_eq!(odd.to_string(), "{}");
        let why = odd.frames().unwrap_err().to_string();
        assert!(why.contains("missing field"), "{why}");
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.spacing(), Spacing::Interval { millis: 1000 });
        assert_eq!(o.max_frames, 10_000);
        assert_eq!(o.format, ImageFormat::Jpg);
        assert_eq!(o.width, None);
    }

    #[test]
    fn accepted_values() {
        let table: &[(&[(&str, &str)], Spacing)] = &[
            (&[("interval", "5")], Spacing::Interval { millis: 5000 }),
            (&[("interval", "0.04")], Spacing::Interval { millis: 40 }),
            (&[("interval", ".5")], Spacing::Interval { millis: 500 }),
            (&[("interval", "2.125")], Spacing::Interval { millis: 2125 }),
            (&[("count", "7")], Spacing::Count(7)),
            (&[("count", "10"), ("max_frames", "10")], Spacing::Count(10)),
        ];
        for (fields, spacing) in table {
            assert_eq!(parse(fields).unwrap().spacing(), *spacing, "{fields:?}");
        }
        let o = parse(&[("format", "png"), ("width", "320"), ("max_frames", "5")]).unwrap();
        assert_eq!(
            (o.format, o.width, o.max_frames),
            (ImageFormat::Png, Some(320), 5)
        );
    }

    #[test]
    fn refused_values() {
        let table: &[&[(&str, &str)]] = &[
            &[("interval", "0.039")],
            &[("interval", "0")],
            &[("interval", "-1")],
            &[("interval", "1.0001")],
            &[("interval", "abc")],
            &[("interval", "NaN")],
            &[("interval", "1e3")],
            &[("interval", "86400.001")],
            &[("interval", ".")],
            &[("count", "0")],
            &[("count", "2.5")],
            &[("count", "11"), ("max_frames", "10")],
            &[("count", "3"), ("interval", "1")],
            &[("max_frames", "0")],
            &[("max_frames", "10001")],
            &[("format", "gif")],
            &[("format", "JPG")],
            &[("width", "8")],
            &[("width", "99999")],
            &[("width", "-320")],
            &[("colour", "red")],
            &[("count", "3"), ("count", "4")],
        ];
        for fields in table {
            assert!(parse(fields).is_err(), "{fields:?} accepted");
        }
    }

    #[test]
    fn stored_form_round_trips() {
        let o = parse(&[("interval", "2.5"), ("width", "640")]).unwrap();
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["interval"], 2.5);
        assert!(json.get("count").is_none());
        assert_eq!(serde_json::from_value::<FrameOptions>(json).unwrap(), o);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A field name: mostly known ones, sometimes anything.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => proptest::sample::select(FrameOptions::FIELDS.to_vec()).prop_map(String::from),
                1 => ".{0,12}",
            ]
        }

        /// A value: numbers of every shape, words, anything.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[0-9]{1,7}(\\.[0-9]{0,4})?",
                "-?[0-9]{0,3}(e[0-9])?",
                "(jpg|png|gif|JPG| jpg )",
                ".{0,16}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Whatever is sent, parsing answers (never panics), and what it
            /// accepts is within the documented ranges, never clamped.
            #[test]
            fn accepted_options_are_in_range(
                fields in proptest::collection::vec((name(), value()), 0..6),
                cap in 1u32..20_000,
            ) {
                let mut raw = RawOptions::default();
                for (k, v) in &fields {
                    // an unknown or repeated field is refused by its name
                    if let Err(e) = raw.insert(k, v) {
                        prop_assert_eq!(&e.field, k);
                        return Ok(());
                    }
                }
                match FrameOptions::parse(&raw, cap) {
                    Ok(o) => {
                        prop_assert!((1..=cap).contains(&o.max_frames));
                        prop_assert!(o.interval.is_some() != o.count.is_some());
                        if let Some(n) = o.count {
                            prop_assert!(n >= 1 && n <= o.max_frames);
                        }
                        if let Some(i) = o.interval {
                            prop_assert!((0.04..=86_400.0).contains(&i));
                        }
                        if let Some(w) = o.width {
                            prop_assert!((MIN_WIDTH..=MAX_WIDTH).contains(&w));
                        }
                        // what is stored reads back as the same options
                        let json = serde_json::to_value(&o).unwrap();
                        prop_assert_eq!(serde_json::from_value::<FrameOptions>(json).unwrap(), o);
                    }
                    Err(e) => {
                        prop_assert!(FrameOptions::FIELDS.contains(&e.field.as_str()));
                        prop_assert!(!e.message.is_empty());
                    }
                }
            }

            /// An interval of whole milliseconds in range is read exactly.
            #[test]
            fn intervals_are_exact(ms in MIN_INTERVAL_MILLIS..=MAX_INTERVAL_MILLIS) {
                let text = format!("{}.{:03}", ms / 1000, ms % 1000);
                let o = parse(&[("interval", &text)]).unwrap();
                prop_assert_eq!(o.spacing(), Spacing::Interval { millis: ms as u32 });
            }
        }
    }
}
