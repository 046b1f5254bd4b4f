//! Parse-at-the-edge types: once a request is past the HTTP layer, emails,
//! passwords, ids and frame options are these types, never raw strings.

mod email;
mod filename;
mod ids;
mod options;
mod password;

pub use email::Email;
pub use filename::Filename;
pub use ids::{IdempotencyKey, JobId, UserId};
pub use options::{FrameOptions, OptionsError, RawOptions, StoredOptions};
pub use password::Password;

/// Why a value from the outside was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
