use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use crate::db::TestDb;
use crate::node::{Node, NodeConfig, binary, start_node};
use crate::smtp::SmtpServer;
use crate::{PASSWORD, eventually};

/// A test's world: database, media directory, one node and an HTTP client.
pub struct TestApp {
    pub db: TestDb,
    pub media: tempfile::TempDir,
    pub config: NodeConfig,
    pub node: Node,
    pub http: reqwest::Client,
    pub smtp: Option<SmtpServer>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(NodeConfig::default(), false).await
    }

    pub async fn spawn_with(config: NodeConfig, with_smtp: bool) -> Self {
        Self::spawn_on(TestDb::create().await, config, with_smtp).await
    }

    pub async fn spawn_on(db: TestDb, mut config: NodeConfig, with_smtp: bool) -> Self {
        let media = tempfile::tempdir().unwrap();
        let smtp = with_smtp.then(SmtpServer::start);
        if let Some(smtp) = &smtp {
            config.smtp_url = Some(smtp.url());
        }
        let node = start_node(&db.url, media.path(), &config);
        Self {
            db,
            media,
            config,
            node,
            http: reqwest::Client::new(),
            smtp,
        }
    }

    /// Starts the node again on the same database and media (after a kill or stop).
    pub fn restart(&mut self) {
        self.node.kill();
        self.node = start_node(&self.db.url, self.media.path(), &self.config);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.addr)
    }

    /// A GET without credentials.
    pub async fn get_anonymous(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The profile after a PATCH that must succeed.
    pub async fn patch_me_ok(&self, token: &str, body: &Value) -> Value {
        let r = self.patch_me(token, body).await;
        assert_eq!(r.status(), 200, "PATCH /me {body}");
        r.json().await.unwrap()
    }

    /// Signs up and signs in a new user whose address is verified, as
    /// most are (its owner opened the link: here, the database says so);
    /// returns its token.
    pub async fn user(&self, email: &str) -> String {
        let token = self.unverified_user(email).await;
        let verified = self
            .db
            .client()
            .await
            .execute(
                "UPDATE users SET email_verified_at = now() WHERE email = $1",
                &[&email],
            )
            .await
            .unwrap();
        assert_eq!(verified, 1, "{email} verified");
        token
    }

    /// Signs up and signs in a new user who has not opened the verification
    /// link yet; returns its token.
    pub async fn unverified_user(&self, email: &str) -> String {
        let r = self
            .post_json(
                "/api/v1/users",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 201, "sign-up of {email}");
        self.sign_in(email).await
    }

    pub async fn sign_in(&self, email: &str) -> String {
        let r = self
            .post_json(
                "/api/v1/sessions",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 200, "sign-in of {email}");
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn get(&self, token: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let r = self.get(token, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// GET `path` is refused: 422 `invalid_input`.
    pub async fn get_invalid_input(&self, token: &str, path: &str) {
        let r = self.get(token, path).send().await.unwrap();
        assert_eq!(r.status(), 422, "GET {path}");
        assert_eq!(crate::error_code(r).await, "invalid_input", "GET {path}");
    }

    pub fn post(&self, token: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    pub async fn patch_me(&self, token: &str, body: &Value) -> reqwest::Response {
        let request = self.http.patch(self.url("/api/v1/me"));
        request
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub fn delete(&self, token: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    /// Uploads `file` with option `fields` (multipart); returns the response.
    pub async fn upload(
        &self,
        token: &str,
        file: &Path,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        self.upload_request(token, file, fields)
            .await
            .send()
            .await
            .unwrap()
    }

    /// The multipart upload of `file` with `fields`, ready to send.
    pub async fn upload_request(
        &self,
        token: &str,
        file: &Path,
        fields: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let bytes = tokio::fs::read(file).await.unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        form = form.part(
            "video",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        self.http
            .post(self.url("/api/v1/videos"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .multipart(form)
    }

    /// Uploads and expects 202; returns the video id.
    pub async fn upload_ok(&self, token: &str, file: &Path, fields: &[(&str, &str)]) -> String {
        let r = self.upload(token, file, fields).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 202, "upload refused: {body}");
        body["video"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn video(&self, token: &str, id: &str) -> Value {
        let r = self
            .get(token, &format!("/api/v1/videos/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["video"].clone()
    }

    /// Waits until the video reaches a final state; returns it.
    pub async fn wait_final(&self, token: &str, id: &str, timeout: Duration) -> Value {
        eventually(&format!("video {id} to finish"), timeout, || async {
            let v = self.video(token, id).await;
            matches!(v["status"].as_str(), Some("done" | "failed" | "cancelled")).then_some(v)
        })
        .await
    }

    /// Deletes (or cancels) a video; the answer's status.
    pub async fn delete_video(&self, token: &str, id: &str) -> reqwest::StatusCode {
        self.delete(token, &format!("/api/v1/videos/{id}"))
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn download(&self, token: &str, id: &str) -> Vec<u8> {
        let r = self
            .get(token, &format!("/api/v1/videos/{id}/frames.zip"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/zip");
        r.bytes().await.unwrap().to_vec()
    }

    /// Files in the media directory (not counting the node's config files).
    pub fn media_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_none_or(|x| x != "toml") {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.media.path(), &mut out);
        out
    }

    /// Waits, within 10 s, until `/metrics` shows `line`.
    pub async fn wait_metric(&self, line: &str) {
        eventually(
            &format!("the metrics to show `{line}`"),
            Duration::from_secs(10),
            || async { self.metrics().await.contains(line).then_some(()) },
        )
        .await;
    }

    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// How many times video `id` was claimed to run.
    pub async fn attempts(&self, id: &str) -> i32 {
        let client = self.db.client().await;
        client
            .query_one(
                "SELECT attempts FROM jobs WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub async fn count_rows(&self, table: &str) -> i64 {
        let client = self.db.client().await;
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Runs the binary as an operator would against `app`'s database: whether
/// it succeeded, its standard output and its standard error.
pub fn operator(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("VP_LOG_FORMAT", "json")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
