use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::fixtures::fixture_dir;
use crate::free_port;

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
    /// The node's own files (its address), gone with it.
    _files: tempfile::TempDir,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `check` until it yields, while the node runs: a node that
    /// exits or takes a minute fails the test with its log.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = check() {
                return found;
            }
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "node did not {what} ({exited:?}); its log:\n{}",
                    self.log_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The `videoproject` binary cargo built beside the running test or
/// benchmark (`target/<profile>/deps/<test>` → `target/<profile>/videoproject`):
/// `CARGO_BIN_EXE_*` is set only when a test crate itself is compiled.
pub fn binary() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("a test binary under target/<profile>/deps");
        let binary = profile.join("videoproject");
        assert!(
            binary.exists(),
            "{} is not built (cargo builds it for the tests and benchmarks)",
            binary.display()
        );
        binary.to_string_lossy().into_owned()
    })
}

/// What a started binary keeps of the test's environment (the rest is
/// cleared): `PATH`, and where a coverage run wants its profile written.
pub fn kept_env() -> Vec<(&'static str, String)> {
    ["PATH", "LLVM_PROFILE_FILE"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect()
}

/// Starts a node and returns once it serves: its `/healthz` says `ok`
/// (the database prepared, every route up).
pub fn start_node(database_url: &str, media: &Path, config: &NodeConfig) -> Node {
    let mut node = start_node_listening(database_url, media, config);
    let addr = node.addr;
    let healthy = || {
        let mut stream = TcpStream::connect(addr).ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.contains(r#""status":"ok""#).then_some(())
    };
    node.wait_for("serve", healthy);
    node
}

/// Starts a node and returns once it listens (it may still be preparing
/// its database): the address comes from the file it writes (`VP_ADDR_FILE`).
pub fn start_node_listening(database_url: &str, media: &Path, config: &NodeConfig) -> Node {
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
        .envs(kept_env())
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
    // outside the media directory, whose files the tests count
    let files = tempfile::tempdir().unwrap();
    let addr_file = files.path().join("addr");
    cmd.env("VP_ADDR_FILE", &addr_file);
    if let Some(toml) = &config.config_toml {
        let path = media.join(format!("{}.toml", config.node_name));
        std::fs::write(&path, toml).unwrap();
        cmd.env("VP_CONFIG", path);
    }
    let mut child = cmd.spawn().expect("start videoproject");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let mut node = Node {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        logs,
        _files: files,
    };
    node.addr = node.wait_for("listen", || {
        std::fs::read_to_string(&addr_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    node
}
