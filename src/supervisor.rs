//! The root of the node's actors: starts `Upload`, `ProcessorPool` and
//! `Notifier`, restarts any that fails (within a budget, beyond which the
//! node stops rather than limp), and stops them in order on shutdown.
//! Whoever talks to one of them holds its [`Handle`], made before the
//! actors start and pointed by the supervisor at each actor it (re)starts,
//! so a restarted actor is reachable at once and nothing is looked up by
//! name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus, Message, RpcReplyPort,
    SupervisionEvent,
};
use ractor_cluster::RactorMessage;

use crate::cluster::{ClusterArgs, Membership, MembershipMsg};
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

/// One of this node's actors, whichever incarnation runs now. Not ractor's
/// name registry: a peer's pool is seen here through its process group as
/// a proxy of the same name, and a proxy that stops (its node left) takes
/// that name out of the registry, which left this node unable to find,
/// drain and hand back its own pool.
pub struct Handle<M> {
    current: Arc<Mutex<Option<ActorRef<M>>>>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<M> Default for Handle<M> {
    fn default() -> Self {
        Self {
            current: Arc::default(),
        }
    }
}

impl<M: Message> Handle<M> {
    /// The actor, while it runs.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current
            .lock()
            .expect("actor handle")
            .as_ref()
            .filter(|a| a.get_status() <= ActorStatus::Running)
            .cloned()
    }

    /// Sends `msg` to the actor if it runs: a hint, harmless if lost.
    pub fn hint(&self, msg: M) {
        if let Some(actor) = self.get() {
            let _ = actor.cast(msg);
        }
    }

    /// Starts `actor` as the supervisor's child called `name`, and points
    /// the handle at it.
    async fn spawn<A: Actor<Msg = M>>(
        &self,
        name: &str,
        actor: A,
        args: A::Arguments,
        supervisor: ActorCell,
    ) -> Result<ActorCell, ActorProcessingErr> {
        let (spawned, _) =
            Actor::spawn_linked(Some(name.to_owned()), actor, args, supervisor).await?;
        *self.current.lock().expect("actor handle") = Some(spawned.clone());
        Ok(spawned.get_cell())
    }

    fn cell(&self) -> Option<ActorCell> {
        self.get().map(|a| a.get_cell())
    }
}

/// The handles of this node's actors: made before they start, filled in by
/// the supervisor, handed to whoever talks to them.
#[derive(Clone, Default)]
pub struct Actors {
    pub upload: Handle<UploadMsg>,
    pub pool: Handle<PoolMsg>,
    pub notifier: Handle<NotifierMsg>,
    membership: Handle<MembershipMsg>,
}

impl Actors {
    /// The running child called `name`.
    fn child(&self, name: &str) -> Option<ActorCell> {
        match name {
            UPLOAD => self.upload.cell(),
            POOL => self.pool.cell(),
            NOTIFIER => self.notifier.cell(),
            MEMBERSHIP => self.membership.cell(),
            _ => None,
        }
    }
}

/// Stops job `id` on whichever node runs it. The database is faster still:
/// the cancelled job's next lease renewal fails.
pub fn cancel_job(id: crate::domain::JobId) {
    crate::cluster::broadcast_to_pools(|| PoolMsg::Cancel(id));
}

/// Everything needed to (re)start the children.
#[derive(Clone)]
pub struct SupervisorArgs {
    /// Where the children are found; filled in as they start.
    pub actors: Actors,
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
        let actors = &args.actors;
        match name {
            UPLOAD => {
                let upload = args.upload.clone();
                actors
                    .upload
                    .spawn(name, UploadAdmission, upload, cell)
                    .await
            }
            POOL => {
                let context = args.processor.clone();
                actors.pool.spawn(name, ProcessorPool, context, cell).await
            }
            MEMBERSHIP => match &args.cluster {
                Some(cluster) => {
                    let cluster = cluster.clone();
                    actors
                        .membership
                        .spawn(name, Membership, cluster, cell)
                        .await
                }
                None => Err("no cluster configured".into()),
            },
            NOTIFIER => {
                let notifier = args.notifier.clone();
                actors.notifier.spawn(name, Notifier, notifier, cell).await
            }
            other => Err(format!("unknown child {other}").into()),
        }
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
                    if let Some(cell) = state.args.actors.child(name) {
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
