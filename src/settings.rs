//! Configuration in three layers: `config/default.toml` (compiled in, so the
//! binary runs from any directory), the TOML file named in `VP_CONFIG`, then
//! the environment variables of the operating contract.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    File(#[from] Box<figment::Error>),
    #[error("{var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// A value that must never reach a log line.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An address range, `address/prefix` or one address, parsed when the
/// configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network {
    base: IpAddr,
    prefix: u32,
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let bad = || format!("`{raw}` is not an address or address/prefix");
        let (base, prefix) = match raw.trim().split_once('/') {
            Some((b, p)) => (
                b.parse::<IpAddr>().map_err(|_| bad())?,
                p.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let b = raw.trim().parse::<IpAddr>().map_err(|_| bad())?;
                (b, if b.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if base.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { base, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
                u32::from(b) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(b), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix).unwrap_or(0);
                u128::from(b) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `text` or `json`, got `{other}`")),
        }
    }
}

/// Where the cluster's PEM files are (`VP_CLUSTER_TLS_CERT`, `_KEY`, `_CA`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What `serve` does about the database schema at start. Where a job runs
/// `videoproject migrate` before the nodes (Kubernetes), nodes only wait
/// for it: they may connect as a role that cannot change the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Migrations {
    /// Apply pending migrations (one node at a time), then serve.
    #[default]
    Apply,
    /// Wait until the schema is at this binary's version, changing nothing.
    Await,
}

impl FromStr for Migrations {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "apply" => Ok(Self::Apply),
            "await" => Ok(Self::Await),
            other => Err(format!("expected `apply` or `await`, got `{other}`")),
        }
    }
}

/// Where a node runs. In production a node refuses to start without its
/// token key from the environment or a file (in development the key is made
/// once and kept in the database, in plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "production" => Ok(Self::Production),
            other => Err(format!(
                "expected `development` or `production`, got `{other}`"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tuning {
    pub token_ttl_secs: u64,
    pub download_link_secs: u64,
    /// Header a trusted proxy puts the client's address in (e.g.
    /// `x-forwarded-for`); empty: the connection's peer is the client.
    #[serde(default)]
    pub client_ip_header: String,
    /// The proxies whose `client_ip_header` is believed (`address/prefix`).
    #[serde(default)]
    pub trusted_proxies: Vec<Network>,
    pub job_lease_secs: u64,
    /// How often a pool looks at the queue without a wake-up.
    pub queue_poll_secs: u64,
    pub job_max_attempts: u32,
    pub max_frames: u32,
    pub ffmpeg_stall_secs: u64,
    pub probe_timeout_secs: u64,
    pub max_concurrent_uploads: usize,
    pub max_uploads_per_user: u32,
    pub upload_idle_secs: u64,
    pub upload_min_rate_bytes: u64,
    pub upload_grace_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub first_request_secs: u64,
    pub keep_alive_secs: u64,
    pub write_stall_secs: u64,
    pub json_body_secs: u64,
    pub max_streams_per_user: usize,
    pub max_source_pixels: u64,
    pub max_output_pixels: u64,
    pub max_zip_bytes: u64,
    pub zip_bytes_per_upload_byte: u64,
    pub media_memory_bytes: u64,
    pub max_storage_per_user: u64,
    pub job_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub max_processing_per_user: u32,
    pub max_queued_per_user: u32,
    pub mail_max_attempts: u32,
    /// Emails about videos an address not yet verified receives a day.
    pub unverified_emails_per_day: u32,
    /// No email about a video goes to an address not yet verified.
    pub require_verified_email: bool,
    /// Account emails (verification and reset links) one address receives a day.
    pub account_emails_per_day: u32,
    pub verify_link_secs: u64,
    pub reset_link_secs: u64,
    /// Webhooks may reach private networks (receivers inside the cluster).
    #[serde(default)]
    pub webhook_private_networks: bool,
    pub ffmpeg_path: PathBuf,
    pub ffprobe_path: PathBuf,
    /// A directory the nodes on one machine share to share its cores
    /// (`media::cores`); empty: this node counts only its own jobs.
    #[serde(default)]
    pub shared_cores_dir: PathBuf,
}

impl Tuning {
    /// Emails about videos an unverified address receives a day, with
    /// `require_verified_email` counted in (none).
    pub fn unverified_emails_per_day(&self) -> u32 {
        if self.require_verified_email {
            0
        } else {
            self.unverified_emails_per_day
        }
    }

    pub fn shared_cores_dir(&self) -> Option<&std::path::Path> {
        (!self.shared_cores_dir.as_os_str().is_empty()).then_some(self.shared_cores_dir.as_path())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database_url: Secret,
    /// `migrate` only: the nodes' database url (their role is made a login
    /// that reads and writes rows, and changes no table).
    #[serde(default)]
    pub app_database_url: Option<Secret>,
    /// `migrate` only: the autoscaler's database url (its role may count
    /// the jobs by state, nothing else).
    #[serde(default)]
    pub monitor_database_url: Option<Secret>,
    pub http_addr: SocketAddr,
    /// Where the node writes the address its HTTP server listens on, once
    /// it listens: for scripts and tests that start it on port 0.
    #[serde(default)]
    pub addr_file: Option<PathBuf>,
    /// Where people reach the page (`https://videos.example.com`): the links
    /// in account emails start with it. Unset: `http://` and `http_addr`.
    #[serde(default)]
    pub public_url: Option<String>,
    pub media_url: String,
    #[serde(default)]
    pub smtp_url: Option<Secret>,
    pub mail_from: String,
    #[serde(default)]
    pub node_name: Option<String>,
    pub cluster_addr: String,
    #[serde(default)]
    pub cluster_seeds: Option<String>,
    /// The host peers reach this node by, when `cluster_addr` is a wildcard
    /// (on Kubernetes: `$(POD_NAME).<headless service>`).
    #[serde(default)]
    pub cluster_advertise: Option<String>,
    #[serde(default)]
    pub cluster_cookie: Option<Secret>,
    /// Mutual TLS for cluster links: this node's certificate, its key, and
    /// the CA that issues every node's certificate (all three, or none).
    #[serde(default)]
    pub cluster_tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub cluster_tls_key: Option<PathBuf>,
    #[serde(default)]
    pub cluster_tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub token_key: Option<Secret>,
    #[serde(default)]
    pub token_key_file: Option<PathBuf>,
    #[serde(default)]
    pub workers: Option<usize>,
    pub max_upload_bytes: u64,
    pub retention_days: u32,
    /// Browser origins allowed to call the API (CORS); none by default.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    pub log_format: LogFormat,
    #[serde(default)]
    pub env: Environment,
    #[serde(default)]
    pub migrations: Migrations,
    pub tuning: Tuning,
}

impl Settings {
    /// Loads the three layers from the real process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(|name| std::env::var(name).ok())
    }

    /// Every environment variable a node reads: those of the settings, as
    /// loading them asks for them (so the list cannot fall behind), and those
    /// read elsewhere: the S3 client's `AWS_*`, the log filter's `RUST_LOG`,
    /// `user add`'s `VP_USER_PASSWORD`.
    pub fn environment_names() -> Vec<String> {
        let asked = std::sync::Mutex::new(Vec::new());
        let _ = Self::load_from(|name| {
            asked.lock().unwrap().push(name.to_owned());
            None
        });
        let mut names = asked.into_inner().unwrap();
        names.extend(["AWS_*", "RUST_LOG", "VP_USER_PASSWORD"].map(String::from));
        names.sort();
        names.dedup();
        names
    }

    /// Loads the layers with `env` standing in for the environment (tests).
    pub fn load_from(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = env("VP_CONFIG") {
            if !std::path::Path::new(&path).is_file() {
                return Err(ConfigError::Env {
                    var: "VP_CONFIG",
                    message: format!("no such file: {path}"),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        settings.apply_env(&env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The environment variables of the operating contract, each parsed with
    /// a message that names the variable.
    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            var: &'static str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: fmt::Display,
        {
            match env(var).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|e: T::Err| ConfigError::Env {
                        var,
                        message: e.to_string(),
                    }),
            }
        }
        let text = |var: &'static str| env(var).filter(|v| !v.is_empty());

        if let Some(v) = text("DATABASE_URL") {
            self.database_url = Secret::new(v);
        }
        if let Some(v) = text("VP_APP_DATABASE_URL") {
            self.app_database_url = Some(Secret::new(v));
        }
        if let Some(v) = text("VP_MONITOR_DATABASE_URL") {
            self.monitor_database_url = Some(Secret::new(v));
        }
        if let Some(v) = parse(env, "VP_HTTP_ADDR")? {
            self.http_addr = v;
        }
        if let Some(v) = text("VP_ADDR_FILE") {
            self.addr_file = Some(v.into());
        }
        if let Some(v) = text("VP_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = text("VP_MEDIA_URL") {
            self.media_url = v;
        }
        if let Some(v) = text("VP_SMTP_URL") {
            self.smtp_url = Some(Secret::new(v));
        }
        if let Some(v) = text("VP_MAIL_FROM") {
            self.mail_from = v;
        }
        if let Some(v) = text("VP_NODE_NAME") {
            self.node_name = Some(v);
        }
        if let Some(v) = text("VP_CLUSTER_ADDR") {
            self.cluster_addr = v;
        }
        if let Some(v) = text("VP_CLUSTER_SEEDS") {
            self.cluster_seeds = Some(v);
        }
        if let Some(v) = text("VP_CLUSTER_ADVERTISE") {
            self.cluster_advertise = Some(v);
        }
        if let Some(v) = text("VP_CLUSTER_COOKIE") {
            self.cluster_cookie = Some(Secret::new(v));
        }
        if let Some(v) = text("VP_CLUSTER_TLS_CERT") {
            self.cluster_tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = text("VP_CLUSTER_TLS_KEY") {
            self.cluster_tls_key = Some(PathBuf::from(v));
        }
        if let Some(v) = text("VP_CLUSTER_TLS_CA") {
            self.cluster_tls_ca = Some(PathBuf::from(v));
        }
        if let Some(v) = text("VP_TOKEN_KEY") {
            self.token_key = Some(Secret::new(v));
        }
        if let Some(v) = text("VP_TOKEN_KEY_FILE") {
            self.token_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = parse(env, "VP_WORKERS")? {
            self.workers = Some(v);
        }
        if let Some(v) = parse(env, "VP_MAX_UPLOAD_BYTES")? {
            self.max_upload_bytes = v;
        }
        if let Some(v) = parse(env, "VP_RETENTION_DAYS")? {
            self.retention_days = v;
        }
        if let Some(v) = text("VP_CORS_ORIGINS") {
            self.cors_origins = v.split(',').map(|o| o.trim().to_owned()).collect();
        }
        if let Some(v) = parse(env, "VP_LOG_FORMAT")? {
            self.log_format = v;
        }
        if let Some(v) = parse(env, "VP_ENV")? {
            self.env = v;
        }
        if let Some(v) = parse(env, "VP_MIGRATIONS")? {
            self.migrations = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.workers == Some(0) {
            return invalid("VP_WORKERS must be at least 1");
        }
        if self.max_upload_bytes == 0 {
            return invalid("VP_MAX_UPLOAD_BYTES must be at least 1");
        }
        if self.retention_days == 0 {
            return invalid("VP_RETENTION_DAYS must be at least 1");
        }
        if self.cluster_seeds.is_some() && self.cluster_cookie.is_none() {
            return invalid("VP_CLUSTER_COOKIE is required when VP_CLUSTER_SEEDS is set");
        }
        let tls = [
            &self.cluster_tls_cert,
            &self.cluster_tls_key,
            &self.cluster_tls_ca,
        ];
        if tls.iter().any(|f| f.is_some()) && !tls.iter().all(|f| f.is_some()) {
            return invalid(
                "VP_CLUSTER_TLS_CERT, VP_CLUSTER_TLS_KEY and VP_CLUSTER_TLS_CA go together: set all three",
            );
        }
        if let Some(url) = &self.public_url
            && !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return invalid("VP_PUBLIC_URL must be an http:// or https:// URL");
        }
        let t = &self.tuning;
        if t.job_lease_secs < 3 || t.job_max_attempts == 0 || t.max_frames == 0 {
            return invalid("tuning: job_lease_secs >= 3, job_max_attempts >= 1, max_frames >= 1");
        }
        if t.queue_poll_secs == 0 {
            return invalid("tuning: queue_poll_secs >= 1");
        }
        if t.max_processing_per_user == 0 || t.max_queued_per_user == 0 {
            return invalid(
                "tuning: max_processing_per_user and max_queued_per_user must be at least 1",
            );
        }
        if t.max_connections == 0 || t.max_connections_per_address == 0 {
            return invalid(
                "tuning: max_connections and max_connections_per_address must be at least 1",
            );
        }
        if t.account_emails_per_day == 0 {
            return invalid(
                "tuning: account_emails_per_day must be at least 1 (sign-up sends a verification link)",
            );
        }
        if t.max_uploads_per_user == 0 || t.upload_min_rate_bytes == 0 || t.upload_idle_secs == 0 {
            return invalid(
                "tuning: max_uploads_per_user, upload_min_rate_bytes and upload_idle_secs must be at least 1",
            );
        }
        Ok(())
    }

    /// What a serving node needs in production: its token key from the
    /// environment or a file (never made and kept in the database there),
    /// and the address people reach it by (the links in account emails).
    pub fn check_production(&self) -> Result<(), ConfigError> {
        if self.env != Environment::Production {
            return Ok(());
        }
        if self.token_key.is_none() && self.token_key_file.is_none() {
            return Err(ConfigError::Invalid(
                "VP_ENV=production needs the token key from VP_TOKEN_KEY or VP_TOKEN_KEY_FILE (hex Ed25519 private keys, e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        if self.public_url.is_none() {
            return Err(ConfigError::Invalid(
                "VP_ENV=production needs VP_PUBLIC_URL, where people reach the page (e.g. https://videos.example.com): the links in account emails start with it".into(),
            ));
        }
        Ok(())
    }

    /// The page's address, without a trailing `/`: `public_url`, else the
    /// address the node `listens` on (a wildcard as `localhost`).
    pub fn public_url(&self, listens: SocketAddr) -> String {
        match &self.public_url {
            // as the URL parser writes it: quotes and angle brackets
            // percent-encoded, so the emails may put it in HTML as it is
            Some(url) => url::Url::parse(url)
                .map_or_else(|_| url.clone(), |u| u.to_string())
                .trim_end_matches('/')
                .to_owned(),
            None if listens.ip().is_unspecified() => format!("http://localhost:{}", listens.port()),
            None => format!("http://{listens}"),
        }
    }

    /// Where account emails' links point (see [`Self::public_url`]) and how
    /// long they last.
    pub fn link_policy(&self, listens: SocketAddr) -> crate::accounts::LinkPolicy {
        crate::accounts::LinkPolicy {
            public_url: self.public_url(listens),
            verify_for: std::time::Duration::from_secs(self.tuning.verify_link_secs),
            reset_for: std::time::Duration::from_secs(self.tuning.reset_link_secs),
            per_day: self.tuning.account_emails_per_day,
        }
    }

    /// This node's stable name: `VP_NODE_NAME`, else the host name.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "videoproject".to_owned())
        })
    }

    /// The cluster TLS files, when all three are set.
    pub fn cluster_tls(&self) -> Option<TlsFiles> {
        match (
            &self.cluster_tls_cert,
            &self.cluster_tls_key,
            &self.cluster_tls_ca,
        ) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        }
    }

    /// Processor slots: `VP_WORKERS`, else the CPU count.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(|name| map.get(name).cloned())
    }

    #[test]
    fn the_public_url_is_written_as_the_url_parser_writes_it() {
        let listens: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let url = |v: &str| load(&[("VP_PUBLIC_URL", v)]).unwrap().public_url(listens);
        assert_eq!(
            url("https://videos.example.com/"),
            "https://videos.example.com"
        );
        assert_eq!(
            url("https://videos.example.com/vp"),
            "https://videos.example.com/vp"
        );
        assert_eq!(
            url("https://x.example/a\"b<c>"),
            "https://x.example/a%22b%3Cc%3E"
        );
        assert_eq!(
            load(&[]).unwrap().public_url(listens),
            "http://localhost:8080"
        );
    }

    #[test]
    fn networks() {
        let net = |s: &str| Network::try_from(s.to_owned());
        let contains = |n: &str, ip: &str| net(n).is_ok_and(|n| n.contains(ip.parse().unwrap()));
        assert!(contains("10.0.0.0/8", "10.2.3.4"));
        assert!(!contains("10.0.0.0/8", "11.2.3.4"));
        assert!(contains("192.168.1.7", "192.168.1.7"));
        assert!(contains("0.0.0.0/0", "8.8.8.8"));
        assert!(contains("fd00::/8", "fd12::1"));
        assert!(!contains("fd00::/8", "10.0.0.1"));
        assert!(!contains("10.0.0.0/33", "10.0.0.1"));
        assert!(!contains("nonsense", "10.0.0.1"));
        assert!(net("10.0.0.0/33").is_err() && net("nonsense").is_err());
    }

    #[test]
    fn defaults_match_the_operating_contract() {
        let s = load(&[]).unwrap();
        assert_eq!(
            s.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/videoproject"
        );
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.media_url, "file://./var/media");
        assert!(s.smtp_url.is_none());
        assert_eq!(s.mail_from, "videoproject@localhost");
        assert_eq!(s.cluster_addr, "127.0.0.1:4697");
        assert_eq!(s.max_upload_bytes, 4 * 1024 * 1024 * 1024);
        assert_eq!(s.retention_days, 7);
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(s.workers() >= 1);
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = load(&[
            ("DATABASE_URL", "postgres://x@db/y"),
            ("VP_HTTP_ADDR", "0.0.0.0:9000"),
            ("VP_WORKERS", "3"),
            ("VP_MAX_UPLOAD_BYTES", "1024"),
            ("VP_CLUSTER_COOKIE", "12345"),
            ("VP_LOG_FORMAT", "json"),
            ("VP_NODE_NAME", "node-a"),
        ])
        .unwrap();
        assert_eq!(s.database_url.expose(), "postgres://x@db/y");
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.workers(), 3);
        assert_eq!(s.max_upload_bytes, 1024);
        assert_eq!(s.cluster_cookie.as_ref().unwrap().expose(), "12345");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.node_name(), "node-a");
    }

    #[test]
    fn the_environment_names_are_those_loading_asks_for() {
        let names = Settings::environment_names();
        for name in [
            "VP_CONFIG",
            "DATABASE_URL",
            "VP_PUBLIC_URL",
            "VP_ENV",
            "AWS_*",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted, once each");
    }

    #[test]
    fn config_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vp.toml");
        std::fs::write(
            &path,
            "retention_days = 3\nmail_from = \"a@b.c\"\n[tuning]\njob_max_attempts = 9\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let s = load(&[("VP_CONFIG", path), ("VP_MAIL_FROM", "env@b.c")]).unwrap();
        assert_eq!(s.retention_days, 3);
        assert_eq!(s.tuning.job_max_attempts, 9);
        assert_eq!(s.mail_from, "env@b.c");
        // untouched keys keep their defaults
        assert_eq!(s.tuning.max_frames, 10_000);
        assert_eq!(s.tuning.shared_cores_dir(), None, "a node alone by default");
    }

    #[test]
    fn the_compose_nodes_share_their_machine_s_cores() {
        let s = load(&[("VP_CONFIG", "config/compose.toml")]).unwrap();
        assert_eq!(
            s.tuning.shared_cores_dir(),
            Some(std::path::Path::new("/var/lib/videoproject/cores"))
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = load(&[("VP_WORKERS", "many")]).unwrap_err().to_string();
        assert!(err.starts_with("VP_WORKERS"), "{err}");
        let err = load(&[("VP_HTTP_ADDR", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("VP_HTTP_ADDR"), "{err}");
        assert!(load(&[("VP_WORKERS", "0")]).is_err());
        assert!(load(&[("VP_CLUSTER_SEEDS", "a:1")]).is_err());
        assert!(load(&[("VP_CONFIG", "/nonexistent/vp.toml")]).is_err());
        let err = load(&[("VP_MIGRATIONS", "later")]).unwrap_err().to_string();
        assert!(err.starts_with("VP_MIGRATIONS"), "{err}");
    }

    #[test]
    fn nodes_migrate_unless_told_to_wait() {
        assert_eq!(load(&[]).unwrap().migrations, Migrations::Apply);
        let s = load(&[
            ("VP_MIGRATIONS", "await"),
            ("VP_APP_DATABASE_URL", "postgres://app:pw@db/v"),
        ])
        .unwrap();
        assert_eq!(s.migrations, Migrations::Await);
        assert_eq!(
            s.app_database_url.unwrap().expose(),
            "postgres://app:pw@db/v"
        );
        assert!(s.monitor_database_url.is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = load(&[("VP_TOKEN_KEY", "deadbeef")]).unwrap();
        assert!(!format!("{s:?}").contains("deadbeef"));
    }
}
