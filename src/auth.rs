//! Who is calling. Routes see only [`Authenticator`] and the [`Principal`] it
//! yields, so other schemes (API keys, an identity provider) can be added
//! beside the biscuit session tokens without touching the routes.

mod limiter;
mod links;
mod password;
mod token;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use limiter::{SignInLimiter, SignInLimits, address_key};
pub use links::LinkSecret;
pub use password::{hash_password, prepare as prepare_passwords, verify_password};
pub use token::{SessionTokens, TokenKey, archive_path};

use crate::db::DbError;
use crate::domain::{JobId, UserId};

/// What the client presented.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `Authorization: Bearer …`: the whole API.
    Bearer(String),
    /// The `token` of an archive link: one zip of these videos' zips.
    ArchiveLink { token: String, videos: Vec<JobId> },
    /// The `token` of a link: what `scope` allows of one video, nothing else.
    Link {
        token: String,
        video: JobId,
        scope: LinkScope,
    },
}

/// What a link may read of its video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkScope {
    /// The zip (`download_url`).
    Download,
    /// The frames, their thumbnails and the contact sheet.
    Frames,
}

impl LinkScope {
    /// The operation a link of this scope is confined to.
    pub fn operation(self) -> &'static str {
        match self {
            LinkScope::Download => "download",
            LinkScope::Frames => "frames",
        }
    }
}

impl Credentials {
    /// Reads an `Authorization` header value.
    pub fn from_header(value: &str) -> Option<Self> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let token = rest.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .then(|| Credentials::Bearer(token.to_owned()))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    /// Present when the caller used a session token, so it can be revoked.
    pub session: Option<Session>,
}

#[derive(Clone)]
pub struct Session {
    /// The verified token: its revocation ids end the session, and download
    /// links are derived from it.
    pub token: Arc<biscuit_auth::Biscuit>,
    /// Its revocation ids, joined: names the session (download links made
    /// for it are kept under this name).
    pub id: Arc<[u8]>,
}

impl Session {
    pub fn new(token: biscuit_auth::Biscuit) -> Self {
        let id = token.revocation_identifiers().concat().into();
        Self {
            token: Arc::new(token),
            id,
        }
    }
}

/// Never prints the token.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or malformed Authorization header")]
    Missing,
    #[error("the token is invalid or expired")]
    Invalid,
    #[error("the token was revoked")]
    Revoked,
    /// The check ran out of its time budget: the node is overloaded, the
    /// token may well be fine.
    #[error("the token could not be checked in time")]
    Busy,
    #[error(transparent)]
    Db(#[from] DbError),
}

pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

pub type SharedAuthenticator = Arc<dyn Authenticator>;
