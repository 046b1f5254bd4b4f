//! The checks a parsed token must pass for what it is presented for: its
//! shape, the biscuit authorizer run for the use (the API, or one video's
//! zip), and whom it speaks for.

use std::time::{Duration, SystemTime};

use biscuit_auth::macros::authorizer;
use biscuit_auth::{AuthorizerLimits, Biscuit};

use crate::auth::{AuthError, LinkScope};
use crate::domain::{JobId, UserId};

/// What a token is presented for: each use puts its own facts in the
/// authorizer, and a link's checks hold only for its one video and scope.
pub(super) enum Use {
    Api,
    Link(LinkScope, JobId),
    /// One archive of several videos' zips, named by the digest of their ids.
    Archive(String),
}

/// Whom a token speaks for.
pub(super) struct Holder {
    pub user: UserId,
    /// The user's session epoch when it was made (0 for tokens from before
    /// epochs): a password reset raises the user's, which refuses it.
    pub epoch: i64,
}

/// A session token has one block, a download link two.
const MAX_BLOCKS: usize = 2;
/// A token that still holds this far ahead carries no expiry.
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Admits `biscuit` for `usage` at `now`: no more blocks than ours have,
/// its checks pass, and it expires (a token good for ever was not made by
/// this service's sign-in). Revocation is the caller's to check.
pub(super) fn admit(biscuit: &Biscuit, usage: &Use, now: SystemTime) -> Result<Holder, AuthError> {
    if biscuit.block_count() > MAX_BLOCKS {
        return Err(AuthError::Invalid);
    }
    let holder = authorize(biscuit, usage, now)?;
    if authorize(biscuit, usage, now + NEVER).is_ok() {
        return Err(AuthError::Invalid);
    }
    Ok(holder)
}

/// Why the authorizer said no. Its time limit is wall-clock time, which a
/// node starved of CPU can exceed with a good token: that is overload, not a
/// bad token, and must not send a client back to sign in.
fn refusal(e: biscuit_auth::error::Token) -> AuthError {
    use biscuit_auth::error::{RunLimit, Token};
    match e {
        Token::RunLimit(RunLimit::Timeout) => AuthError::Busy,
        _ => AuthError::Invalid,
    }
}

/// Runs the token's checks for `usage` as if it were `now`; returns its holder.
pub(super) fn authorize(
    biscuit: &Biscuit,
    usage: &Use,
    now: SystemTime,
) -> Result<Holder, AuthError> {
    let builder = match usage {
        Use::Api => authorizer!(
            r#"time({now}); operation("api"); allow if user($u);"#,
            now = now
        ),
        Use::Link(scope, video) => authorizer!(
            r#"time({now}); operation({operation}); video({video}); allow if user($u);"#,
            now = now,
            operation = scope.operation(),
            video = video.to_string()
        ),
        Use::Archive(digest) => authorizer!(
            r#"time({now}); operation("archive"); archive({digest}); allow if user($u);"#,
            now = now,
            digest = digest.clone()
        ),
    };
    let mut authorizer = builder
        .set_limits(AuthorizerLimits {
            max_time: Duration::from_millis(20),
            ..Default::default()
        })
        .build(biscuit)
        .map_err(refusal)?;
    authorizer.authorize().map_err(refusal)?;
    let users: Vec<(String,)> = authorizer
        .query("data($u) <- user($u)")
        .map_err(|_| AuthError::Invalid)?;
    let user = match users.as_slice() {
        [(id,)] => UserId::parse(id).ok_or(AuthError::Invalid)?,
        _ => return Err(AuthError::Invalid),
    };
    let epochs: Vec<(i64,)> = authorizer
        .query("data($e) <- epoch($e)")
        .map_err(|_| AuthError::Invalid)?;
    let epoch = match epochs.as_slice() {
        [] => 0,
        [(e,)] => *e,
        _ => return Err(AuthError::Invalid),
    };
    Ok(Holder { user, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_limit_hit_is_overload_not_a_bad_token() {
        use biscuit_auth::error::{RunLimit, Token};
        assert!(matches!(
            refusal(Token::RunLimit(RunLimit::Timeout)),
            AuthError::Busy
        ));
        assert!(matches!(
            refusal(Token::RunLimit(RunLimit::TooManyFacts)),
            AuthError::Invalid
        ));
    }
}
