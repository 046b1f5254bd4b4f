//! Media in an S3 bucket (`VP_MEDIA_URL=s3://bucket/prefix`), against a real
//! S3 server on loopback (s3s-fs: the S3 protocol over plain files).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{
    NodeConfig, TestApp, eventually, fixture, free_port, wait_listening, zip_contents,
};

const PROCESSING: Duration = Duration::from_secs(120);
const BUCKET: &str = "media";

struct S3Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        // a bucket is a folder
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = free_port();
        let binary = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .map(|home| home.join("bin/s3s-fs"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("s3s-fs"));
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "test", "--secret-key", "testsecret"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); run scripts/test", binary.display())
            });
        wait_listening(port, "s3s-fs");
        Self { child, port, root }
    }

    /// What a node needs to keep its media under `prefix` in the bucket.
    fn node_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("VP_MEDIA_URL", format!("s3://{BUCKET}/{prefix}")),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "testsecret".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The keys of the bucket's objects.
    fn keys(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let base = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn videos_live_in_an_s3_bucket_from_upload_to_download_and_deletion() {
    let s3 = S3Server::start();
    let config = NodeConfig {
        env: s3.node_env("vp"),
        ..NodeConfig::default()
    };
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;

    // a refused upload leaves nothing in the bucket
    let r = app.upload(&token, &fixture("text"), &[]).await;
    assert_eq!(r.status(), 415);

    // larger than one 5 MiB part: a multipart upload
    let id = app
        .upload_ok(&token, &fixture("bulky"), &[("count", "4")])
        .await;
    let done = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    let zip = app.download(&token, &id).await;
    let (names, manifest) = zip_contents(&zip);
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(manifest["count"], 4);

    // where the bytes are: the bucket, under the prefix; not the node's disk
    let keys = s3.keys();
    let source = format!("vp/videos/{id}/source");
    assert!(keys.iter().any(|k| k == &source), "{keys:?}");
    let zips: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("vp/videos/{id}/frames-")) && k.ends_with(".zip"))
        .collect();
    assert_eq!(zips.len(), 1, "{keys:?}");
    assert_eq!(
        std::fs::metadata(s3.root.path().join(BUCKET).join(zips[0]))
            .unwrap()
            .len() as usize,
        zip.len()
    );
    assert_eq!(
        std::fs::metadata(s3.root.path().join(BUCKET).join(&source))
            .unwrap()
            .len(),
        std::fs::metadata(fixture("bulky")).unwrap().len()
    );
    assert!(app.media_files().is_empty(), "{:?}", app.media_files());

    // a range, as a resumed download asks
    let r = app
        .get(&token, &format!("/api/v1/videos/{id}/frames.zip"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), zip[10..20]);

    // deleting the video deletes its objects
    assert_eq!(app.delete_video(&token, &id).await, 204);
    eventually("the objects to go", Duration::from_secs(10), || async {
        let keys = s3.keys();
        keys.iter()
            .all(|k| !k.contains(&id.to_string()))
            .then_some(())
    })
    .await;
}
