//! Accounts.

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::DbResult;
use crate::domain::{Email, UserId};

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub notify_on_success: bool,
    pub webhook_url: Option<String>,
    /// The key webhook events are signed with; set with the URL.
    pub webhook_secret: Option<String>,
}

impl User {
    fn from_row(row: &Row) -> Self {
        Self {
            id: UserId(row.get("id")),
            email: Email::from_trusted(row.get("email")),
            notify_on_success: row.get("notify_on_success"),
            webhook_url: row.get("webhook_url"),
            webhook_secret: row.get("webhook_secret"),
        }
    }
}

/// Inserts a user; a taken email is a unique violation (`DbError::is_unique_violation`).
pub async fn insert_user(pool: &Pool, email: &Email, password_hash: &str) -> DbResult<User> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)
             RETURNING id, email, notify_on_success, webhook_url, webhook_secret",
            &[&UserId::new().0, &email.as_str(), &password_hash],
        )
        .await?;
    Ok(User::from_row(&row))
}

/// The user and their password hash, for sign-in.
pub async fn find_credentials(pool: &Pool, email: &Email) -> DbResult<Option<(User, String)>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, email, notify_on_success, webhook_url, webhook_secret, password_hash FROM users
             WHERE email = $1 AND disabled_at IS NULL",
            &[&email.as_str()],
        )
        .await?;
    Ok(row.map(|r| (User::from_row(&r), r.get("password_hash"))))
}

pub async fn get_user(pool: &Pool, id: UserId) -> DbResult<Option<User>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, email, notify_on_success, webhook_url, webhook_secret FROM users WHERE id = $1",
            &[&id.0],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// A change of preferences; `None` fields stay as they are.
#[derive(Debug, Default)]
pub struct Preferences {
    pub notify_on_success: Option<bool>,
    /// `Some(None)` removes the webhook (and its key).
    pub webhook_url: Option<Option<String>>,
    /// Replace the webhook key with a new one.
    pub rotate_webhook_secret: bool,
}

/// Changes only the fields given. Setting a webhook gives it a key when it
/// has none; `fresh_secret` is that key, or the replacement on rotation.
pub async fn update_preferences(
    pool: &Pool,
    id: UserId,
    change: Preferences,
    fresh_secret: &str,
) -> DbResult<Option<User>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "UPDATE users SET
                notify_on_success = COALESCE($2, notify_on_success),
                webhook_url = CASE WHEN $3 THEN $4 ELSE webhook_url END,
                webhook_secret = CASE
                    WHEN (CASE WHEN $3 THEN $4 ELSE webhook_url END) IS NULL THEN NULL
                    WHEN $5 OR webhook_secret IS NULL THEN $6
                    ELSE webhook_secret END
             WHERE id = $1
             RETURNING id, email, notify_on_success, webhook_url, webhook_secret",
            &[
                &id.0,
                &change.notify_on_success,
                &change.webhook_url.is_some(),
                &change.webhook_url.flatten(),
                &change.rotate_webhook_secret,
                &fresh_secret,
            ],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// Disables (or enables again) the account with `email`; false when there is none.
pub async fn set_disabled(pool: &Pool, email: &Email, disabled: bool) -> DbResult<bool> {
    let conn = pool.get().await?;
    let changed = conn
        .execute(
            "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
             WHERE email = $1",
            &[&email.as_str(), &disabled],
        )
        .await?;
    Ok(changed == 1)
}
