//! The job state machine. Every transition of every path (upload, claim,
//! completion, retry, failure, cancellation) is checked by [`next`].
//!
//! ```text
//! uploading ──► queued ──► processing ──► done
//!     │            │  ▲         │
//!     │            │  └─retry───┤
//!     ▼            ▼            ▼
//!   failed     cancelled      failed
//! ```
//! A running job can be cancelled as well: `DELETE` stops it wherever it is.

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSql,
    FromSql,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[postgres(name = "job_state")]
pub enum JobState {
    #[postgres(name = "uploading")]
    Uploading,
    #[postgres(name = "queued")]
    Queued,
    #[postgres(name = "processing")]
    Processing,
    #[postgres(name = "done")]
    Done,
    #[postgres(name = "failed")]
    Failed,
    #[postgres(name = "cancelled")]
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Uploading,
        JobState::Queued,
        JobState::Processing,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Uploading => "uploading",
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// The upload is durably stored and probed as a video.
    Stored,
    /// A worker took the job.
    Claimed,
    /// The zip is stored.
    Completed,
    /// A transient failure (node lost, ffmpeg killed, storage hiccup) with attempts left.
    Retry,
    /// A permanent failure, or attempts exhausted.
    Fail,
    /// The owner deleted the video.
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal job transition: {event:?} in state {from:?}")]
pub struct InvalidTransition {
    pub from: JobState,
    pub event: JobEvent,
}

/// The one place that decides whether `event` may happen in state `from`.
pub fn next(from: JobState, event: JobEvent) -> Result<JobState, InvalidTransition> {
    use JobEvent as E;
    use JobState as S;
    match (from, event) {
        (S::Uploading, E::Stored) => Ok(S::Queued),
        (S::Uploading, E::Fail) => Ok(S::Failed),
        (S::Queued, E::Claimed) => Ok(S::Processing),
        (S::Queued, E::Cancel) => Ok(S::Cancelled),
        (S::Processing, E::Completed) => Ok(S::Done),
        (S::Processing, E::Retry) => Ok(S::Queued),
        (S::Processing, E::Fail) => Ok(S::Failed),
        (S::Processing, E::Cancel) => Ok(S::Cancelled),
        _ => Err(InvalidTransition { from, event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobEvent as E;
    use JobState as S;

    const EVENTS: [JobEvent; 6] = [
        E::Stored,
        E::Claimed,
        E::Completed,
        E::Retry,
        E::Fail,
        E::Cancel,
    ];

    /// The whole table: every (state, event) pair and its outcome.
    #[test]
    fn transition_table() {
        let allowed = [
            (S::Uploading, E::Stored, S::Queued),
            (S::Uploading, E::Fail, S::Failed),
            (S::Queued, E::Claimed, S::Processing),
            (S::Queued, E::Cancel, S::Cancelled),
            (S::Processing, E::Completed, S::Done),
            (S::Processing, E::Retry, S::Queued),
            (S::Processing, E::Fail, S::Failed),
            (S::Processing, E::Cancel, S::Cancelled),
        ];
        for from in JobState::ALL {
            for event in EVENTS {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(next(from, event), Ok(to), "{from:?} + {event:?}"),
                    None => assert_eq!(
                        next(from, event),
                        Err(InvalidTransition { from, event }),
                        "{from:?} + {event:?} should be refused"
                    ),
                }
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in EVENTS {
                assert!(next(from, event).is_err(), "{from:?} + {event:?}");
            }
        }
    }

    #[test]
    fn names_match_the_database_enum() {
        let sql = include_str!("../../migrations/V1__initial.sql");
        for s in JobState::ALL {
            assert!(
                sql.contains(&format!("'{}'", s.as_str())),
                "{s:?} missing in SQL enum"
            );
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
