//! The ractor cluster: how nodes find each other, notice each other leave,
//! and pass hints. `ractor_cluster` brings sessions and process groups, but
//! no discovery, no redial and no failure detector for a hung peer; the
//! [`Membership`] actor adds all three:
//!
//! - **Seeds**: every couple of seconds each `VP_CLUSTER_SEEDS` entry is
//!   resolved (a headless Service name gives every pod) and each address that
//!   is not a peer yet is dialed, with exponential back-off per address.
//! - **Heartbeat**: every second each peer's [`health::Health`] actor is
//!   called; a peer that misses three in a row has its session closed, so it
//!   counts as gone even when its socket stays open (SIGSTOP, a partition).
//! - **Leaving**: when a peer's session ends, the jobs it held are put back
//!   in the queue at once, instead of waiting for their leases to expire.
//!
//! The cluster is an accelerator, never the source of truth: every decision
//! that matters is a fenced transaction in PostgreSQL, so a lost message or a
//! wrong membership view costs time, not work.

mod accept;
mod health;
pub mod seeds;
pub mod tls;
pub mod wire;

pub use tls::ClusterTls;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage, RactorMessage,
};

use crate::db::{self, jobs::Abandoned};
use crate::jobs::{RENEW_EVERY, SILENT_FOR};
use crate::notify::message;
use crate::settings::Secret;
use health::{Health, HealthMsg};
use seeds::Dialer;

/// Process group of every node's processor pool.
pub const POOLS_GROUP: &str = "vp.pools";
/// Process group of every node's heartbeat responder.
pub const HEALTH_GROUP: &str = "vp.health";

const RECONCILE_EVERY: Duration = Duration::from_secs(2);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT_MS: u64 = 1_000;
/// Missed heartbeats after which a peer is dropped.
const MAX_MISSES: u32 = 3;
/// A session on the cluster port must be a ready peer (authenticated, state
/// exchanged) this soon after it was first seen, or it is closed: a socket
/// that opens the port and says nothing must not hold a session for ever.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// How this node takes part in the cluster.
#[derive(Clone)]
pub struct ClusterArgs {
    pub node: String,
    pub listen: SocketAddr,
    /// The host other nodes reach this one by.
    pub advertise: String,
    pub seeds: Vec<String>,
    pub cookie: Secret,
    /// Mutual TLS on every cluster link, when configured.
    pub tls: Option<ClusterTls>,
    pub pool: Pool,
    /// The job lease, to tell a silent owner from a live one.
    pub lease: Duration,
    pub view: ClusterView,
}

impl ClusterArgs {
    /// `VP_CLUSTER_ADDR` is `host:port`. Peers are told `advertise` when
    /// given, else that host, else (a wildcard host) the node name.
    pub async fn new(
        node: &str,
        settings: &crate::settings::Settings,
        cookie: Secret,
        pool: Pool,
    ) -> anyhow::Result<Self> {
        let addr = settings.cluster_addr.as_str();
        let advertise = settings.cluster_advertise.as_deref();
        let seeds = settings.cluster_seeds.as_deref();
        let lease = Duration::from_secs(settings.tuning.job_lease_secs);
        let tls = settings
            .cluster_tls()
            .as_ref()
            .map(ClusterTls::load)
            .transpose()?;
        let listen = seeds::resolve(addr)
            .await
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("VP_CLUSTER_ADDR `{addr}` does not resolve"))?;
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_matches(['[', ']']);
        let advertise = match advertise {
            Some(a) => a.to_owned(),
            None if listen.ip().is_unspecified() => node.to_owned(),
            None => host.to_owned(),
        };
        Ok(Self {
            node: node.to_owned(),
            listen,
            advertise,
            seeds: seeds::parse_seeds(seeds),
            cookie,
            tls,
            pool,
            lease,
            view: ClusterView::default(),
        })
    }
}

/// What the HTTP layer shows of the cluster: the peers this node is joined to.
#[derive(Clone, Default)]
pub struct ClusterView {
    peers: Arc<RwLock<BTreeMap<u64, String>>>,
}

impl ClusterView {
    /// Names of the ready peers, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .peers
            .read()
            .expect("cluster view")
            .values()
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn set(&self, node_id: u64, name: Option<String>) {
        let mut peers = self.peers.write().expect("cluster view");
        match name {
            Some(n) => peers.insert(node_id, n),
            None => peers.remove(&node_id),
        };
        metrics::gauge!("vp_cluster_peers").set(peers.len() as f64);
    }
}

/// Casts `msg` to every processor pool in the cluster, this node's included.
pub fn broadcast_to_pools(msg: impl Fn() -> crate::processor::PoolMsg) {
    for cell in ractor::pg::get_members(&POOLS_GROUP.to_owned()) {
        let _ = ActorRef::<crate::processor::PoolMsg>::from(cell).cast(msg());
    }
}

pub struct Membership;

#[derive(RactorMessage)]
pub enum MembershipMsg {
    Reconcile,
    /// The addresses the seeds resolved to.
    Candidates(Vec<SocketAddr>),
    Heartbeat,
    /// A connection to the cluster port (in or out) has a session: it must
    /// become ready within [`HANDSHAKE_DEADLINE`].
    SessionOpened(SessionInfo),
    SessionReady(SessionInfo),
    SessionDown(SessionInfo),
    /// Put back the jobs a departed peer stopped renewing.
    TakeBack(String),
}

/// What we keep of a session event.
pub struct SessionInfo {
    node_id: u64,
    name: Option<String>,
    is_server: bool,
    peer_addr: Option<SocketAddr>,
    connection: Option<String>,
    actor: ActorRef<ractor_cluster::node::NodeSessionMessage>,
}

impl From<NodeServerSessionInformation> for SessionInfo {
    fn from(s: NodeServerSessionInformation) -> Self {
        Self {
            node_id: s.node_id,
            // `name@host` on the wire; the node name is the part before `@`
            name: s
                .peer_name
                .as_ref()
                .map(|n| n.name.split('@').next().unwrap_or_default().to_owned()),
            is_server: s.is_server,
            peer_addr: s.peer_addr.parse().ok(),
            connection: s.peer_name.map(|n| n.connection_string),
            actor: s.actor,
        }
    }
}

/// Forwards node-server events into the membership actor's mailbox.
struct Events(ActorRef<MembershipMsg>);

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.cast(MembershipMsg::SessionOpened(ses.into()));
    }
    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.cast(MembershipMsg::SessionReady(ses.into()));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.cast(MembershipMsg::SessionDown(ses.into()));
    }
}

pub struct MembershipState {
    args: ClusterArgs,
    server: ActorRef<NodeServerMessage>,
    /// This node's own accept loop on the cluster port (under TLS).
    accepting: Option<accept::AcceptLoop>,
    dialer: Dialer,
    /// Addresses that turned out to be this node.
    own: HashSet<SocketAddr>,
    /// Ready peers by ractor node id: name and the addresses they are known by.
    peers: BTreeMap<u64, (String, Vec<SocketAddr>)>,
    misses: BTreeMap<u64, u32>,
    /// Sessions opened and not ready yet, by node id: when, and their actor.
    unready: BTreeMap<
        u64,
        (
            std::time::Instant,
            ActorRef<ractor_cluster::node::NodeSessionMessage>,
        ),
    >,
}

impl Actor for Membership {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MembershipMsg>,
        args: ClusterArgs,
    ) -> Result<MembershipState, ActorProcessingErr> {
        // Under TLS every link is dialled by this node's own reconciler:
        // ractor_cluster's transitive dials would be plain TCP, which a TLS
        // peer refuses. Seeds must then name every peer (a headless Service does).
        // And this node accepts on the cluster port itself (`accept`), so a
        // stalled handshake holds no one else up; ractor's listener moves to
        // a loopback port.
        let listener = match &args.tls {
            Some(_) => Some(accept::bind(args.listen).await?),
            None => None,
        };
        let (encryption, mode, port, listen_ip) = match &args.tls {
            Some(tls) => (
                Some(IncomingEncryptionMode::Tls(tls.acceptor.clone())),
                NodeConnectionMode::Isolated,
                0,
                std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            ),
            None => (
                None,
                NodeConnectionMode::Transitive,
                args.listen.port(),
                args.listen.ip(),
            ),
        };
        let server = NodeServer::new(
            port,
            args.cookie.expose().to_owned(),
            args.node.clone(),
            args.advertise.clone(),
            encryption,
            Some(mode),
        )
        .with_listen_addr(listen_ip);
        let (server, _) = Actor::spawn_linked(
            Some("vp.cluster.server".into()),
            server,
            (),
            myself.get_cell(),
        )
        .await?;
        let accepting = match (&args.tls, listener) {
            (Some(tls), Some(listener)) => {
                // peers are told the cluster port, not the loopback one (the
                // listener's own notice of it is already queued ahead of this)
                server.cast(NodeServerMessage::PortChanged {
                    port: args.listen.port(),
                })?;
                Some(accept::start(
                    listener,
                    tls.acceptor.clone(),
                    server.clone(),
                    HANDSHAKE_DEADLINE,
                ))
            }
            _ => None,
        };
        server.cast(NodeServerMessage::SubscribeToEvents {
            id: "vp.membership".into(),
            subscription: Box::new(Events(myself.clone())),
        })?;
        Actor::spawn_linked(
            Some("vp.cluster.health".into()),
            Health,
            args.node.clone(),
            myself.get_cell(),
        )
        .await?;
        myself.send_interval(RECONCILE_EVERY, || MembershipMsg::Reconcile);
        myself.send_interval(HEARTBEAT_EVERY, || MembershipMsg::Heartbeat);
        myself.cast(MembershipMsg::Reconcile)?;
        tracing::info!(listen = %args.listen, advertise = %args.advertise, seeds = ?args.seeds, tls = args.tls.is_some(), "cluster node listening");
        metrics::gauge!("vp_cluster_peers").set(0.0);
        let mut own = HashSet::from([args.listen]);
        own.extend(seeds::resolve(&format!("{}:{}", args.advertise, args.listen.port())).await);
        Ok(MembershipState {
            args,
            server,
            accepting,
            dialer: Dialer::default(),
            own,
            peers: BTreeMap::new(),
            misses: BTreeMap::new(),
            unready: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<MembershipMsg>,
        msg: MembershipMsg,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MembershipMsg::Reconcile => resolve_seeds(&myself, state),
            MembershipMsg::Candidates(addrs) => dial_missing(state, addrs),
            MembershipMsg::Heartbeat => {
                heartbeat(state).await;
                close_unready_sessions(state);
            }
            MembershipMsg::SessionOpened(s) => {
                state
                    .unready
                    .insert(s.node_id, (std::time::Instant::now(), s.actor));
            }
            MembershipMsg::SessionReady(s) => session_ready(state, s).await,
            MembershipMsg::SessionDown(s) => session_down(&myself, state, s),
            MembershipMsg::TakeBack(name) => take_back(state, name),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<MembershipMsg>,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        for node_id in state.peers.keys().copied().collect::<Vec<_>>() {
            state.args.view.set(node_id, None);
        }
        // free the listen port and the children's names before a restart
        if let Some(accepting) = state.accepting.take() {
            accepting.stop().await;
        }
        myself
            .stop_children_and_wait(
                Some("membership stopped".into()),
                Some(Duration::from_secs(5)),
            )
            .await;
        Ok(())
    }
}

/// Resolves the seeds beside the mailbox (DNS can be slow while a
/// StatefulSet starts) and hands the addresses back as [`MembershipMsg::Candidates`].
fn resolve_seeds(myself: &ActorRef<MembershipMsg>, state: &MembershipState) {
    let seeds = state.args.seeds.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let resolved = futures::future::join_all(seeds.iter().map(|s| seeds::resolve(s))).await;
        let _ = me.cast(MembershipMsg::Candidates(
            resolved.into_iter().flatten().collect(),
        ));
    });
}

/// Dials the seed addresses that are not peers yet.
fn dial_missing(state: &mut MembershipState, candidates: Vec<SocketAddr>) {
    let connected: HashSet<SocketAddr> = state
        .peers
        .values()
        .flat_map(|(_, addrs)| addrs.iter().copied())
        .collect();
    let now = Instant::now();
    for addr in state.dialer.due(&candidates, &connected, &state.own, now) {
        state.dialer.attempted(addr, now);
        let server = state.server.clone();
        let tls = state.args.tls.as_ref().map(|t| t.connector.clone());
        tokio::spawn(async move {
            let dial = async {
                match tls {
                    Some(connector) => {
                        ractor_cluster::client_connect_enc(
                            &server,
                            addr,
                            connector,
                            ClusterTls::peer_name(),
                        )
                        .await
                    }
                    None => ractor_cluster::client_connect(&server, addr).await,
                }
            };
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(2), dial).await,
                Ok(Ok(()))
            );
            if !ok {
                tracing::debug!(%addr, "seed not reachable");
            }
        });
    }
}

async fn heartbeat(state: &mut MembershipState) {
    let remote: Vec<ActorCell> = ractor::pg::get_members(&HEALTH_GROUP.to_owned())
        .into_iter()
        .filter(|c| !c.get_id().is_local())
        .collect();
    let calls = remote.into_iter().map(|cell| async move {
        let node_id = cell.get_id().node();
        let actor = ActorRef::<HealthMsg>::from(cell);
        (
            node_id,
            ractor::call_t!(actor, HealthMsg::Ping, HEARTBEAT_TIMEOUT_MS).is_ok(),
        )
    });
    for (node_id, answered) in futures::future::join_all(calls).await {
        let misses = state.misses.entry(node_id).or_insert(0);
        *misses = if answered { 0 } else { *misses + 1 };
        if *misses >= MAX_MISSES {
            state.misses.remove(&node_id);
            drop_silent_peer(state, node_id).await;
        }
    }
}

/// Closes the session of a peer that stopped answering; its departure then
/// runs the same path as a crash.
/// Closes the sessions that did not become ready peers within
/// [`HANDSHAKE_DEADLINE`] of being opened.
fn close_unready_sessions(state: &mut MembershipState) {
    let now = std::time::Instant::now();
    state.unready.retain(|id, (since, actor)| {
        if now.duration_since(*since) <= HANDSHAKE_DEADLINE {
            return true;
        }
        tracing::warn!(
            node_id = id,
            "cluster session not ready in time; closing it"
        );
        metrics::counter!("vp_cluster_sessions_closed_total", "reason" => "handshake").increment(1);
        actor.stop(Some("handshake deadline".into()));
        false
    });
}

async fn drop_silent_peer(state: &MembershipState, node_id: u64) {
    let name = state
        .peers
        .get(&node_id)
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    tracing::warn!(peer = %name, node_id, "peer stopped answering heartbeats; dropping it");
    if let Ok(sessions) = ractor::call_t!(state.server, NodeServerMessage::GetSessions, 2_000)
        && let Some(session) = sessions.get(&node_id)
    {
        session
            .actor
            .stop(Some("peer stopped answering heartbeats".into()));
    }
}

async fn session_ready(state: &mut MembershipState, s: SessionInfo) {
    state.unready.remove(&s.node_id);
    let Some(name) = s.name.clone() else { return };
    if name == state.args.node {
        // a seed that is this very node: remember the address, drop the loop
        if let (false, Some(addr)) = (s.is_server, s.peer_addr) {
            state.own.insert(addr);
        }
        s.actor.stop(Some("connected to itself".into()));
        return;
    }
    let mut addrs = Vec::new();
    if let Some(conn) = &s.connection {
        addrs.extend(seeds::resolve(conn).await);
    }
    if let (false, Some(addr)) = (s.is_server, s.peer_addr) {
        addrs.push(addr);
    }
    for addr in &addrs {
        state.dialer.connected(*addr);
    }
    tracing::info!(peer = %name, node_id = s.node_id, "peer joined");
    state.args.view.set(s.node_id, Some(name.clone()));
    state.peers.insert(s.node_id, (name, addrs));
    // new capacity: let every pool look for work
    broadcast_wake();
}

fn session_down(myself: &ActorRef<MembershipMsg>, state: &mut MembershipState, s: SessionInfo) {
    state.unready.remove(&s.node_id);
    // only a session that was a ready peer counts: a rejected duplicate or a
    // failed handshake says nothing about the node behind it
    let Some((name, _)) = state.peers.remove(&s.node_id) else {
        return;
    };
    state.misses.remove(&s.node_id);
    state.args.view.set(s.node_id, None);
    if state.peers.values().any(|(n, _)| *n == name) {
        return;
    }
    tracing::warn!(peer = %name, "peer left; its silent jobs will be taken back");
    // A dead node has stopped renewing; one that only lost its session to
    // us has not. Look again once a live owner would have renewed.
    myself.send_after(SILENT_FOR + RENEW_EVERY, move || {
        MembershipMsg::TakeBack(name.clone())
    });
}

/// Puts back the jobs of a departed peer that it stopped renewing, in a
/// task of its own so session events are not held up behind the database.
fn take_back(state: &MembershipState, name: String) {
    let (pool, node, lease) = (
        state.args.pool.clone(),
        state.args.node.clone(),
        state.args.lease,
    );
    tokio::spawn(async move {
        let why = Abandoned::Departed {
            node: &name,
            lease,
            silent_for: SILENT_FOR,
        };
        match db::jobs::requeue_abandoned(&pool, &node, why, message::job_interrupted).await {
            Ok(jobs) if !jobs.is_empty() => {
                tracing::info!(peer = %name, jobs = jobs.len(), "took back the jobs of a departed peer");
                broadcast_wake();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "taking back a departed peer's jobs failed; their leases will expire")
            }
        }
    });
}

fn broadcast_wake() {
    broadcast_to_pools(|| crate::processor::PoolMsg::Wake);
}
