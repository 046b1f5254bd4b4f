//! Session tokens lately verified and found not revoked. Checking one costs
//! an Ed25519 verification, the authorizer and a database query; a client
//! sends the same token with every request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::Principal;
use crate::budgeted::Budgeted;
use crate::db::changes::{Changes, Stamp, Topic};

/// How long a verified token is kept: at most while no revocation or
/// disabled user was heard of, and only if it is still good this much later.
pub(super) const VERIFIED_FOR: Duration = Duration::from_secs(30);
/// How many verified tokens are kept.
const VERIFIED_ENTRIES: usize = 8192;

pub(super) struct VerifiedCache {
    /// What tells of revocations and disabled users.
    pub changes: Arc<Changes>,
    kept: Mutex<Budgeted<String, Verified>>,
}

struct Verified {
    principal: Principal,
    read: Stamp,
    at: Instant,
}

impl VerifiedCache {
    pub(super) fn new(changes: Arc<Changes>) -> Self {
        Self {
            changes,
            kept: Mutex::new(Budgeted::new(VERIFIED_ENTRIES)),
        }
    }

    fn fresh(&self, v: &Verified) -> bool {
        v.at.elapsed() < VERIFIED_FOR && self.changes.unchanged(Topic::Auth, v.read)
    }

    pub(super) fn get(&self, token: &str) -> Option<Principal> {
        let kept = self.kept.lock().unwrap();
        let v = kept.get(token)?;
        self.fresh(v).then(|| v.principal.clone())
    }

    /// Keeps `token` as `principal`'s, read from the database at `read`.
    pub(super) fn keep(&self, token: &str, principal: &Principal, read: Stamp) {
        let verified = Verified {
            principal: principal.clone(),
            read,
            at: Instant::now(),
        };
        let mut kept = self.kept.lock().unwrap();
        // checked under the lock: a revocation heard since the read spoils it
        if self.fresh(&verified) {
            kept.insert(token.to_owned(), verified, 1, |_, v| self.fresh(v));
        }
    }
}
