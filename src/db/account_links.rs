//! Single-use links sent by email, stored by the digest of their secret
//! (`auth::LinkSecret`).

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool, Transaction};

use super::DbResult;
use crate::domain::UserId;

/// What a link does when opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

pub async fn insert(
    client: &impl GenericClient,
    user: UserId,
    purpose: Purpose,
    digest: &[u8],
    valid_for: Duration,
) -> DbResult<()> {
    client
        .execute(
            "INSERT INTO account_links (digest, user_id, purpose, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            &[
                &digest,
                &user.0,
                &purpose.as_str(),
                &valid_for.as_secs_f64(),
            ],
        )
        .await?;
    Ok(())
}

/// Uses the link up: its user, once, while it has not expired; `None` for
/// a link unknown, used already, expired, or made for another purpose.
pub async fn consume(
    tx: &Transaction<'_>,
    digest: &[u8],
    purpose: Purpose,
) -> DbResult<Option<UserId>> {
    let row = tx
        .query_opt(
            "UPDATE account_links SET used_at = now()
             WHERE digest = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
             RETURNING user_id",
            &[&digest, &purpose.as_str()],
        )
        .await?;
    Ok(row.map(|r| UserId(r.get(0))))
}

/// Whether the link would open now (not used, not expired), without using
/// it up or locking it.
pub async fn is_open(pool: &Pool, digest: &[u8], purpose: Purpose) -> DbResult<bool> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM account_links
                 WHERE digest = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now())",
            &[&digest, &purpose.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

/// Uses up every open link of `user` for `purpose` (the one that was opened
/// makes the others pointless).
pub async fn retire(tx: &Transaction<'_>, user: UserId, purpose: Purpose) -> DbResult<()> {
    tx.execute(
        "UPDATE account_links SET used_at = now()
         WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        &[&user.0, &purpose.as_str()],
    )
    .await?;
    Ok(())
}

/// Forgets links that expired a day ago or more.
pub async fn delete_stale(pool: &Pool) -> DbResult<u64> {
    let conn = pool.get().await?;
    Ok(conn
        .execute(
            "DELETE FROM account_links WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .await?)
}
