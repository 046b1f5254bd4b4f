//! Admission of new uploads and their `uploading → queued` transition.
//!
//! The HTTP layer streams the file (`http::upload`); this actor decides
//! whether the node takes another upload now (a bounded number stream at
//! once, the rest get 503 + Retry-After) and commits finished uploads to the
//! queue, then wakes the processor pool.

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde_json::Value;

use crate::db::{self, DbError, jobs::JobRow};
use crate::domain::JobId;
use crate::storage::MediaStore;
use crate::supervisor;

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
    Storage(#[from] crate::storage::StorageError),
}

pub struct UploadAdmission;

/// A place among the uploads streaming on this node; freed when dropped.
pub struct Ticket {
    actor: ActorRef<UploadMsg>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.actor.cast(UploadMsg::Release);
    }
}

/// The node is at its limit of concurrent uploads.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub retry_after_secs: u64,
}

#[derive(RactorMessage)]
pub enum UploadMsg {
    Admit(RpcReplyPort<Result<Ticket, Busy>>),
    Release,
    /// The file is stored and probed: queue the job.
    Commit(StoredUpload, RpcReplyPort<Result<JobRow, DbError>>),
}

/// An upload whose file is durably stored and probed as a video.
pub struct StoredUpload {
    pub job: JobId,
    pub size_bytes: i64,
    pub media_info: Value,
    /// The final options, including fields sent after the file.
    pub options: Value,
}

#[derive(Clone)]
pub struct UploadArgs {
    pub pool: Pool,
    pub node: String,
    pub max_concurrent: usize,
}

pub struct UploadState {
    args: UploadArgs,
    in_flight: usize,
}

impl Actor for UploadAdmission {
    type Msg = UploadMsg;
    type State = UploadState;
    type Arguments = UploadArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<UploadMsg>,
        args: UploadArgs,
    ) -> Result<UploadState, ActorProcessingErr> {
        Ok(UploadState { args, in_flight: 0 })
    }

    async fn handle(
        &self,
        myself: ActorRef<UploadMsg>,
        msg: UploadMsg,
        state: &mut UploadState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UploadMsg::Admit(reply) => {
                let answer = if state.in_flight < state.args.max_concurrent {
                    state.in_flight += 1;
                    Ok(Ticket { actor: myself })
                } else {
                    metrics::counter!("vp_uploads_refused_total", "reason" => "busy").increment(1);
                    Err(Busy {
                        retry_after_secs: 5,
                    })
                };
                // a requester that gave up drops the ticket, which releases it
                let _ = reply.send(answer);
            }
            UploadMsg::Release => state.in_flight = state.in_flight.saturating_sub(1),
            UploadMsg::Commit(stored, reply) => {
                // The commit is a database round trip: run it beside the
                // mailbox so admissions are not held up behind it.
                let pool = state.args.pool.clone();
                let node = state.args.node.clone();
                tokio::spawn(async move {
                    let result = db::jobs::mark_stored(
                        &pool,
                        stored.job,
                        &node,
                        stored.size_bytes,
                        &stored.media_info,
                        &stored.options,
                    )
                    .await;
                    if result.is_ok() {
                        supervisor::wake_pool();
                    }
                    let _ = reply.send(result);
                });
            }
        }
        metrics::gauge!("vp_uploads_in_flight").set(state.in_flight as f64);
        Ok(())
    }
}
