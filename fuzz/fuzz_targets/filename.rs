//! Any bytes as a client's file name: the kept name is never empty, never a
//! path, never longer than the limit, and cleaning it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use videoproject::domain::Filename;

fuzz_target!(|raw: &[u8]| {
    let text = String::from_utf8_lossy(raw);
    let name = Filename::clean(Some(&text));
    let s = name.as_str();
    assert!(!s.is_empty());
    assert!(s.chars().count() <= 255);
    assert!(!s.contains('/') && !s.contains('\\'));
    assert!(!s.chars().any(char::is_control));
    assert!(s != "." && s != "..");
    assert_eq!(Filename::clean(Some(s)), name);
});
