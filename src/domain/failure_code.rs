//! Why a video failed, as a code: what a program (and a translation) keys
//! on. The raw text of the failure (ffmpeg's or ffprobe's words) travels
//! beside it as the details.

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};

/// Stored as the `failure_code` enum of `jobs.error_code`.
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
#[serde(rename_all = "snake_case")]
#[postgres(name = "failure_code")]
pub enum FailureCode {
    /// Readable, but no video in it (audio only, a still image, …).
    #[postgres(name = "not_a_video")]
    NotAVideo,
    /// Damaged or not decodable.
    #[postgres(name = "corrupt")]
    Corrupt,
    /// Extraction ran but gave no frame.
    #[postgres(name = "no_frames")]
    NoFrames,
    /// It would cost, or cost, more than one job may.
    #[postgres(name = "over_budget")]
    OverBudget,
    /// ffmpeg took too long or stalled, on every attempt.
    #[postgres(name = "timed_out")]
    TimedOut,
    /// The media store failed, on every attempt.
    #[postgres(name = "storage")]
    Storage,
    /// The node running it went away, on every attempt.
    #[postgres(name = "interrupted")]
    Interrupted,
    /// Anything else: ours to fix, not the user's.
    #[postgres(name = "internal")]
    Internal,
}

impl FailureCode {
    pub const ALL: [FailureCode; 8] = [
        FailureCode::NotAVideo,
        FailureCode::Corrupt,
        FailureCode::NoFrames,
        FailureCode::OverBudget,
        FailureCode::TimedOut,
        FailureCode::Storage,
        FailureCode::Interrupted,
        FailureCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::NotAVideo => "not_a_video",
            FailureCode::Corrupt => "corrupt",
            FailureCode::NoFrames => "no_frames",
            FailureCode::OverBudget => "over_budget",
            FailureCode::TimedOut => "timed_out",
            FailureCode::Storage => "storage",
            FailureCode::Interrupted => "interrupted",
            FailureCode::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_the_serde_name() {
        for code in FailureCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }
}
