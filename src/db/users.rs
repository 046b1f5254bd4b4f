//! Accounts.

use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio_postgres::Row;

use super::DbResult;
use crate::domain::{Email, Locale, UserId};

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub notify_on_success: bool,
    pub webhook_url: Option<String>,
    /// The key webhook events are signed with; set with the URL.
    pub webhook_secret: Option<String>,
    /// The owner of the address opened a link sent to it.
    pub email_verified: bool,
    /// Session tokens of an older epoch are refused (a password reset raises it).
    pub session_epoch: i64,
    /// The language of the account's emails and page.
    pub locale: Locale,
}

/// The columns [`User::from_row`] reads.
const USER: &str = "id, email, notify_on_success, webhook_url, webhook_secret, \
     email_verified_at IS NOT NULL AS email_verified, session_epoch, locale";

impl User {
    fn from_row(row: &Row) -> Self {
        Self {
            id: UserId(row.get("id")),
            email: Email::from_trusted(row.get("email")),
            notify_on_success: row.get("notify_on_success"),
            webhook_url: row.get("webhook_url"),
            webhook_secret: row.get("webhook_secret"),
            email_verified: row.get("email_verified"),
            session_epoch: row.get("session_epoch"),
            locale: Locale::from_db(row.get("locale")),
        }
    }
}

/// Inserts a user, its address verified already or not; a taken email is a
/// unique violation (`DbError::is_unique_violation`).
pub async fn insert_user(
    client: &impl GenericClient,
    email: &Email,
    password_hash: &str,
    verified: bool,
    locale: Locale,
) -> DbResult<User> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO users (id, email, password_hash, email_verified_at, locale)
                 VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END, $5) RETURNING {USER}"
            ),
            &[
                &UserId::new().0,
                &email.as_str(),
                &password_hash,
                &verified,
                &locale.as_str(),
            ],
        )
        .await?;
    Ok(User::from_row(&row))
}

/// The account of `email`, unless it is disabled.
pub async fn find_active(pool: &Pool, email: &Email) -> DbResult<Option<User>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {USER} FROM users WHERE email = $1 AND disabled_at IS NULL"),
            &[&email.as_str()],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// Records that the owner of `user`'s address opened a link sent to it.
pub async fn mark_verified(tx: &Transaction<'_>, user: UserId) -> DbResult<Option<User>> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE users SET email_verified_at = coalesce(email_verified_at, now())
                 WHERE id = $1 RETURNING {USER}"
            ),
            &[&user.0],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// Sets a new password and ends every session of `user` (a new epoch); the
/// reset link came through the address, so it counts as verified.
pub async fn reset_password(
    tx: &Transaction<'_>,
    user: UserId,
    password_hash: &str,
) -> DbResult<Option<User>> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1,
                     epoch_survivor = NULL, email_verified_at = coalesce(email_verified_at, now())
                 WHERE id = $1 AND disabled_at IS NULL RETURNING {USER}"
            ),
            &[&user.0, &password_hash],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// Sets a new password, chosen by a signed-in user, and ends every session
/// of theirs but one: tokens of the epoch before the new one are refused
/// unless their first revocation id is `survivor`'s (the session that made
/// the change; None: none survives).
pub async fn change_password(
    pool: &Pool,
    user: UserId,
    password_hash: &str,
    survivor: Option<&[u8]>,
) -> DbResult<Option<User>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!(
                "UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1,
                     epoch_survivor = $3
                 WHERE id = $1 AND disabled_at IS NULL RETURNING {USER}"
            ),
            &[&user.0, &password_hash, &survivor],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// Ends every session of `user` (a new epoch, none surviving); false when
/// there is no such user.
pub async fn end_sessions(pool: &Pool, user: UserId) -> DbResult<bool> {
    let conn = pool.get().await?;
    let changed = conn
        .execute(
            "UPDATE users SET session_epoch = session_epoch + 1, epoch_survivor = NULL WHERE id = $1",
            &[&user.0],
        )
        .await?;
    Ok(changed == 1)
}

/// The enabled user `id` and their password hash.
pub async fn credentials_of(pool: &Pool, id: UserId) -> DbResult<Option<(User, String)>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!(
                "SELECT {USER}, password_hash FROM users WHERE id = $1 AND disabled_at IS NULL"
            ),
            &[&id.0],
        )
        .await?;
    Ok(row.map(|r| (User::from_row(&r), r.get("password_hash"))))
}

/// The user and their password hash, for sign-in.
pub async fn find_credentials(pool: &Pool, email: &Email) -> DbResult<Option<(User, String)>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!(
                "SELECT {USER}, password_hash FROM users WHERE email = $1 AND disabled_at IS NULL"
            ),
            &[&email.as_str()],
        )
        .await?;
    Ok(row.map(|r| (User::from_row(&r), r.get("password_hash"))))
}

pub async fn get_user(pool: &Pool, id: UserId) -> DbResult<Option<User>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(&format!("SELECT {USER} FROM users WHERE id = $1"), &[&id.0])
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
    pub locale: Option<Locale>,
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
            &format!(
                "UPDATE users SET
                notify_on_success = COALESCE($2, notify_on_success),
                webhook_url = CASE WHEN $3 THEN $4 ELSE webhook_url END,
                webhook_secret = CASE
                    WHEN (CASE WHEN $3 THEN $4 ELSE webhook_url END) IS NULL THEN NULL
                    WHEN $5 OR webhook_secret IS NULL THEN $6
                    ELSE webhook_secret END,
                locale = COALESCE($7, locale)
             WHERE id = $1
             RETURNING {USER}"
            ),
            &[
                &id.0,
                &change.notify_on_success,
                &change.webhook_url.is_some(),
                &change.webhook_url.flatten(),
                &change.rotate_webhook_secret,
                &fresh_secret,
                &change.locale.map(Locale::as_str),
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
