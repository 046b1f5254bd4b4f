//! The root of the node's actors: starts `Upload`, `ProcessorPool` and
//! `Notifier`, restarts any that fails (within a budget, beyond which the
//! node stops rather than limp), and stops them in order on shutdown.
//! Actors find this node's children through [`child`], so a restarted actor
//! is reachable at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::RactorMessage;

use crate::cluster::{ClusterArgs, Membership};
use crate::notify::{Notifier, NotifierArgs, NotifierMsg};
use crate::processor::{PoolMsg, ProcessorContext, ProcessorPool};
use crate::upload::{UploadAdmission, UploadArgs, UploadMsg};

pub const UPLOAD: &str = "vp.upload";
pub const POOL: &str = "vp.processor_pool";
pub const NOTIFIER: &str = "vp.notifier";
pub const MEMBERSHIP: &str = "vp.membership";

/// Restarts allowed within [`RESTART_WINDOW`] before the node gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// Wait before starting again a child whose restart failed.
const RESTART_RETRY: Duration = Duration::from_secs(2);

/// This node's children by name. Not ractor's name registry: a peer's pool
/// is seen here through its process group as a proxy of the same name, and
/// a proxy that stops (its node left) takes that name out of the registry,
/// which left this node unable to find, drain and hand back its own pool.
static CHILDREN: Mutex<BTreeMap<&'static str, ActorCell>> = Mutex::new(BTreeMap::new());

/// The running child called `name` on this node.
fn child(name: &str) -> Option<ActorCell> {
    CHILDREN
        .lock()
        .expect("children")
        .get(name)
        .filter(|c| c.get_status() <= ractor::ActorStatus::Running)
        .cloned()
}

pub fn upload() -> Option<ActorRef<UploadMsg>> {
    child(UPLOAD).map(ActorRef::from)
}

/// Tells this node's pool to stop claiming (the first step of a shutdown).
pub fn drain_pool() {
    if let Some(pool) = child(POOL).map(ActorRef::<PoolMsg>::from) {
        let _ = pool.cast(PoolMsg::Drain(crate::cluster::wire::Local::new(())));
    }
}

/// Hints every pool in the cluster that a job may be waiting; harmless if lost.
pub fn wake_pool() {
    crate::cluster::broadcast_to_pools(|| PoolMsg::Wake);
}

/// Stops job `id` on whichever node runs it. The database is faster still:
/// the cancelled job's next lease renewal fails.
pub fn cancel_job(id: crate::domain::JobId) {
    crate::cluster::broadcast_to_pools(|| PoolMsg::Cancel(id));
}

/// Hints the notifier that the outbox has mail; harmless if lost.
pub fn wake_notifier() {
    if let Some(n) = child(NOTIFIER).map(ActorRef::<NotifierMsg>::from) {
        let _ = n.cast(NotifierMsg::Wake);
    }
}

/// Everything needed to (re)start the children.
#[derive(Clone)]
pub struct SupervisorArgs {
    pub upload: UploadArgs,
    pub processor: Arc<ProcessorContext>,
    pub notifier: NotifierArgs,
    /// Present when this node joins a cluster.
    pub cluster: Option<ClusterArgs>,
}

pub struct Supervisor;

#[derive(RactorMessage)]
pub enum SupervisorMsg {
    /// Stop the children (the pool hands its jobs back), then reply.
    Shutdown(RpcReplyPort<()>),
    /// Start a child again whose restart failed.
    Restart(String),
}

pub struct SupervisorState {
    args: SupervisorArgs,
    restarts: Vec<Instant>,
    stopping: bool,
}

impl Supervisor {
    /// Starts a stopped child again; a start that fails (its database is
    /// away, say) is tried again later rather than taking the node down.
    async fn restart(myself: &ActorRef<SupervisorMsg>, args: &SupervisorArgs, name: String) {
        if let Err(e) = Self::start_child(myself, args, &name).await {
            tracing::warn!(actor = %name, error = %e, "restart failed; trying again shortly");
            myself.send_after(RESTART_RETRY, move || SupervisorMsg::Restart(name));
        }
    }

    async fn start_child(
        myself: &ActorRef<SupervisorMsg>,
        args: &SupervisorArgs,
        name: &str,
    ) -> Result<ActorCell, ActorProcessingErr> {
        let cell = myself.get_cell();
        let name_owned = Some(name.to_owned());
        let (name, spawned) = match name {
            UPLOAD => (
                UPLOAD,
                Actor::spawn_linked(name_owned, UploadAdmission, args.upload.clone(), cell)
                    .await?
                    .0
                    .get_cell(),
            ),
            POOL => (
                POOL,
                Actor::spawn_linked(name_owned, ProcessorPool, args.processor.clone(), cell)
                    .await?
                    .0
                    .get_cell(),
            ),
            MEMBERSHIP => match &args.cluster {
                Some(cluster) => (
                    MEMBERSHIP,
                    Actor::spawn_linked(name_owned, Membership, cluster.clone(), cell)
                        .await?
                        .0
                        .get_cell(),
                ),
                None => return Err("no cluster configured".into()),
            },
            NOTIFIER => (
                NOTIFIER,
                Actor::spawn_linked(name_owned, Notifier, args.notifier.clone(), cell)
                    .await?
                    .0
                    .get_cell(),
            ),
            other => return Err(format!("unknown child {other}").into()),
        };
        CHILDREN
            .lock()
            .expect("children")
            .insert(name, spawned.clone());
        Ok(spawned)
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        for name in [NOTIFIER, POOL, UPLOAD] {
            Self::start_child(&myself, &args, name).await?;
        }
        if args.cluster.is_some() {
            Self::start_child(&myself, &args, MEMBERSHIP).await?;
        }
        Ok(SupervisorState {
            args,
            restarts: Vec::new(),
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Shutdown(reply) => {
                state.stopping = true;
                // uploads first (no new work), then the pool (hands jobs
                // back), then leave the cluster, then mail
                for name in [UPLOAD, POOL, MEMBERSHIP, NOTIFIER] {
                    if let Some(cell) = child(name) {
                        // the pool may use its whole grace period
                        let wait = state.args.processor.shutdown_grace + Duration::from_secs(30);
                        cell.stop_and_wait(Some("shutdown".into()), Some(wait))
                            .await
                            .ok();
                    }
                }
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
            SupervisorMsg::Restart(name) if !state.stopping => {
                Self::restart(&myself, &state.args, name).await;
            }
            SupervisorMsg::Restart(_) => {}
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(name) = cell.get_name() else {
            return Ok(());
        };
        let now = Instant::now();
        state
            .restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if state.restarts.len() >= MAX_RESTARTS {
            tracing::error!(actor = %name, %why, "too many actor restarts; stopping the node");
            myself.stop(Some(format!("{name} keeps failing: {why}")));
            return Ok(());
        }
        state.restarts.push(now);
        tracing::warn!(actor = %name, %why, "actor stopped unexpectedly; restarting");
        // its name is freed once it has stopped; give the registry a moment
        for _ in 0..50 {
            if ractor::registry::where_is(name.clone()).is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        Self::restart(&myself, &state.args, name).await;
        Ok(())
    }
}
