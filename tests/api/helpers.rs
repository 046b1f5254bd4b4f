//! Test harness: each test gets a fresh PostgreSQL database, a media
//! directory, optionally a real SMTP server (aiosmtpd) on a free loopback
//! port, and the real `videoproject` binary started on port 0.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

pub const PASSWORD: &str = "correct horse battery";

/// Admin connection used to create and drop test databases.
fn admin_url() -> String {
    std::env::var("VP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_dbname(url: &str, name: &str) -> String {
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    format!("{base}/{name}")
}

/// Polls `check` every 100 ms until it yields a value or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// A fresh database, dropped when the test ends: on the machine's
/// PostgreSQL, or on a server of the test's own that it may stop and start.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
    server: Option<TempPostgres>,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_on(admin_url(), None).await
    }

    /// A database on a PostgreSQL of its own ([`TestDb::server`]).
    pub async fn private() -> Self {
        let server = TempPostgres::start();
        Self::create_on(server.admin_url(), Some(server)).await
    }

    async fn create_on(admin: String, server: Option<TempPostgres>) -> Self {
        let name = format!("vp_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .expect("PostgreSQL must be running (see README: scripts/test)");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_dbname(&admin, &name);
        Self {
            name,
            url,
            admin,
            server,
        }
    }

    /// The connection this database was made on (to the server's own
    /// database), for what outlives the test database.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }

    /// The server of a [`TestDb::private`] database.
    pub fn server(&self) -> &TempPostgres {
        self.server.as_ref().expect("a private database")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.server.is_some() {
            // the whole server goes
            return;
        }
        run_as_admin(
            &self.admin,
            vec![format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )],
        );
    }
}

/// Runs `statements` as `admin`, best effort (clean-up), on a runtime of
/// its own: `Drop` may run outside one.
pub fn run_as_admin(admin: &str, statements: Vec<String>) {
    let admin = admin.to_owned();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                tokio::spawn(conn);
                for statement in statements {
                    let _ = client.batch_execute(&statement).await;
                }
            }
        });
    })
    .join();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request a [`WebhookReceiver`] got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
    pub answered: u16,
}

/// A real HTTP server on a free loopback port that records webhook POSTs.
/// It answers 500 to the first `fail_first` of them and 200 after.
pub struct WebhookReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WebhookReceiver {
    pub async fn start(fail_first: usize) -> Self {
        use warp::Filter;
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let log = received.clone();
        let hook = warp::post()
            .and(warp::path("hook"))
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |headers, body| {
                let mut log = log.lock().unwrap();
                let answered = if log.len() < fail_first { 500 } else { 200 };
                log.push(Received {
                    headers,
                    body,
                    answered,
                });
                warp::reply::with_status("", warp::http::StatusCode::from_u16(answered).unwrap())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(hook)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Self {
            addr,
            received,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Waits until a server we started accepts connections on `port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::yield_now();
    }
}

/// A real SMTP server (aiosmtpd) writing each message into a maildir.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let python = std::env::var("VP_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-smtp/bin/python")
            });
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start aiosmtpd with {} ({e}); run scripts/test",
                    python.display()
                )
            });
        wait_listening(port, "aiosmtpd");
        Self {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far: headers, and the body decoded from
    /// quoted-printable.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .map(|m| decode_quoted_printable(&m))
            .collect()
    }
}

fn decode_quoted_printable(message: &str) -> String {
    if !message.contains("quoted-printable") {
        return message.to_owned();
    }
    let joined = message.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Subjects of the emails about an account (its links), not about a video.
pub const ACCOUNT_SUBJECTS: [&str; 2] = [
    "Subject: Confirm your email address",
    "Subject: Set a new password",
];

impl SmtpServer {
    /// The messages about videos received so far (not the account emails
    /// every sign-up brings).
    pub fn about_videos(&self) -> Vec<String> {
        let mut messages = self.messages();
        messages.retain(|m| !ACCOUNT_SUBJECTS.iter().any(|s| m.contains(s)));
        messages
    }

    /// Waits for the first message about a video to arrive; returns it.
    pub async fn first_message(&self, what: &str) -> String {
        eventually(what, Duration::from_secs(30), || async {
            self.about_videos().into_iter().next()
        })
        .await
    }

    /// Waits for a message containing `needle`; returns it.
    pub async fn message_with(&self, needle: &str) -> String {
        eventually(needle, Duration::from_secs(30), || async {
            self.messages().into_iter().find(|m| m.contains(needle))
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start a node.
#[derive(Clone)]
pub struct NodeConfig {
    pub node_name: String,
    pub workers: usize,
    pub smtp_url: Option<String>,
    pub max_upload_bytes: Option<u64>,
    /// Extra TOML for `VP_CONFIG` (tuning).
    pub config_toml: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The largest file the node may write (RLIMIT_FSIZE), like a disk that
    /// fills up: a longer write fails with EFBIG.
    pub file_size_limit: Option<u64>,
    /// The most files the node may have open (RLIMIT_NOFILE, soft and hard).
    pub open_files_limit: Option<u64>,
    /// A file the node sees as its `/etc/hosts` (in a mount namespace of
    /// its own), as a pod sees the cluster's DNS: see [`private_hosts_work`].
    pub hosts: Option<PathBuf>,
}

impl NodeConfig {
    /// A node whose ffmpeg reads input at 10× real time (the real ffmpeg
    /// with `-readrate`): a 60 s video takes about 6 s, time enough to act
    /// while the job runs.
    pub fn paced() -> Self {
        Self::paced_with("")
    }

    /// [`Self::paced`] with more `[tuning]` lines.
    pub fn paced_with(tuning: &str) -> Self {
        let ffmpeg = script("ffmpeg-paced", "exec ffmpeg -readrate 10 \"$@\"");
        Self::tuned(&format!("ffmpeg_path = \"{}\"\n{tuning}", ffmpeg.display()))
    }

    /// A node with these `[tuning]` lines in its `VP_CONFIG` file.
    pub fn tuned(tuning: &str) -> Self {
        Self {
            config_toml: Some(format!("[tuning]\n{tuning}")),
            ..Self::default()
        }
    }
}

/// `n` configurations from `base` named node-0, node-1, …, each on its own
/// cluster port and seeded with every node's, sharing `cookie`.
pub fn cluster_configs(n: usize, base: NodeConfig, cookie: &str) -> Vec<NodeConfig> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let seeds = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut c = base.clone();
            c.node_name = format!("node-{i}");
            c.env.extend([
                ("VP_CLUSTER_ADDR".to_owned(), format!("127.0.0.1:{port}")),
                ("VP_CLUSTER_SEEDS".to_owned(), seeds.clone()),
                ("VP_CLUSTER_COOKIE".to_owned(), cookie.to_owned()),
            ]);
            c
        })
        .collect()
}

/// An executable shell script in the fixture directory.
pub fn script(name: &str, body: &str) -> PathBuf {
    let path = fixture_dir().join(name);
    if !path.exists() {
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        let status = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        assert!(status.success());
    }
    path
}

/// Whether this machine lets a process see a file of ours as its
/// `/etc/hosts` (a private mount namespace: root, or a kernel that allows
/// it), probed once. The scaling benchmark's.
#[allow(dead_code)]
pub fn private_hosts_work() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let hosts = fixture_dir().join("hosts-probe");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "mount", "--bind"])
            .arg(&hosts)
            .arg("/etc/hosts")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_name: "node-a".into(),
            workers: 2,
            smtp_url: None,
            max_upload_bytes: None,
            config_toml: None,
            env: Vec::new(),
            file_size_limit: None,
            open_files_limit: None,
            hosts: None,
        }
    }
}

/// One running node: the real binary.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a crash, nothing runs after it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the node.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// SIGTERM, then the exit status once the node has stopped.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not stop within {timeout:?} of SIGTERM"
            );
        }
    }

    /// Peak resident memory of the node so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test's world: database, media directory, one node and an HTTP client.
pub struct TestApp {
    pub db: TestDb,
    pub media: tempfile::TempDir,
    pub config: NodeConfig,
    pub node: Node,
    pub http: reqwest::Client,
    pub smtp: Option<SmtpServer>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_videoproject")
}

pub fn start_node(database_url: &str, media: &Path, config: &NodeConfig) -> Node {
    start_node_until(database_url, media, config, "http listening")
}

/// Starts a node and returns once it logs `message` with its HTTP address:
/// `http listening` (ready to serve), or `answering probes` (preparing).
pub fn start_node_until(
    database_url: &str,
    media: &Path,
    config: &NodeConfig,
    message: &'static str,
) -> Node {
    let mut limits = Vec::new();
    if let Some(bytes) = config.file_size_limit {
        limits.push(format!("--fsize={bytes}"));
    }
    if let Some(files) = config.open_files_limit {
        limits.push(format!("--nofile={files}"));
    }
    let mut cmd = if limits.is_empty() && config.hosts.is_none() {
        Command::new(binary())
    } else {
        let mut steps = Vec::new();
        if let Some(hosts) = &config.hosts {
            steps.push(format!("mount --bind '{}' /etc/hosts", hosts.display()));
        }
        // SIGXFSZ ignored (it survives exec), so a write past a file size
        // limit fails with EFBIG instead of killing the node
        steps.push("trap '' XFSZ".to_owned());
        steps.push(if limits.is_empty() {
            "exec \"$0\" \"$@\"".to_owned()
        } else {
            format!("exec prlimit {} -- \"$0\" \"$@\"", limits.join(" "))
        });
        // unshare execs the shell, which execs the node: one process
        let mut wrapper = if config.hosts.is_some() {
            let mut u = Command::new("unshare");
            u.args(["--mount", "--propagation", "private", "sh"]);
            u
        } else {
            Command::new("sh")
        };
        wrapper.args(["-c", &steps.join(" && "), binary()]);
        wrapper
    };
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("VP_HTTP_ADDR", "127.0.0.1:0")
        .env("VP_MEDIA_URL", format!("file://{}", media.display()))
        .env("VP_NODE_NAME", &config.node_name)
        .env("VP_WORKERS", config.workers.to_string())
        .env("VP_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = &config.smtp_url {
        cmd.env("VP_SMTP_URL", url);
    }
    if let Some(max) = config.max_upload_bytes {
        cmd.env("VP_MAX_UPLOAD_BYTES", max.to_string());
    }
    for (k, v) in &config.env {
        cmd.env(k, v);
    }
    if let Some(toml) = &config.config_toml {
        let path = media.join(format!("{}.toml", config.node_name));
        std::fs::write(&path, toml).unwrap();
        cmd.env("VP_CONFIG", path);
    }
    let mut child = cmd.spawn().expect("start videoproject");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["fields"]["message"] == message
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_owned());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr.parse().expect("listening address"),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "node did not start; its log:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    };
    Node { child, addr, logs }
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

/// One line of a job's history (`job_events`).
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// Shown when an assertion about the history fails.
    #[allow(dead_code)]
    pub from: String,
    pub to: String,
    #[allow(dead_code)]
    pub node: String,
    pub detail: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: f64,
}

/// A job's history, oldest first.
pub async fn job_events(db: &TestDb, id: &str) -> Vec<JobEvent> {
    db.client()
        .await
        .query(
            "SELECT coalesce(from_state::text, ''), to_state::text, node, detail, extract(epoch FROM at)::float8
             FROM job_events WHERE job_id = $1::text::uuid ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| JobEvent {
            from: r.get(0),
            to: r.get(1),
            node: r.get(2),
            detail: r.get(3),
            at: r.get(4),
        })
        .collect()
}

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
    let zips = files.iter().filter(|f| f.starts_with("frames-")).count();
    assert_eq!(zips, 1, "one zip per job, nothing else: {files:?}");
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

fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Test videos made with ffmpeg's lavfi sources, once per test run.
pub fn fixture(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = fixture_dir();
    let _guard = LOCK.lock().unwrap();
    let (file, secs, size) = match name {
        "v60" => ("v60.mp4", 60, "160x120"),
        "v20" => ("v20.mp4", 20, "160x120"),
        "v60_big" => ("v60_big.mp4", 60, "320x240"),
        "corrupt" => ("corrupt.mp4", 20, "640x480"),
        // lossless 720p: few seconds, many bytes (an upload that takes a while)
        "bulky" => ("bulky.mp4", 8, "1280x720"),
        "text" => {
            let p = dir.join("notes.mp4");
            if !p.exists() {
                std::fs::write(
                    &p,
                    "this is not a video, only text pretending to be one\n".repeat(200),
                )
                .unwrap();
            }
            return p;
        }
        other => panic!("unknown fixture {other}"),
    };
    let path = dir.join(file);
    if path.exists() {
        return path;
    }
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &secs.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(if name == "bulky" {
            &["-qp", "0"][..]
        } else {
            &[]
        })
        .args(["-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed (see README: scripts/test)");
    assert!(status.success(), "generating {name}");
    if name == "corrupt" {
        // Overwrite most of the media data with noise: the headers still
        // probe as a video, but the frames cannot be decoded.
        let mut bytes = std::fs::read(&path).unwrap();
        let (from, to) = (bytes.len() / 10, bytes.len() * 8 / 10);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for b in &mut bytes[from..to] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    path
}

/// A CA and one certificate it issued for `names`, as PEM files in `dir`.
pub struct Issued {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    pub fn new(dir: &Path, prefix: &str, names: &[String]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // a CA of its own name: another test CA is a stranger, not a twin
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix} test CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.to_vec()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let cert = params
            .signed_by(&key, &Issuer::new(ca_params, ca_key))
            .unwrap();
        let write = |file: &str, pem: String| {
            let path = dir.join(format!("{prefix}-{file}"));
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
            ca: write("ca.pem", ca.pem()),
        }
    }
}

/// A PostgreSQL server of the test's own, on a free port, that the test can
/// stop and start (the machine's server must stay up for the others).
pub struct TempPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl TempPostgres {
    fn bin(tool: &str) -> PathBuf {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .flatten()
            .map(|e| e.path())
            .collect();
        versions.sort();
        versions
            .last()
            .expect("a PostgreSQL version")
            .join("bin")
            .join(tool)
    }

    /// Runs a PostgreSQL tool as the `postgres` user (initdb refuses root).
    fn run_as_postgres(args: &str) {
        let status = Command::new("su")
            .args(["postgres", "-c", args])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args}");
    }

    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A server that takes connections over TLS only, with `issued`'s
    /// certificate: `pg_hba.conf` has `hostssl` and nothing else for TCP.
    pub fn start_tls_only(issued: &Issued) -> Self {
        Self::start_with(|dir| {
            let data = dir.join("data");
            for (from, to) in [(&issued.cert, "server.crt"), (&issued.key, "server.key")] {
                std::fs::copy(from, data.join(to)).unwrap();
            }
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "chown postgres {d}/server.crt {d}/server.key && chmod 600 {d}/server.key",
                    d = data.display()
                ))
                .status()
                .unwrap();
            assert!(status.success());
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .unwrap();
            std::io::Write::write_all(
                &mut conf,
                b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )
            .unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .unwrap();
        })
    }

    /// Made with `initdb`, then `configure`d with its folder, then started.
    fn start_with(configure: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vp-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let initdb = Self::bin("initdb");
        Self::run_as_postgres(&format!(
            "{} -D {}/data -A trust -U postgres --no-sync",
            initdb.display(),
            dir.path().display()
        ));
        configure(dir.path());
        let pg = Self {
            dir,
            port: free_port(),
        };
        pg.resume();
        pg
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&self) {
        let d = self.dir.path().display();
        Self::run_as_postgres(&format!(
            "{} -D {d}/data -l {d}/log -w -o '-p {} -k {d} -c listen_addresses=127.0.0.1' start",
            Self::bin("pg_ctl").display(),
            self.port
        ));
    }

    /// A fast shutdown: connections are cut.
    pub fn stop(&self) {
        let d = self.dir.path().display();
        Self::run_as_postgres(&format!(
            "{} -D {d}/data -m fast -w stop",
            Self::bin("pg_ctl").display()
        ));
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let d = self.dir.path().display();
        let _ = Command::new("su")
            .args([
                "postgres",
                "-c",
                &format!(
                    "{} -D {d}/data -m immediate -w stop",
                    Self::bin("pg_ctl").display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
