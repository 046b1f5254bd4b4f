//! Uploads that never finished: a node that crashed mid-stream leaves its
//! rows `uploading` and maybe a file; they are removed when that node starts
//! again, and by every node's housekeeping once they are a day old.

use deadpool_postgres::Pool;

use crate::db::{self, DbError};
use crate::storage::{MediaStore, StorageError};

/// An upload row older than this with no node streaming it is debris.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes uploads that never finished: those `owner` (a node that just
/// started) was streaming, and any left for a day. Rows go first, so a file
/// is only deleted when its row was still `uploading`.
pub async fn remove_abandoned(
    pool: &Pool,
    store: &MediaStore,
    owner: Option<&str>,
) -> Result<usize, AbandonedError> {
    let ids = db::jobs::delete_stale_uploads(pool, owner, ABANDONED_AFTER).await?;
    for id in &ids {
        store.delete_job(*id).await?;
    }
    Ok(ids.len())
}

#[derive(Debug, thiserror::Error)]
pub enum AbandonedError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
