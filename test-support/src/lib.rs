//! What the black-box tests and the benchmarks share: each test gets a fresh
//! PostgreSQL database (`db`), a media directory, optionally a real SMTP
//! server (`smtp`, aiosmtpd) on a free loopback port and a webhook receiver
//! (`webhook`), and the real `videoproject` binary started on port 0
//! (`node`, `app`); test videos come from ffmpeg's lavfi sources
//! (`fixtures`), certificates from a CA of the test's own (`tls`), and the
//! checks of a finished video from `checks`.

mod app;
mod checks;
mod db;
mod fixtures;
mod node;
mod smtp;
mod tls;
mod webhook;

pub use app::*;
pub use checks::*;
pub use db::*;
pub use fixtures::*;
pub use node::*;
pub use smtp::*;
pub use tls::*;
pub use webhook::*;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a server we started accepts connections on `port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::yield_now();
    }
}

/// The repository's root (its virtualenvs, manifests and scripts).
pub fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
