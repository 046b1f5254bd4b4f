//! The token root key and revoked tokens.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::DbResult;
use crate::domain::UserId;

/// Returns the stored root key, storing `candidate` first if there is none.
/// Concurrent first starts agree on one key: the first insert wins.
pub async fn get_or_insert_signing_key(pool: &Pool, candidate: &str) -> DbResult<String> {
    let conn = pool.get().await?;
    conn.execute(
        "INSERT INTO signing_keys (id, private_key_hex) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        &[&candidate],
    )
    .await?;
    let row = conn
        .query_one("SELECT private_key_hex FROM signing_keys WHERE id = 1", &[])
        .await?;
    Ok(row.get(0))
}

pub async fn insert_revocations(
    pool: &Pool,
    ids: &[Vec<u8>],
    expires_at: DateTime<Utc>,
) -> DbResult<()> {
    let conn = pool.get().await?;
    conn.execute(
        "INSERT INTO revoked_tokens (revocation_id, expires_at)
         SELECT unnest($1::bytea[]), $2 ON CONFLICT DO NOTHING",
        &[&ids, &expires_at],
    )
    .await?;
    Ok(())
}

/// Whether a token is no longer good: one of its revocation ids was revoked,
/// its user was disabled, or their sessions of `epoch` were ended (a
/// password reset or change, a sign-out everywhere) — save the one session
/// a password change kept, in the epoch just before the current one. One
/// query, on every authenticated request.
pub async fn refused(pool: &Pool, ids: &[Vec<u8>], user: UserId, epoch: i64) -> DbResult<bool> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE revocation_id = ANY($1))
                 OR EXISTS (SELECT 1 FROM users WHERE id = $2
                            AND (disabled_at IS NOT NULL
                                 OR (session_epoch > $3
                                     AND NOT (session_epoch = $3 + 1
                                              AND coalesce(epoch_survivor = ANY($1), false)))))",
            &[&ids, &user.0, &epoch],
        )
        .await?;
    Ok(row.get(0))
}

/// Forgets revocations of tokens that have expired anyway.
pub async fn delete_expired_revocations(pool: &Pool) -> DbResult<u64> {
    let conn = pool.get().await?;
    Ok(conn
        .execute("DELETE FROM revoked_tokens WHERE expires_at < now()", &[])
        .await?)
}
