//! The admission actor: whether the node takes another upload now (a
//! bounded number stream at once, the rest are asked to come back; one user
//! streams at most a few of them, so one account cannot hold every place),
//! and the commit of finished uploads to the queue, which wakes the
//! processor pool.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;

use crate::db::{self, DbError, jobs::JobRow};
use crate::domain::{FrameOptions, JobId, UserId};
use crate::media::MediaInfo;

pub struct UploadAdmission;

/// A place among the uploads streaming on this node; freed when dropped.
pub struct Ticket {
    actor: ActorRef<UploadMsg>,
    user: UserId,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.actor.cast(UploadMsg::Release(self.user));
    }
}

/// Why an upload cannot start now.
#[derive(Debug, Clone, Copy)]
pub enum Busy {
    /// The node is at its limit of concurrent uploads.
    Node { retry_after_secs: u64 },
    /// The user is at theirs.
    User { limit: u32 },
}

#[derive(RactorMessage)]
pub enum UploadMsg {
    Admit(UserId, RpcReplyPort<Result<Ticket, Busy>>),
    Release(UserId),
    /// The file is stored and probed: queue the job.
    Commit(StoredUpload, RpcReplyPort<Result<JobRow, DbError>>),
}

/// An upload whose file is durably stored and probed as a video.
pub struct StoredUpload {
    pub job: JobId,
    pub size_bytes: i64,
    pub media_info: MediaInfo,
    /// The final options, including fields sent after the file.
    pub options: FrameOptions,
}

#[derive(Clone)]
pub struct UploadArgs {
    pub pool: Pool,
    pub node: String,
    pub max_concurrent: usize,
    pub max_per_user: u32,
}

pub struct UploadState {
    args: UploadArgs,
    in_flight: usize,
    per_user: HashMap<UserId, u32>,
}

impl UploadState {
    fn admit(&mut self, user: UserId) -> Result<(), Busy> {
        let mine = self.per_user.get(&user).copied().unwrap_or(0);
        if mine >= self.args.max_per_user {
            metrics::counter!("vp_uploads_refused_total", "reason" => "user_uploads").increment(1);
            return Err(Busy::User {
                limit: self.args.max_per_user,
            });
        }
        if self.in_flight >= self.args.max_concurrent {
            metrics::counter!("vp_uploads_refused_total", "reason" => "busy").increment(1);
            return Err(Busy::Node {
                retry_after_secs: crate::retry_after::BUSY_SECS,
            });
        }
        self.in_flight += 1;
        self.per_user.insert(user, mine + 1);
        Ok(())
    }

    fn release(&mut self, user: UserId) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(n) = self.per_user.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&user);
            }
        }
    }
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
        Ok(UploadState {
            args,
            in_flight: 0,
            per_user: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<UploadMsg>,
        msg: UploadMsg,
        state: &mut UploadState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UploadMsg::Admit(user, reply) => {
                let answer = state.admit(user).map(|()| Ticket {
                    actor: myself,
                    user,
                });
                // a requester that gave up drops the ticket, which releases it
                let _ = reply.send(answer);
            }
            UploadMsg::Release(user) => state.release(user),
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
                        crate::processor::wake_pools();
                    }
                    let _ = reply.send(result);
                });
            }
        }
        metrics::gauge!("vp_uploads_in_flight").set(state.in_flight as f64);
        Ok(())
    }
}
