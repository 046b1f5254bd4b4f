//! A job is one uploaded video on its way to a frames zip. Its state lives in
//! PostgreSQL (`db::jobs`); this module owns the rules it moves by.

mod failure;
mod state;

use std::time::Duration;

pub use failure::{Failure, FailureCode};
pub use state::{InvalidTransition, JobEvent, JobState, next};

/// How often a running job's lease is renewed (with its progress), at most:
/// often enough for a live progress bar, and well inside any lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(RENEW_EVERY_MS);
const RENEW_EVERY_MS: u64 = 500;

/// An owner whose lease has gone unrenewed this long (three renewals) after
/// its peers saw it leave is gone: its jobs are taken back. A live owner
/// that only lost its session renews meanwhile, and keeps its work.
pub const SILENT_FOR: Duration = Duration::from_millis(3 * RENEW_EVERY_MS);
