//! Password hashing: argon2id with m = 19 MiB, t = 2, p = 1 (the OWASP
//! baseline), a random 16-byte salt, stored as a PHC string. Hashing costs
//! ~20 ms of CPU and 19 MiB, so it runs on the blocking pool, at most two
//! per core at once: a flood of sign-ins waits its turn briefly, then is
//! told to come back (503) instead of taking the node's memory.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use super::AuthError;
use crate::domain::Password;

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes running at once, at most.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::sync::Semaphore::new(cores * 2)
});
/// How long a sign-in waits for a hashing slot before it is told to retry.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn hashing_slot() -> Result<tokio::sync::SemaphorePermit<'static>, AuthError> {
    match tokio::time::timeout(HASH_WAIT, HASHING.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AuthError::Busy),
    }
}

pub async fn hash_password(password: Password) -> Result<String, AuthError> {
    let _slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        hasher()
            .hash_password(password.expose().as_bytes())
            .expect("argon2 hashing with valid parameters cannot fail")
            .to_string()
    })
    .await
    .expect("hashing task panicked"))
}

/// A hash of a password no one has, made once: an unknown account is checked
/// against it so that its answer costs one verification, like a known one.
static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    hasher()
        .hash_password(b"no account has this password")
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
});

/// Checks `password` against a stored hash. With no hash (unknown user) it
/// still spends the time of one verification, so timing does not reveal
/// which emails have accounts.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, AuthError> {
    let _slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let phc = stored.as_deref().unwrap_or(DECOY.as_str());
        let ok = PasswordHash::new(phc)
            .map(|parsed| {
                hasher()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && stored.is_some()
    })
    .await
    .unwrap_or(false))
}

/// Makes the decoy hash now, so the first sign-in of an unknown account is
/// not slower than the others.
pub fn prepare() {
    std::sync::LazyLock::force(&DECOY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let pw = Password::parse("correct horse").unwrap();
        let a = hash_password(pw.clone()).await.unwrap();
        let b = hash_password(pw).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        let verify = |pw: &str, hash: Option<String>| verify_password(pw.into(), hash);
        assert!(verify("correct horse", Some(a.clone())).await.unwrap());
        assert!(!verify("wrong horse", Some(a)).await.unwrap());
        assert!(!verify("correct horse", None).await.unwrap());
        assert!(!verify("x", Some("not a hash".into())).await.unwrap());
    }
}
