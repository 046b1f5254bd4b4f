//! Any sequence of option fields: parsing never panics, and what it accepts
//! is inside the documented ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use videoproject::domain::{FrameOptions, RawOptions};

const CAP: u32 = 10_000;

fuzz_target!(|fields: Vec<(String, String)>| {
    let mut raw = RawOptions::default();
    for (name, value) in &fields {
        if raw.insert(name, value).is_err() {
            return;
        }
    }
    if let Ok(options) = FrameOptions::parse(&raw, CAP) {
        assert!((1..=CAP).contains(&options.max_frames));
        if let Some(count) = options.count {
            assert!(count >= 1 && count <= options.max_frames);
        }
        if let Some(interval) = options.interval {
            assert!((0.04..=86_400.0).contains(&interval));
        }
        if let Some(width) = options.width {
            assert!((16..=8192).contains(&width));
        }
    }
});
