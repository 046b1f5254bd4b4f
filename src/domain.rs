//! Parse-at-the-edge types: once a request is past the HTTP layer, emails,
//! passwords, ids and frame options are these types, never raw strings.

mod email;
mod failure_code;
mod filename;
mod ids;
mod locale;
mod options;
mod password;
mod video_name;

pub use email::Email;
pub use failure_code::FailureCode;
pub use filename::Filename;
pub use ids::{IdempotencyKey, JobId, UserId};
pub use locale::Locale;
pub use options::{FrameOptions, OptionsError, RawOptions, StoredOptions};
pub use password::Password;
pub use video_name::VideoName;

/// Why a value from the outside was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
