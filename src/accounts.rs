//! Accounts beyond signing in: sign-up sends a link that verifies the
//! address, and a forgotten password is replaced through a link sent to
//! it. Links are single-use and short-lived (`auth::LinkSecret`, stored as
//! digests); their emails travel through the outbox like every other, in
//! the transaction that makes the link, and at most a few a day reach one
//! address.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::auth::{self, AuthError, LinkSecret};
use crate::db::account_links::{self, Purpose};
use crate::db::users::{self, User};
use crate::db::{self, DbError};
use crate::domain::{Email, InvalidInput, Locale, Password, UserId};
use crate::notify::message;

/// Where links point and how long they and their emails last.
#[derive(Debug, Clone)]
pub struct LinkPolicy {
    /// The page's address; a link is `{public_url}/#verify=…` or `#reset=…`
    /// (in the fragment, so the secret stays out of every server's log).
    pub public_url: String,
    pub verify_for: Duration,
    pub reset_for: Duration,
    /// Account emails one address receives a day.
    pub per_day: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("this link was used already or has expired; ask for a new one")]
    LinkExpired,
    #[error("the address is verified already")]
    AlreadyVerified,
    #[error(
        "we sent {per_day} emails to this address today already; look for them, or try tomorrow"
    )]
    TooManyEmails { per_day: u32 },
    #[error("the account no longer exists")]
    Gone,
    /// The current password given with a change was not the account's.
    #[error("wrong password")]
    WrongPassword,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Creates an account speaking `locale`. With `links`, its address is
/// unverified and is sent a link that verifies it (in the outbox: the
/// caller wakes the notifier); without (an operator's `user add`), the
/// address counts as verified.
pub async fn register(
    pool: &Pool,
    email: &str,
    password: &str,
    locale: Locale,
    links: Option<&LinkPolicy>,
) -> Result<User, AccountError> {
    let email = Email::parse(email)?;
    let password = Password::parse(password)?;
    let hash = auth::hash_password(password).await?;
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await.map_err(DbError::from)?;
    let user = match users::insert_user(&tx, &email, &hash, links.is_none(), locale).await {
        Ok(user) => user,
        Err(e) if e.is_unique_violation() => return Err(AccountError::EmailTaken),
        Err(e) => return Err(e.into()),
    };
    if let Some(links) = links {
        // a new address has had no email from us: this one always fits
        send_link(&tx, user.id, Purpose::VerifyEmail, links).await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(user)
}

/// Sends the signed-in user a new verification link (in the outbox: the
/// caller wakes the notifier).
pub async fn resend_verification(
    pool: &Pool,
    user: UserId,
    links: &LinkPolicy,
) -> Result<User, AccountError> {
    let user = users::get_user(pool, user)
        .await?
        .ok_or(AccountError::Gone)?;
    if user.email_verified {
        return Err(AccountError::AlreadyVerified);
    }
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await.map_err(DbError::from)?;
    if !send_link(&tx, user.id, Purpose::VerifyEmail, links).await? {
        return Err(AccountError::TooManyEmails {
            per_day: links.per_day,
        });
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(user)
}

/// Opens a verification link: the address is its owner's.
pub async fn verify_email(pool: &Pool, secret: &str) -> Result<User, AccountError> {
    let secret = LinkSecret::parse(secret).ok_or(AccountError::LinkExpired)?;
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await.map_err(DbError::from)?;
    let user = account_links::consume(&tx, &secret.digest(), Purpose::VerifyEmail)
        .await?
        .ok_or(AccountError::LinkExpired)?;
    let user = users::mark_verified(&tx, user)
        .await?
        .ok_or(AccountError::LinkExpired)?;
    account_links::retire(&tx, user.id, Purpose::VerifyEmail).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(user)
}

/// Sends a reset link to `email`'s account, if there is one (enabled, and
/// with fewer than its reset emails for the day); whether one is in the
/// outbox now. The caller answers before this runs, so neither the answer
/// nor its timing tells which addresses have accounts.
pub async fn request_reset(
    pool: &Pool,
    email: &Email,
    links: &LinkPolicy,
) -> Result<bool, AccountError> {
    let Some(user) = users::find_active(pool, email).await? else {
        return Ok(false);
    };
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await.map_err(DbError::from)?;
    if !send_link(&tx, user.id, Purpose::PasswordReset, links).await? {
        return Ok(false);
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(true)
}

/// Opens a reset link: sets `password` and ends every session of the
/// account (its other reset links too). The link is used up only when the
/// password is set.
pub async fn reset_password(
    pool: &Pool,
    secret: &str,
    password: &str,
) -> Result<User, AccountError> {
    let password = Password::parse(password)?;
    let secret = LinkSecret::parse(secret).ok_or(AccountError::LinkExpired)?;
    let digest = secret.digest();
    // hashed before the transaction, which then holds the link's row only
    // for a moment; a link that could not open costs no hash
    if !account_links::is_open(pool, &digest, Purpose::PasswordReset).await? {
        return Err(AccountError::LinkExpired);
    }
    let hash = auth::hash_password(password).await?;
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await.map_err(DbError::from)?;
    let user = account_links::consume(&tx, &digest, Purpose::PasswordReset)
        .await?
        .ok_or(AccountError::LinkExpired)?;
    let user = users::reset_password(&tx, user, &hash)
        .await?
        .ok_or(AccountError::LinkExpired)?;
    account_links::retire(&tx, user.id, Purpose::PasswordReset).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(user)
}

/// Changes the password of signed-in `user`, who gave the `current` one
/// (checked as sign-in checks it), and ends every session of theirs but
/// `survivor` (the first revocation id of the caller's token).
pub async fn change_password(
    pool: &Pool,
    user: UserId,
    current: &str,
    new: &str,
    survivor: Option<&[u8]>,
) -> Result<User, AccountError> {
    let new = Password::parse(new)?;
    let (_, stored) = users::credentials_of(pool, user)
        .await?
        .ok_or(AccountError::Gone)?;
    if !auth::verify_password(current.to_owned(), Some(stored)).await? {
        return Err(AccountError::WrongPassword);
    }
    let hash = auth::hash_password(new).await?;
    users::change_password(pool, user, &hash, survivor)
        .await?
        .ok_or(AccountError::Gone)
}

/// Makes a link for `purpose` and queues its email in `tx`; false (and
/// `tx` must be dropped) when the address had its account emails for today.
async fn send_link(
    tx: &deadpool_postgres::Transaction<'_>,
    user: UserId,
    purpose: Purpose,
    links: &LinkPolicy,
) -> Result<bool, DbError> {
    let secret = LinkSecret::new();
    let (valid_for, mail) = match purpose {
        Purpose::VerifyEmail => {
            let link = format!("{}/#verify={}", links.public_url, secret.expose());
            let days = links.verify_for.as_secs().div_ceil(86_400);
            (links.verify_for, message::verify_email(&link, days))
        }
        Purpose::PasswordReset => {
            let link = format!("{}/#reset={}", links.public_url, secret.expose());
            let minutes = links.reset_for.as_secs().div_ceil(60);
            (links.reset_for, message::password_reset(&link, minutes))
        }
    };
    account_links::insert(tx, user, purpose, &secret.digest(), valid_for).await?;
    db::outbox::insert_account_email(tx, user, &mail, links.per_day).await
}
