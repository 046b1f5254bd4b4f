use std::path::Path;

use serde_json::Value;

use crate::db::{TestDb, job_events};

/// Every file of job `id` in a media directory, sorted.
pub fn job_files(media: &Path, id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(media.join("videos").join(id))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts that video `id` is done with `frames` frames: one zip stored, the
/// zip whole when downloaded from the node at `base` (`http://host:port`),
/// and exactly one completion in its history.
pub async fn assert_done_once(
    http: &reqwest::Client,
    base: &str,
    db: &TestDb,
    media: &Path,
    token: &str,
    id: &str,
    frames: u64,
) {
    let r = http
        .get(format!("{base}/api/v1/videos/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let v = r.json::<Value>().await.unwrap()["video"].clone();
    assert_eq!(v["status"], "done", "{v}");
    assert_eq!(v["frames"], frames, "{v}");
    let files = job_files(media, id);
    let zips = files
        .iter()
        .filter(|f| f.starts_with("frames-") && f.ends_with(".zip"))
        .count();
    assert_eq!(zips, 1, "one zip per job: {files:?}");
    // beside it only its attempt's own objects (index, thumbnails, sheet)
    let attempt = files.iter().find(|f| f.ends_with(".zip")).unwrap();
    let stem = attempt.trim_end_matches("zip");
    assert!(
        files.iter().all(|f| f == "source" || f.starts_with(stem)),
        "nothing of another attempt: {files:?}"
    );
    let r = http
        .get(format!("{base}/api/v1/videos/{id}/frames.zip"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (names, _) = zip_contents(&r.bytes().await.unwrap());
    assert_eq!(names.len() as u64, frames + 1, "the zip is whole");
    let events = job_events(db, id).await;
    let done = events.iter().filter(|e| e.to == "done").count();
    assert_eq!(done, 1, "exactly one completion: {events:?}");
}

/// The first `key: value` line of a YAML manifest, its value unquoted: the
/// tests and the benchmarks read what the manifests say, not a copy.
pub fn manifest_field<'a>(doc: &'a str, key: &str) -> &'a str {
    doc.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().trim_matches('"'))
        .unwrap_or_else(|| panic!("`{key}:` in the manifest"))
}

/// Reads the error code of an error answer.
pub async fn error_code(r: reqwest::Response) -> String {
    let body: Value = r.json().await.expect("error answers are JSON");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}

/// Names of the entries of a zip, in order, and its manifest.
pub fn zip_contents(bytes: &[u8]) -> (Vec<String>, Value) {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid zip");
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
        .collect();
    let manifest = {
        let mut f = zip.by_name("manifest.json").expect("manifest.json");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        serde_json::from_str(&s).unwrap()
    };
    (names, manifest)
}
