//! The processor pool: `VP_WORKERS` slots on this node that claim queued jobs
//! from PostgreSQL and run them (`run`). The database is the queue; messages
//! only wake the pool up early, and a periodic tick catches anything a lost
//! message would have missed: new jobs, retries whose back-off ended, and
//! jobs whose owner stopped renewing its lease.

mod run;
mod sink;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;

use crate::cluster::wire::Local;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db::{self, jobs::Abandoned};
use crate::domain::JobId;
use crate::media::{CancelFlag, CoreShare};
use crate::notify::{NotifierMsg, message};
use crate::storage::MediaStore;
use crate::supervisor::Handle;

/// How often expired leases are looked for.
const RESCUE_EVERY: Duration = Duration::from_secs(5);
/// How often finished jobs past retention are expired.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// What a worker needs, shared by all slots.
pub struct ProcessorContext {
    pub pool: Pool,
    pub store: MediaStore,
    pub node: String,
    pub workers: usize,
    pub lease: Duration,
    /// How often the pool looks for work nobody told it about (`queue_poll_secs`).
    pub queue_poll: Duration,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    pub stall_timeout: Duration,
    pub probe_timeout: Duration,
    /// A job's time limit before the video's own duration is added (three times).
    pub job_timeout: Duration,
    /// What one job may cost.
    pub budget: crate::media::Budget,
    /// Jobs one user may have processing at once, cluster-wide.
    pub per_user_cap: i64,
    /// On shutdown, running jobs get this long to finish before they are handed back.
    pub shutdown_grace: Duration,
    pub retention: Duration,
    /// This machine's cores, shared by the jobs running on it.
    pub cores: CoreShare,
    /// Where the node records its own writes, so its next read sees them.
    pub changes: std::sync::Arc<crate::db::changes::Changes>,
    /// Told when a job's outcome queued mail.
    pub notifier: Handle<NotifierMsg>,
}

pub struct ProcessorPool;

/// Pools of all nodes form the `vp.pools` process group, so wake-ups and
/// cancellations reach them across the cluster. What a peer may send is a
/// hint: a wake-up, or a cancellation that is checked against the database
/// first. What carries a [`Local`] only this node can send (`cluster::wire`).
#[derive(RactorClusterMessage, Clone)]
pub enum PoolMsg {
    /// Work may be waiting: claim while slots are free.
    Wake,
    /// Periodic housekeeping and claiming.
    Tick(Local<()>),
    /// A job's task ended (the lease token tells two runs of one job apart).
    Finished(Local<(JobId, Uuid)>),
    /// Stop a running job, if its owner deleted or cancelled it.
    Cancel(JobId),
    /// The node is stopping: claim nothing more, and leave the cluster's
    /// pool group so no wake-ups arrive.
    Drain(Local<()>),
}

/// Tells this node's pool to stop claiming (the first step of a shutdown).
impl Handle<PoolMsg> {
    pub fn drain(&self) {
        self.hint(PoolMsg::Drain(Local::new(())));
    }
}

/// Hints every pool in the cluster (their process group) that a job may be
/// waiting; harmless if lost.
pub fn wake_pools() {
    crate::cluster::broadcast_to_pools(|| PoolMsg::Wake);
}

struct Running {
    lease_token: Uuid,
    cancel: CancelFlag,
    task: JoinHandle<()>,
}

pub struct PoolState {
    ctx: Arc<ProcessorContext>,
    draining: bool,
    /// The jobs this node held before it (or this actor) restarted were
    /// handed back. Until then nothing is claimed; the database may be away
    /// (a restart must wait for it, not fail), so it is tried at each tick.
    recovered: bool,
    running: HashMap<JobId, Running>,
    last_rescue: Instant,
    last_retention: Instant,
}

impl Actor for ProcessorPool {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = Arc<ProcessorContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<PoolMsg>,
        ctx: Arc<ProcessorContext>,
    ) -> Result<PoolState, ActorProcessingErr> {
        ractor::pg::join(
            crate::cluster::POOLS_GROUP.to_owned(),
            vec![myself.get_cell()],
        );
        myself.send_interval(ctx.queue_poll, || PoolMsg::Tick(Local::new(())));
        myself.cast(PoolMsg::Wake)?;
        let long_ago = Instant::now() - RETENTION_EVERY;
        Ok(PoolState {
            ctx,
            running: HashMap::new(),
            last_rescue: long_ago,
            last_retention: long_ago,
            draining: false,
            recovered: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Wake => {
                if recover(state).await {
                    fill_slots(&myself, state).await;
                }
            }
            PoolMsg::Drain(local) if local.get().is_some() => {
                state.draining = true;
                ractor::pg::leave(
                    crate::cluster::POOLS_GROUP.to_owned(),
                    vec![myself.get_cell()],
                );
                tracing::info!(running = state.running.len(), "draining: no more claims");
            }
            PoolMsg::Tick(local) if local.get().is_some() => {
                if recover(state).await {
                    housekeeping(state).await;
                    fill_slots(&myself, state).await;
                }
            }
            PoolMsg::Finished(local) if let Some((id, token)) = local.get() => {
                if state
                    .running
                    .get(&id)
                    .is_some_and(|r| r.lease_token == token)
                {
                    state.running.remove(&id);
                }
                fill_slots(&myself, state).await;
            }
            PoolMsg::Cancel(id) => {
                // a peer's word is a hint: the database says whether the
                // job is still wanted
                if state.running.contains_key(&id)
                    && !still_processing(&state.ctx.pool, id).await
                    && let Some(r) = state.running.get(&id)
                {
                    r.cancel.cancel();
                }
            }
            // what only this node may send, sent by a peer
            PoolMsg::Drain(_) | PoolMsg::Tick(_) | PoolMsg::Finished(_) => {
                metrics::counter!("vp_cluster_messages_refused_total").increment(1);
                tracing::warn!("a peer sent a message only this node may send; ignored");
            }
        }
        metrics::gauge!("vp_workers_busy").set(state.running.len() as f64);
        Ok(())
    }

    /// On shutdown: stop every job and hand it back to the queue at once, so
    /// another node (or this one, restarted) takes it without waiting for
    /// the lease to expire.
    async fn post_stop(
        &self,
        _myself: ActorRef<PoolMsg>,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        // No more claims (the mailbox is closed); running jobs get the grace
        // period to finish, then are stopped and handed back.
        let grace = tokio::time::Instant::now() + state.ctx.shutdown_grace;
        let _ = tokio::time::timeout_at(
            grace,
            futures::future::join_all(state.running.values_mut().map(|r| &mut r.task)),
        )
        .await;
        // a task that ended in the grace was polled to its end: polling it
        // again would panic, so only the others are stopped and awaited
        state.running.retain(|_, r| !r.task.is_finished());
        for r in state.running.values() {
            r.cancel.cancel();
        }
        let mut tasks: Vec<_> = state.running.drain().map(|(_, r)| r.task).collect();
        let stopped = tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::join_all(tasks.iter_mut()),
        )
        .await;
        if stopped.is_err() {
            // a job that did not stop when asked must not renew its lease
            // (or write anything) after it was handed back
            let stragglers: Vec<_> = tasks.into_iter().filter(|t| !t.is_finished()).collect();
            tracing::warn!(
                jobs = stragglers.len(),
                "running jobs did not stop within 10 s; aborting them"
            );
            for task in &stragglers {
                task.abort();
            }
            let _ = futures::future::join_all(stragglers).await;
        }
        let ctx = &state.ctx;
        let released = db::jobs::requeue_abandoned(
            &ctx.pool,
            &ctx.node,
            Abandoned::ShuttingDown(&ctx.node),
            message::job_interrupted,
        )
        .await?;
        tracing::info!(
            jobs = released.len(),
            "processor pool stopped; running jobs handed back"
        );
        Ok(())
    }
}

/// Whether job `id` is still processing (not cancelled or deleted); a
/// database that cannot say leaves it running.
async fn still_processing(pool: &deadpool_postgres::Pool, id: JobId) -> bool {
    match db::jobs::get(pool, id).await {
        Ok(Some(job)) => job.state == crate::jobs::JobState::Processing,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Hands back the jobs this node held before a restart (they run nowhere
/// now), once; whether that is done.
async fn recover(state: &mut PoolState) -> bool {
    if state.recovered {
        return true;
    }
    let ctx = &state.ctx;
    match db::jobs::requeue_abandoned(
        &ctx.pool,
        &ctx.node,
        Abandoned::Restarted(&ctx.node),
        message::job_interrupted,
    )
    .await
    {
        Ok(requeued) => {
            if !requeued.is_empty() {
                tracing::info!(
                    jobs = requeued.len(),
                    "requeued jobs held before this node restarted"
                );
            }
            state.recovered = true;
        }
        Err(e) => tracing::warn!(error = %e, "cannot hand back earlier jobs yet; retrying"),
    }
    state.recovered
}

async fn fill_slots(myself: &ActorRef<PoolMsg>, state: &mut PoolState) {
    while !state.draining && state.running.len() < state.ctx.workers {
        // room on the machine first: a job claimed is a job no other node runs
        let Some(mut reservation) = state.ctx.cores.reserve() else {
            return;
        };
        let claim = match db::jobs::claim_next(
            &state.ctx.pool,
            &state.ctx.node,
            state.ctx.lease,
            state.ctx.per_user_cap,
        )
        .await
        {
            Ok(Some(claim)) => claim,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "claiming a job failed");
                return;
            }
        };
        reservation.claimed();
        let id = claim.job.id;
        let lease_token = claim.lease_token;
        let cancel = CancelFlag::default();
        let ctx = state.ctx.clone();
        let pool_ref = myself.clone();
        let job_cancel = cancel.clone();
        // The job runs in its own task; a second task watches it so that even
        // a panic frees the slot (the lease then expires and the job is retried).
        let inner = tokio::spawn(run::run_job(ctx, claim, job_cancel));
        let task = tokio::spawn(async move {
            if let Err(e) = inner.await {
                tracing::error!(job_id = %id, error = %e, "job task panicked");
            }
            if reservation.is_shared() {
                // the other nodes of this machine may be waiting for the core
                drop(reservation);
                crate::cluster::broadcast_to_pools(|| PoolMsg::Wake);
            }
            let _ = pool_ref.cast(PoolMsg::Finished(Local::new((id, lease_token))));
        });
        // A job this node lost (lease expired in a database outage) and took
        // back runs again under a new token; the old run is fenced out.
        if let Some(old) = state.running.insert(
            id,
            Running {
                lease_token,
                cancel,
                task,
            },
        ) {
            old.cancel.cancel();
        }
    }
}

async fn housekeeping(state: &mut PoolState) {
    if state.last_rescue.elapsed() >= RESCUE_EVERY {
        state.last_rescue = Instant::now();
        rescue_pass(&state.ctx).await;
    }
    if state.last_retention.elapsed() >= RETENTION_EVERY {
        state.last_retention = Instant::now();
        retention_pass(&state.ctx).await;
    }
}

/// Takes back the jobs whose lease expired, wherever they ran: what the
/// pool does every [`RESCUE_EVERY`], callable on demand.
pub async fn rescue_pass(ctx: &ProcessorContext) {
    match db::jobs::requeue_abandoned(
        &ctx.pool,
        &ctx.node,
        Abandoned::LeaseExpired,
        message::job_interrupted,
    )
    .await
    {
        Ok(jobs) => {
            for (id, outcome) in jobs {
                tracing::warn!(job_id = %id, ?outcome, "took back a job whose lease expired");
                if outcome == db::jobs::RetryOutcome::Failed {
                    ctx.notifier.wake();
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "lease rescue failed"),
    }
}

/// Deletes what outlived its time (media past retention, expired
/// revocations, stale links, abandoned uploads): what the pool does every
/// [`RETENTION_EVERY`], callable on demand.
pub async fn retention_pass(ctx: &ProcessorContext) {
    if let Err(e) = expire_old_media(ctx).await {
        tracing::warn!(error = %e, "retention pass failed");
    }
    let _ = db::keys::delete_expired_revocations(&ctx.pool).await;
    let _ = db::account_links::delete_stale(&ctx.pool).await;
    match crate::upload::remove_abandoned(&ctx.pool, &ctx.store, None).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(uploads = n, "removed abandoned uploads"),
        Err(e) => tracing::warn!(error = %e, "removing abandoned uploads failed"),
    }
}

/// Deletes the media of jobs finished longer ago than the retention period;
/// their rows stay, and downloads answer 410.
async fn expire_old_media(
    ctx: &ProcessorContext,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for id in db::jobs::list_expirable(&ctx.pool, ctx.retention, 100).await? {
        ctx.store.delete_job(id).await?;
        db::jobs::mark_expired(&ctx.pool, id).await?;
        tracing::info!(job_id = %id, "media expired after retention");
    }
    Ok(())
}
