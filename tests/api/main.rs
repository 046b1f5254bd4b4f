//! Black-box tests: the real binary, a real PostgreSQL, the real ffmpeg and
//! a real SMTP server, spoken to over HTTP the way a client would.

mod accounts;
mod actions;
mod browser;
mod caches;
mod cluster;
mod db_tls;
pub mod email_links;
mod frames;
mod hostile;
mod isolation;
mod locales;
mod migrations;
mod ops;
mod page;
mod peaks;
mod processing;
mod s3;
mod security;
mod videos;
mod webhooks;

// the harness the benchmarks share (test-support/)
use videoproject_test_support as helpers;
