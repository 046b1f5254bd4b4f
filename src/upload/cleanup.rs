//! The guard of an upload being received: until the upload is queued, its
//! row and file are removed when it is given up, at once when the caller
//! can wait for it, else in the background, waiting out a database that is
//! away (the likely reason the upload failed). A crash, or a runtime already
//! gone, is covered by the stale-upload sweep (`upload::abandoned`).

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::{self, changes::Topic};
use crate::domain::{JobId, UserId};
use crate::storage::MediaStore;

/// First and longest pause between attempts to remove a refused upload
/// while the database is unreachable.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);
const CLEANUP_RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a refusal waits for its upload's row to be removed (a list
/// right after the answer must not show it); past that, the guard goes on
/// removing it in the background.
const CLEANUP_WAIT: Duration = Duration::from_secs(5);

/// What removing an upload touches.
#[derive(Clone)]
pub(super) struct Remover {
    pub pool: Pool,
    pub store: MediaStore,
    pub changes: std::sync::Arc<db::changes::Changes>,
}

impl Remover {
    /// Removes an upload that did not make it: the row first, and the file
    /// only if the row was still `uploading` (a commit that raced in made it
    /// a queued job whose file must stay).
    async fn remove(&self, id: JobId, owner: UserId) -> Result<(), db::DbError> {
        if db::jobs::delete_uploading(&self.pool, id).await? {
            // the owner's next list, on this node, goes without it
            self.changes.touch(Topic::Owner(owner));
            if let Err(e) = self.store.delete_job(id).await {
                tracing::warn!(job_id = %id, error = %e, "could not delete refused upload's file");
            }
        }
        Ok(())
    }
}

/// Deletes the row and file of an upload that did not make it, unless disarmed.
pub(super) struct Cleanup {
    id: JobId,
    owner: UserId,
    remover: Remover,
    armed: bool,
}

impl Cleanup {
    pub fn new(id: JobId, owner: UserId, remover: Remover) -> Self {
        Self {
            id,
            owner,
            remover,
            armed: true,
        }
    }

    /// The upload is queued: its row and file stay.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Removes the upload before its refusal is answered. A database that
    /// does not answer in time leaves the rest to the guard.
    pub async fn now(mut self) {
        let removed =
            tokio::time::timeout(CLEANUP_WAIT, self.remover.remove(self.id, self.owner)).await;
        if let Ok(Ok(())) = removed {
            self.armed = false;
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (id, owner, remover) = (self.id, self.owner, self.remover.clone());
        // Drop cannot wait; the runtime finishes the cleanup.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut pause = CLEANUP_RETRY;
            loop {
                match remover.remove(id, owner).await {
                    Ok(()) => return,
                    Err(e) if e.is_unavailable() => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(CLEANUP_RETRY_MAX);
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %id, error = %e, "could not delete refused upload's row");
                        return;
                    }
                }
            }
        });
    }
}
