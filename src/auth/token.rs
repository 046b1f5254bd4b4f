//! Session tokens: biscuits carrying the user id and an expiry, signed by a
//! root key every node shares (`keys`: several may be configured, for
//! rotation). Revocation ids live in PostgreSQL, so a revoked token is
//! refused by every node; tokens lately found good are kept (`verified`).
//! A token's checks for its use are `authorizer`'s; a download link
//! (`download_links`) is the caller's own session token confined to one
//! video's zip.

mod authorizer;
mod download_links;
mod keys;
mod verified;

pub use download_links::archive_path;
pub use keys::TokenKey;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use biscuit_auth::macros::biscuit;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::future::BoxFuture;

use super::{AuthError, Authenticator, Credentials, LinkScope, Principal, Session};
use crate::db::changes::{Changes, Topic};
use crate::db::{self, DbError};
use crate::domain::{JobId, UserId};
use authorizer::Use;
use download_links::LinkCache;
use keys::KeyRing;
use verified::{VERIFIED_FOR, VerifiedCache};

pub struct SessionTokens {
    keys: KeyRing,
    ttl: Duration,
    link_ttl: Duration,
    pool: Pool,
    links: LinkCache,
    verified: VerifiedCache,
}

/// How long a revocation waits to hear itself from the change feed.
const REVOCATION_HEARD_WITHIN: Duration = Duration::from_secs(1);
/// The longest token presented: a session token is ~330 characters and a
/// download link's ~600.
const MAX_TOKEN_CHARS: usize = 2048;

impl SessionTokens {
    /// `keys[0]` signs; every key verifies. `ttl` is a session's lifetime,
    /// `link_ttl` a download link's.
    /// Tokens checked are kept for a while, as long as `changes` heard of no
    /// revocation (`Changes::default()`: never).
    pub fn new(
        keys: &[TokenKey],
        ttl: Duration,
        link_ttl: Duration,
        pool: Pool,
        changes: Arc<Changes>,
    ) -> Self {
        Self {
            keys: KeyRing::new(keys),
            ttl,
            link_ttl,
            pool,
            links: LinkCache::default(),
            verified: VerifiedCache::new(changes),
        }
    }

    /// Mints a token for `user` in their session `epoch`, valid for the
    /// configured time.
    pub fn mint(&self, user: UserId, epoch: i64) -> (String, DateTime<Utc>) {
        let expires = SystemTime::now() + self.ttl;
        let (key, key_id) = self.keys.signing();
        let token = biscuit!(
            r#"user({user}); epoch({epoch}); check if time($t), $t < {expires};"#,
            user = user.to_string(),
            epoch = epoch,
            expires = expires,
        )
        .root_key_id(key_id)
        .build(key)
        .and_then(|b| b.to_base64())
        .expect("minting a token with a valid key cannot fail");
        (token, DateTime::<Utc>::from(expires))
    }

    /// How long a download link is handed out again after it was made.
    pub fn link_reuse(&self) -> Duration {
        LinkCache::reuse_for(self.link_ttl)
    }

    /// A link that downloads `video`'s zip for the link lifetime (or until
    /// the session ends, if sooner), without any other header.
    pub fn download_link(&self, session: &Session, video: JobId) -> Option<String> {
        let token = self.link_token(session, video, LinkScope::Download)?;
        Some(format!("/api/v1/videos/{video}/frames.zip?token={token}"))
    }

    /// A token that reads what `scope` allows of `video` (as `?token=`)
    /// for the link lifetime, or until the session ends, if sooner.
    pub fn link_token(&self, session: &Session, video: JobId, scope: LinkScope) -> Option<String> {
        let key = (session.id.clone(), video, scope);
        self.links.get_or_mint(key, self.link_ttl, || {
            download_links::mint(session, video, scope, SystemTime::now() + self.link_ttl)
        })
    }

    /// A link that downloads one zip of `videos`' zips for the link
    /// lifetime (or until the session ends, if sooner).
    pub fn archive_link(&self, session: &Session, videos: &[JobId]) -> Option<String> {
        download_links::mint_archive(session, videos, SystemTime::now() + self.link_ttl)
    }

    /// Verifies signature, expiry and the checks for `usage`; returns the
    /// user and the token.
    #[cfg(test)]
    fn verify(
        &self,
        token: &str,
        usage: &Use,
    ) -> Result<(UserId, biscuit_auth::Biscuit), AuthError> {
        let biscuit = self.keys.parse(token)?;
        let holder = authorizer::authorize(&biscuit, usage, SystemTime::now())?;
        Ok((holder.user, biscuit))
    }

    /// Revokes a session for good; kept until any token of it would have expired.
    pub async fn revoke(&self, session: &Session) -> Result<(), DbError> {
        let until =
            Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(1));
        let ids = session.token.revocation_identifiers();
        self.ending_sessions(db::keys::insert_revocations(&self.pool, &ids, until))
            .await
    }

    /// Runs `ending`, a write that refuses tokens (a revocation, a password
    /// reset); when it succeeds, answers once the nodes keeping verified
    /// tokens have heard of it, so no node accepts them afterwards.
    pub async fn ending_sessions<T, E>(
        &self,
        ending: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let changes = &self.verified.changes;
        let mark = changes.auth_mark();
        let done = ending.await?;
        changes.touch(Topic::Auth);
        if let Some(mark) = mark
            && !changes.hear_auth_after(mark, REVOCATION_HEARD_WITHIN).await
        {
            tracing::warn!("the end of the sessions was not heard back within a second");
        }
        Ok(done)
    }
}

impl Authenticator for SessionTokens {
    fn authenticate<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            let (token, usage) = match credentials {
                Credentials::Bearer(token) => (token, Use::Api),
                Credentials::Link {
                    token,
                    video,
                    scope,
                } => (token, Use::Link(*scope, *video)),
                Credentials::ArchiveLink { token, videos } => {
                    (token, Use::Archive(download_links::archive_digest(videos)))
                }
            };
            let api = matches!(usage, Use::Api);
            if api && let Some(principal) = self.verified.get(token) {
                return Ok(principal);
            }
            // an oversized token costs a verification per block: refused unread
            if token.len() > MAX_TOKEN_CHARS {
                return Err(AuthError::Invalid);
            }
            // stamped before the revocation check: a revocation heard later spoils it
            let read = self.verified.changes.stamp();
            let biscuit = self.keys.parse(token)?;
            let now = SystemTime::now();
            let holder = authorizer::admit(&biscuit, &usage, now)?;
            let ids = biscuit.revocation_identifiers();
            if db::keys::refused(&self.pool, &ids, holder.user, holder.epoch).await? {
                return Err(AuthError::Revoked);
            }
            // kept only if it will still be good when the copy is last used
            let lasts = api && authorizer::authorize(&biscuit, &usage, now + VERIFIED_FOR).is_ok();
            let principal = Principal {
                user_id: holder.user,
                session: Some(Session::new(biscuit)),
            };
            if let Some(read) = read
                && lasts
            {
                self.verified.keep(token, &principal, read);
            }
            Ok(principal)
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use biscuit_auth::macros::block;
    use biscuit_auth::{Biscuit, KeyPair};

    use super::*;

    pub(super) fn key() -> TokenKey {
        TokenKey::from_hex(&KeyPair::new().private().to_bytes_hex()).unwrap()
    }

    pub(super) fn tokens_with(keys: &[TokenKey], ttl: Duration) -> SessionTokens {
        // a pool that is never used by `mint`/`verify`
        let pool = crate::db::connect("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
        SessionTokens::new(keys, ttl, Duration::from_secs(900), pool, Arc::default())
    }

    pub(super) fn tokens(ttl: Duration) -> SessionTokens {
        tokens_with(&[key()], ttl)
    }

    pub(super) fn session(t: &SessionTokens, token: &str) -> Session {
        let (_, biscuit) = t.verify(token, &Use::Api).unwrap();
        Session::new(biscuit)
    }

    /// The `token` query parameter of a download link.
    pub(super) fn link_token(link: &str) -> &str {
        link.split_once("?token=").unwrap().1
    }

    #[test]
    fn mint_and_verify() {
        let t = tokens(Duration::from_secs(3600));
        let user = UserId::new();
        let (token, expires) = t.mint(user, 0);
        assert!(expires > Utc::now());
        let (got, biscuit) = t.verify(&token, &Use::Api).unwrap();
        assert_eq!(got, user);
        assert!(!biscuit.revocation_identifiers().is_empty());
        assert_eq!(biscuit.root_key_id(), Some(t.keys.signing().1));
    }

    #[test]
    fn refuses_expired_forged_and_garbage() {
        let expired = tokens(Duration::ZERO);
        let (token, _) = expired.mint(UserId::new(), 0);
        assert!(matches!(
            expired.verify(&token, &Use::Api),
            Err(AuthError::Invalid)
        ));

        let other = tokens(Duration::from_secs(60));
        let (token, _) = other.mint(UserId::new(), 0);
        assert!(
            tokens(Duration::from_secs(60))
                .verify(&token, &Use::Api)
                .is_err(),
            "signed by another key"
        );
        assert!(other.verify("not-a-token", &Use::Api).is_err());
        assert!(other.verify(&token[..token.len() / 2], &Use::Api).is_err());
    }

    /// What `authenticate` says of `token`; the refusals tested here come
    /// before the revocation check, so no database is needed.
    async fn refused(t: &SessionTokens, token: String) -> bool {
        matches!(
            t.authenticate(&Credentials::Bearer(token)).await,
            Err(AuthError::Invalid)
        )
    }

    #[tokio::test]
    async fn tokens_without_an_expiry_or_too_big_are_refused_before_any_query() {
        let t = tokens(Duration::from_secs(3600));
        let user = UserId::new();
        let forever = biscuit!(r#"user({user});"#, user = user.to_string())
            .build(t.keys.signing().0)
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(refused(&t, forever).await, "no expiry");
        let (token, _) = t.mint(user, 0);
        let three_blocks = Biscuit::from_base64(&token, t.keys.signing().0.public())
            .unwrap()
            .append(block!(r#"check if operation("api");"#))
            .unwrap()
            .append(block!(r#"check if operation("api");"#))
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(refused(&t, three_blocks).await, "three blocks");
        assert!(
            refused(&t, "A".repeat(MAX_TOKEN_CHARS + 1)).await,
            "oversized"
        );
    }
}
