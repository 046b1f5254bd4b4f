//! Translations: one flat JSON file per language under `locales/`
//! (`error.<code>`, `email.<kind>.<part>`, `page.<area>.<what>`), built into
//! the binary. The emails look their words up here; the page fetches the
//! same files (`/assets/locales/<tag>.json`). Placeholders are `{name}`;
//! a plural is `<key>.one` / `<key>.other`, chosen by a `count`.
//! Dates and numbers are written the way each language writes them.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::domain::Locale;

pub const EN_JSON: &[u8] = include_bytes!("../locales/en.json");
pub const PT_BR_JSON: &[u8] = include_bytes!("../locales/pt-BR.json");

/// A language's file as served to the page.
pub fn file(locale: Locale) -> &'static [u8] {
    match locale {
        Locale::En => EN_JSON,
        Locale::PtBr => PT_BR_JSON,
    }
}

type Catalog = BTreeMap<String, String>;

/// The files, parsed once. A file that does not parse is empty here (and
/// fails the unit tests long before it ships): words fall back to English,
/// then to the key.
static CATALOGS: LazyLock<[Catalog; 2]> =
    LazyLock::new(|| Locale::ALL.map(|l| serde_json::from_slice(file(l)).unwrap_or_default()));

fn catalog(locale: Locale) -> &'static Catalog {
    &CATALOGS[locale as usize]
}

/// The words of `key` in `locale` (English when that language lacks
/// them, the key itself when nobody has them).
pub fn lookup(locale: Locale, key: &str) -> &str {
    catalog(locale)
        .get(key)
        .or_else(|| catalog(Locale::En).get(key))
        .map_or(key, String::as_str)
}

/// The key of `key`'s plural form for `count`: `<key>.one` or `<key>.other`
/// where the language has them, else `key`.
fn plural_key(locale: Locale, key: &str, count: i64) -> String {
    // CLDR: English "one" is 1 alone; Portuguese's is 0 and 1
    let one = match locale {
        Locale::En => count == 1,
        Locale::PtBr => count == 0 || count == 1,
    };
    let form = format!("{key}.{}", if one { "one" } else { "other" });
    if catalog(locale).contains_key(&form) || catalog(Locale::En).contains_key(&form) {
        form
    } else {
        key.to_owned()
    }
}

/// `key` in `locale` with its placeholders filled from `args`; a `count`
/// among them picks the plural form and is written as a number of the
/// language.
pub fn translate(locale: Locale, key: &str, count: Option<i64>, args: &[(&str, &str)]) -> String {
    let key = match count {
        Some(n) => plural_key(locale, key, n),
        None => key.to_owned(),
    };
    let count_text = count.map(|n| number(locale, n));
    let mut out = String::new();
    let mut rest = lookup(locale, &key);
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name = after.find('}').map(|close| &after[..close]);
        let value = name.and_then(|name| match name {
            "count" => count_text.as_deref(),
            _ => args.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
        });
        match (name, value) {
            (Some(name), Some(value)) => {
                out.push_str(value);
                rest = &after[name.len() + 1..];
            }
            // not a placeholder we were given: kept as written
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// An integer as `locale` writes it: `1,234` or `1.234`.
pub fn number(locale: Locale, n: i64) -> String {
    let separator = match locale {
        Locale::En => ',',
        Locale::PtBr => '.',
    };
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A time (UTC) as `locale` writes it: `Dec 2, 2026, 2:05 PM` or
/// `02/12/2026 14:05`.
pub fn datetime(locale: Locale, t: DateTime<Utc>) -> String {
    match locale {
        Locale::En => {
            let (pm, hour) = t.hour12();
            format!(
                "{} {}, {}, {}:{:02} {}",
                MONTHS[t.month0() as usize],
                t.day(),
                t.year(),
                hour,
                t.minute(),
                if pm { "PM" } else { "AM" }
            )
        }
        Locale::PtBr => t.format("%d/%m/%Y %H:%M").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::FailureCode;
    use crate::http::error::ErrorCode;

    fn keys(locale: Locale) -> BTreeSet<&'static str> {
        catalog(locale).keys().map(String::as_str).collect()
    }

    /// A key a caller may name: one the files have, or a plural's base.
    fn exists(key: &str) -> bool {
        Locale::ALL.iter().all(|&l| {
            let c = catalog(l);
            c.contains_key(key)
                || (c.contains_key(&format!("{key}.one"))
                    && c.contains_key(&format!("{key}.other")))
        })
    }

    /// The keys named by `t("key"` (or `t('key'`) calls in `text`, and by
    /// the page's `data-i18n…="key"` attributes.
    fn called_keys(text: &str) -> Vec<String> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        for attribute in [
            "data-i18n=\"",
            "data-i18n-label=\"",
            "data-i18n-placeholder=\"",
        ] {
            for (at, _) in text.match_indices(attribute) {
                let rest = &text[at + attribute.len()..];
                if let Some(end) = rest.find('"') {
                    found.push(rest[..end].to_owned());
                }
            }
        }
        for (at, _) in text.match_indices("t(") {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$')
            {
                continue;
            }
            let rest = &text[at + 2..];
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            if let Some(end) = rest[1..].find(quote) {
                found.push(rest[1..1 + end].to_owned());
            }
        }
        found
    }

    fn files_in(dir: &str, ext: &[&str]) -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| ext.iter().any(|x| e == *x)))
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_files_are_flat_sorted_and_have_the_same_keys() {
        for locale in Locale::ALL {
            let parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(file(locale)).expect("a JSON object");
            assert!(!parsed.is_empty(), "{locale}");
            assert!(
                parsed
                    .values()
                    .all(|v| v.as_str().is_some_and(|s| !s.trim().is_empty())),
                "{locale}: every value is a string of words"
            );
            let order: Vec<&String> = parsed.keys().collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted, "{locale}: keys sorted");
        }
        let en = keys(Locale::En);
        let pt = keys(Locale::PtBr);
        assert_eq!(
            en.symmetric_difference(&pt).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "keys in one language only"
        );
    }

    #[test]
    fn every_error_code_has_words() {
        let codes = ErrorCode::ALL.iter().map(|c| c.as_str());
        let failures = FailureCode::ALL.iter().map(|c| c.as_str());
        let missing: Vec<String> = codes
            .chain(failures)
            .map(|c| format!("error.{c}"))
            .filter(|k| !exists(k))
            .collect();
        assert!(missing.is_empty(), "no words for {missing:?}");
    }

    #[test]
    fn every_key_the_emails_and_the_page_use_exists() {
        let templates = files_in("templates/email", &["txt", "html"]);
        assert!(
            templates.len() >= 8,
            "a text and an HTML part for each email"
        );
        let page = files_in("web", &["js", "html"]);
        let mut named = 0;
        let mut page_keys = 0;
        for (path, text) in templates.iter().chain(&page) {
            for key in called_keys(text) {
                named += 1;
                page_keys += usize::from(key.starts_with("page."));
                assert!(exists(&key), "{path} names {key:?}, which no language has");
            }
        }
        assert!(named > 20, "the scan finds the templates' keys ({named})");
        assert!(page_keys > 100, "the page's keys are found: {page_keys}");
    }

    #[test]
    fn calls_are_found_as_the_page_and_templates_write_them() {
        let text = r#"x = t("a.b"); y = t('c.d', {n: 1}); {{ t("e.f", count=2) }} cat("no") .t("no") set("no")"#;
        assert_eq!(called_keys(text), ["a.b", "c.d", "e.f"]);
        let html = r#"<h2 data-i18n="g.h">G</h2><input data-i18n-placeholder="i.j"><b data-i18n-label="k.l">"#;
        assert_eq!(called_keys(html), ["g.h", "k.l", "i.j"]);
    }

    #[test]
    fn placeholders_and_plurals() {
        assert_eq!(
            translate(
                Locale::En,
                "email.job_done.subject",
                None,
                &[("name", "a.mp4")]
            ),
            "Your frames of a.mp4 are ready"
        );
        let frames = |l, n| translate(l, "email.job_done.frames", Some(n), &[]);
        assert_eq!(frames(Locale::En, 1), "1 frame extracted");
        assert_eq!(frames(Locale::En, 0), "0 frames extracted");
        assert_eq!(frames(Locale::En, 1234), "1,234 frames extracted");
        assert_eq!(frames(Locale::PtBr, 1), "1 quadro extraído");
        assert_eq!(frames(Locale::PtBr, 0), "0 quadro extraído");
        assert_eq!(frames(Locale::PtBr, 1234), "1.234 quadros extraídos");
        // a placeholder nobody filled stays visible; braces in values are text
        assert_eq!(
            translate(
                Locale::En,
                "email.job_done.subject",
                None,
                &[("other", "x")]
            ),
            "Your frames of {name} are ready"
        );
        assert_eq!(
            translate(
                Locale::En,
                "email.job_done.subject",
                None,
                &[("name", "{count}")]
            ),
            "Your frames of {count} are ready"
        );
        assert_eq!(lookup(Locale::PtBr, "no.such.key"), "no.such.key");
    }

    #[test]
    fn numbers_and_dates_by_language() {
        assert_eq!(number(Locale::En, 0), "0");
        assert_eq!(number(Locale::En, 999), "999");
        assert_eq!(number(Locale::En, 1234), "1,234");
        assert_eq!(number(Locale::PtBr, 1234567), "1.234.567");
        assert_eq!(number(Locale::PtBr, -1234), "-1.234");
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 14, 5, 0).unwrap();
        assert_eq!(datetime(Locale::En, t), "Dec 2, 2026, 2:05 PM");
        assert_eq!(datetime(Locale::PtBr, t), "02/12/2026 14:05");
        let midnight = Utc.with_ymd_and_hms(2027, 1, 9, 0, 7, 0).unwrap();
        assert_eq!(datetime(Locale::En, midnight), "Jan 9, 2027, 12:07 AM");
        assert_eq!(datetime(Locale::PtBr, midnight), "09/01/2027 00:07");
    }
}
