//! Scaling follows the work and loses none of it. Nodes run the way the
//! StatefulSet runs them: named `videoproject-0…N`, each on an address of
//! its own and one cluster port, all found through one seed name that
//! resolves to every node (a hosts file each node sees as its DNS). A small
//! controller reads the metric of the KEDA object in k8s/base (its query,
//! target and activation, read from the file) and applies the HPA's formula,
//! ceil(metric / target) between the bounds, stabilised: scale-up at once,
//! scale-down only when the window agrees, one node at a time, the highest
//! ordinal first, with SIGTERM and the pod's grace period.
//!
//! Under a stream of uploads (a trickle throughout, a surge early on) the
//! cluster goes 1 → 4 → 1 nodes. It prints the replicas, queue and
//! throughput over time, and checks that every accepted video is `done`
//! exactly once with its exact frames, that no job waited for a lease to
//! expire (every job a stopping node held was handed back by it), and that
//! every stop fit the grace period.
//!
//!   cargo bench --bench scaling -- [--quick]

use videoproject_test_support as helpers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use helpers::{
    Node, NodeConfig, PASSWORD, TestDb, assert_done_once, eventually, fixture, free_port,
    manifest_field, private_hosts_work, start_node,
};

const SCALED_OBJECT: &str = include_str!("../k8s/base/scaledobject.yaml");
const STATEFULSET: &str = include_str!("../k8s/base/statefulset.yaml");

const COOKIE: &str = "scaling-cluster-cookie";
/// The seed every node is given, as the headless Service's name.
const SEED_NAME: &str = "videoproject-cluster";
/// Frames asked of every video (`count`), so each one's result is exact.
const FRAMES: u64 = 3;
/// Uploads of the surge in flight at once: clients, not a flood (the nodes'
/// connection pools share PostgreSQL's `max_connections`).
const SURGE_AT_ONCE: usize = 16;
/// The whole run, from the first upload to the last node stopped.
const DEADLINE: Duration = Duration::from_secs(600);

/// What the controller and the stops take from the manifests themselves.
struct Manifests {
    query: String,
    target: f64,
    activation: f64,
    grace: Duration,
    pre_stop: Duration,
}

impl Manifests {
    fn read() -> Self {
        let after_pre_stop = &STATEFULSET[STATEFULSET
            .find("preStop:")
            .expect("a preStop hook in the StatefulSet")..];
        Self {
            query: manifest_field(SCALED_OBJECT, "query").to_owned(),
            target: number(SCALED_OBJECT, "targetQueryValue"),
            activation: number(SCALED_OBJECT, "activationTargetQueryValue"),
            grace: Duration::from_secs_f64(number(STATEFULSET, "terminationGracePeriodSeconds")),
            pre_stop: Duration::from_secs_f64(number(after_pre_stop, "seconds")),
        }
    }

    /// The replicas KEDA's HPA asks for: the metric is an average value per
    /// pod, so ceil(metric / target); below activation, the minimum.
    /// What a stop may take: the grace period after the preStop pause.
    fn stop_budget(&self) -> Duration {
        self.grace.saturating_sub(self.pre_stop)
    }

    fn desired(&self, metric: f64, min: usize, max: usize) -> usize {
        if metric <= self.activation {
            return min;
        }
        ((metric / self.target).ceil() as usize).clamp(min, max)
    }
}

fn number(doc: &str, key: &str) -> f64 {
    let v = manifest_field(doc, key);
    v.parse()
        .unwrap_or_else(|_| panic!("`{key}: {v}` is not a number"))
}

/// The controller's clock: KEDA polls every 15 s and the HPA waits 600 s
/// before it scales down, one pod per 300 s. Here the same rules run in
/// seconds.
struct Pace {
    poll: Duration,
    up_window: Duration,
    down_window: Duration,
    down_every: Duration,
}

const PACE: Pace = Pace {
    poll: Duration::from_secs(1),
    up_window: Duration::from_secs(1),
    down_window: Duration::from_secs(6),
    down_every: Duration::from_secs(3),
};

struct Size {
    min_nodes: usize,
    max_nodes: usize,
    users: usize,
    /// Uploads sent early on, [`SURGE_AT_ONCE`] at a time.
    surge: usize,
    /// One upload this often, until the cluster is back to one node: no
    /// more than one node's work (2 s jobs, `target` at once), or it would
    /// never be back to one.
    trickle_every: Duration,
}

/// A stopped node: which, how long its stop took, and how it ended.
struct Stopped {
    ordinal: usize,
    took: Duration,
    success: bool,
    /// Its log, shown when a check fails.
    log: Vec<String>,
}

/// The nodes, as the StatefulSet keeps them.
struct Fleet {
    db: TestDb,
    media: tempfile::TempDir,
    base: NodeConfig,
    manifests: Manifests,
    cluster_port: u16,
    /// The cluster's DNS, as the nodes see it; None: seeds are listed.
    hosts: Option<PathBuf>,
    max_nodes: usize,
    running: BTreeMap<usize, Node>,
    stopping: BTreeSet<usize>,
    stops: JoinSet<Stopped>,
    stopped: Vec<Stopped>,
    /// The Service's endpoints: ready nodes that are not stopping.
    endpoints: Arc<RwLock<Vec<SocketAddr>>>,
}

fn address(ordinal: usize) -> String {
    format!("127.0.1.{}", ordinal + 1)
}

impl Fleet {
    fn replicas(&self) -> usize {
        self.running.len()
    }

    /// The headless Service lists every pod that exists, ready or not
    /// (`starting`: one whose node is on its way up).
    fn write_hosts(&self, starting: Option<usize>) {
        let Some(hosts) = &self.hosts else { return };
        let mut text = String::from("127.0.0.1 localhost\n");
        for i in self
            .running
            .keys()
            .chain(self.stopping.iter())
            .chain(starting.as_ref())
        {
            text.push_str(&format!("{} videoproject-{i} {SEED_NAME}\n", address(*i)));
        }
        // in place: the nodes' mounts hold this file, not its name
        std::fs::write(hosts, text).unwrap();
    }

    fn config(&self, ordinal: usize) -> NodeConfig {
        let port = self.cluster_port;
        let (advertise, seeds) = match &self.hosts {
            Some(_) => (
                format!("videoproject-{ordinal}"),
                format!("{SEED_NAME}:{port}"),
            ),
            None => (
                address(ordinal),
                (0..self.max_nodes)
                    .map(|i| format!("{}:{port}", address(i)))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        let mut c = self.base.clone();
        c.node_name = format!("videoproject-{ordinal}");
        c.hosts = self.hosts.clone();
        c.env.extend([
            (
                "VP_CLUSTER_ADDR".to_owned(),
                format!("{}:{port}", address(ordinal)),
            ),
            ("VP_CLUSTER_ADVERTISE".to_owned(), advertise),
            ("VP_CLUSTER_SEEDS".to_owned(), seeds),
            ("VP_CLUSTER_COOKIE".to_owned(), COOKIE.to_owned()),
        ]);
        c
    }

    /// Starts the next ordinal, unless its previous pod is still stopping
    /// (a StatefulSet waits for it), and adds it to the endpoints once ready.
    async fn scale_up(&mut self, http: &reqwest::Client) -> bool {
        let ordinal = self.running.len();
        if self.stopping.contains(&ordinal) {
            return false;
        }
        let config = self.config(ordinal);
        self.write_hosts(Some(ordinal));
        let node =
            tokio::task::block_in_place(|| start_node(&self.db.url, self.media.path(), &config));
        let addr = node.addr;
        self.running.insert(ordinal, node);
        eventually(
            &format!("videoproject-{ordinal} to be ready"),
            Duration::from_secs(30),
            || async {
                let r = http
                    .get(format!("http://{addr}/readyz"))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        self.endpoints.write().unwrap().push(addr);
        true
    }

    /// The highest ordinal leaves the endpoints, then gets SIGTERM; its stop
    /// is timed against the grace period left after the preStop pause.
    fn scale_down(&mut self) {
        let (ordinal, mut node) = self.running.pop_last().expect("a node to stop");
        self.endpoints.write().unwrap().retain(|a| *a != node.addr);
        self.stopping.insert(ordinal);
        // waited for well past the budget: a late stop is measured, not cut
        let patience = self.manifests.grace * 2;
        self.stops.spawn(async move {
            let started = Instant::now();
            let status = node.terminate(patience).await;
            Stopped {
                ordinal,
                took: started.elapsed(),
                success: status.success(),
                log: node.log_lines(),
            }
        });
    }

    /// Collects the nodes that have stopped; they leave the DNS.
    fn reap(&mut self) {
        while let Some(done) = self.stops.try_join_next() {
            let stopped = done.expect("a stop within the grace period");
            self.stopping.remove(&stopped.ordinal);
            self.stopped.push(stopped);
            self.write_hosts(None);
        }
    }
}

/// What the clients did.
#[derive(Default)]
struct Clients {
    accepted: Mutex<Vec<(usize, String)>>,
    refused: AtomicU64,
    unreachable: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

/// The clients: they upload through the Service.
#[derive(Clone)]
struct Uploader {
    http: reqwest::Client,
    endpoints: Arc<RwLock<Vec<SocketAddr>>>,
    turn: Arc<AtomicU64>,
    clients: Arc<Clients>,
    video: Arc<[u8]>,
    tokens: Arc<Vec<String>>,
}

impl Uploader {
    /// The next endpoint in turn, as a Service would pick it.
    fn pick(&self) -> Option<SocketAddr> {
        let e = self.endpoints.read().unwrap();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        (!e.is_empty()).then(|| e[turn % e.len()])
    }

    /// One upload for `user`; a refusal (503, 429) or a node gone between
    /// the pick and the send is tried again.
    async fn upload(self, user: usize) {
        let clients = &self.clients;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let Some(addr) = self.pick() else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let form = reqwest::multipart::Form::new()
                .text("count", FRAMES.to_string())
                .part(
                    "video",
                    reqwest::multipart::Part::bytes(self.video.to_vec()).file_name("v20.mp4"),
                );
            let sent = self
                .http
                .post(format!("http://{addr}/api/v1/videos"))
                .bearer_auth(&self.tokens[user])
                .multipart(form)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 => {
                    let body: Value = r.json().await.unwrap();
                    let id = body["video"]["id"].as_str().unwrap().to_owned();
                    clients.accepted.lock().unwrap().push((user, id));
                    return;
                }
                Ok(r) if r.status() == 503 || r.status() == 429 => {
                    clients.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    clients
                        .unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{status} {body}"));
                    return;
                }
                Err(_) => {
                    clients.unreachable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        clients
            .unexpected
            .lock()
            .unwrap()
            .push("no node took the upload within 120 s".into());
    }
}

/// (the KEDA metric, queued, processing, done, failed) now.
async fn sample(db: &tokio_postgres::Client, query: &str) -> (f64, i64, i64, i64, i64) {
    let metric: i64 = db.query_one(query, &[]).await.unwrap().get(0);
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'queued'),
                    count(*) FILTER (WHERE state = 'processing'),
                    count(*) FILTER (WHERE state = 'done'),
                    count(*) FILTER (WHERE state NOT IN ('queued', 'processing', 'done'))
             FROM jobs",
            &[],
        )
        .await
        .unwrap();
    (
        metric as f64,
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
    )
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let size = if quick {
        Size {
            min_nodes: 1,
            max_nodes: 4,
            users: 8,
            surge: 24,
            trickle_every: Duration::from_millis(1000),
        }
    } else {
        Size {
            min_nodes: 1,
            max_nodes: 4,
            users: 16,
            surge: 80,
            trickle_every: Duration::from_millis(1000),
        }
    };
    let manifests = Manifests::read();
    let hosts_mode = private_hosts_work();
    println!(
        "scaling{}: {} → {} → {} nodes, target {} jobs a node (`{}`), {} users, a surge of {} and one upload every {:?}",
        if quick { " (quick)" } else { "" },
        size.min_nodes,
        size.max_nodes,
        size.min_nodes,
        manifests.target,
        manifests.query,
        size.users,
        size.surge,
        size.trickle_every,
    );
    println!(
        "seeds: {}",
        if hosts_mode {
            "one name that resolves to every node (a hosts file each node sees as its DNS)"
        } else {
            "every node's address listed (this machine gives no private mount namespace)"
        }
    );

    let media = tempfile::tempdir().unwrap();
    let hosts = hosts_mode.then(|| media.path().join("hosts"));
    // Production's way down, but a job grace of 1 s: the 2 s jobs outlast
    // it, so stopping nodes hand running jobs back (production: 15 s).
    let base = NodeConfig {
        workers: manifests.target as usize,
        ..NodeConfig::paced_with("shutdown_grace_secs = 1")
    };
    let mut fleet = Fleet {
        db: TestDb::create().await,
        media,
        base,
        manifests,
        cluster_port: free_port(),
        hosts,
        max_nodes: size.max_nodes,
        running: BTreeMap::new(),
        stopping: BTreeSet::new(),
        stops: JoinSet::new(),
        stopped: Vec::new(),
        endpoints: Arc::default(),
    };
    let http = reqwest::Client::new();
    for _ in 0..size.min_nodes {
        assert!(fleet.scale_up(&http).await);
    }

    // users, signed up through the first node
    let first = fleet.endpoints.read().unwrap()[0];
    let mut tokens = Vec::new();
    for u in 0..size.users {
        let email = format!("user{u}@example.com");
        let credentials = json!({"email": email, "password": PASSWORD});
        let r = http
            .post(format!("http://{first}/api/v1/users"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .post(format!("http://{first}/api/v1/sessions"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        let token: Value = r.json().await.unwrap();
        tokens.push(token["token"].as_str().unwrap().to_owned());
    }
    let uploader = Uploader {
        http: http.clone(),
        endpoints: fleet.endpoints.clone(),
        turn: Arc::default(),
        clients: Arc::default(),
        video: std::fs::read(fixture("v20")).unwrap().into(),
        tokens: Arc::new(tokens),
    };
    let trickling = Arc::new(AtomicBool::new(true));
    let mut load = JoinSet::new();

    // the trickle: one upload every `trickle_every`, until told to stop
    {
        let (uploader, trickling, every) =
            (uploader.clone(), trickling.clone(), size.trickle_every);
        load.spawn(async move {
            let mut uploads = JoinSet::new();
            let mut tick = tokio::time::interval(every);
            let mut n = 0;
            while trickling.load(Ordering::Relaxed) {
                tick.tick().await;
                uploads.spawn(uploader.clone().upload(n % uploader.tokens.len()));
                n += 1;
            }
            uploads.join_all().await;
        });
    }

    let db = fleet.db.client().await;
    let started = Instant::now();
    let mut surged = false;
    let mut recommendations: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut last_down = Instant::now();
    let mut peak = fleet.replicas();
    let mut done_at: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut tick = tokio::time::interval(PACE.poll);
    println!("\n  t (s)  replicas  stopping  queued  processing  done  throughput (/s, last 5 s)");
    loop {
        tick.tick().await;
        let now = Instant::now();
        assert!(
            now - started < DEADLINE,
            "the run did not end within {DEADLINE:?}"
        );
        fleet.reap();

        // the surge, once the trickle has run on one node for a while
        if !surged && now - started >= Duration::from_secs(5) {
            surged = true;
            let (uploader, surge, users) = (uploader.clone(), size.surge, size.users);
            load.spawn(async move {
                futures::stream::iter(0..surge)
                    .map(|k| uploader.clone().upload(k % users))
                    .buffer_unordered(SURGE_AT_ONCE)
                    .collect::<Vec<()>>()
                    .await;
            });
        }

        let (metric, queued, processing, done, failed) = sample(&db, &fleet.manifests.query).await;
        done_at.push_back((now, done));
        while done_at.len() > 6 {
            done_at.pop_front();
        }
        let (t0, d0) = done_at[0];
        let throughput = if now > t0 {
            (done - d0) as f64 / (now - t0).as_secs_f64()
        } else {
            0.0
        };
        println!(
            "  {:>5.0}  {:>8}  {:>8}  {:>6}  {:>10}  {:>4}  {:>5.1}",
            (now - started).as_secs_f64(),
            fleet.replicas(),
            fleet.stopping.len(),
            queued,
            processing,
            done,
            throughput
        );

        // the HPA: scale up to the lowest recommendation of the up window,
        // down to the highest of the down window, one node at a time
        let desired = fleet
            .manifests
            .desired(metric, size.min_nodes, size.max_nodes);
        recommendations.push_back((now, desired));
        while recommendations
            .front()
            .is_some_and(|(at, _)| now - *at > PACE.down_window)
        {
            recommendations.pop_front();
        }
        let within = |w: Duration| recommendations.iter().filter(move |(at, _)| now - *at <= w);
        let up_to = within(PACE.up_window).map(|(_, d)| *d).min().unwrap();
        let down_to = within(PACE.down_window).map(|(_, d)| *d).max().unwrap();
        if up_to > fleet.replicas() {
            while fleet.replicas() < up_to && fleet.scale_up(&http).await {}
        } else if down_to < fleet.replicas() && now - last_down >= PACE.down_every {
            fleet.scale_down();
            last_down = now;
        }
        peak = peak.max(fleet.replicas());

        // back to one node after the peak: the trickle stops; the run ends
        // when every accepted video is settled and every stop is over
        let back_down = peak == size.max_nodes && fleet.replicas() == size.min_nodes;
        if back_down {
            trickling.store(false, Ordering::Relaxed);
        }
        let accepted = uploader.clients.accepted.lock().unwrap().len() as i64;
        if back_down
            && load.is_empty()
            && fleet.stopping.is_empty()
            && done + failed == accepted
            && metric == 0.0
        {
            break;
        }
        while load.try_join_next().is_some() {}
    }

    let mut failures = Vec::new();
    let mut check = |what: &str, ok: bool| {
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(what.to_owned());
        }
    };
    let clients = &uploader.clients;
    let unexpected = clients.unexpected.lock().unwrap().clone();
    let accepted = clients.accepted.lock().unwrap().clone();
    println!(
        "\nuploads: {} accepted, {} refused and sent again, {} sent again after a node went away",
        accepted.len(),
        clients.refused.load(Ordering::Relaxed),
        clients.unreachable.load(Ordering::Relaxed)
    );
    check(
        &format!("every upload answered 202 or a refusal, tried again ({unexpected:?})"),
        unexpected.is_empty(),
    );
    check(
        &format!("the cluster grew to {} nodes (peak {peak})", size.max_nodes),
        peak == size.max_nodes,
    );
    let lost: Vec<(usize, String)> = fleet
        .stopped
        .iter()
        .filter(|s| !s.success || s.took > fleet.manifests.stop_budget())
        .map(|s| (s.ordinal, format!("{:?}", s.took)))
        .collect();
    for s in &fleet.stopped {
        println!(
            "stop of videoproject-{}: {:.2} s from SIGTERM to exit ({}), budget {} s after the {} s preStop",
            s.ordinal,
            s.took.as_secs_f64(),
            if s.success { "exit 0" } else { "failed" },
            fleet.manifests.stop_budget().as_secs(),
            fleet.manifests.pre_stop.as_secs()
        );
    }
    check(
        &format!(
            "{} stops, each clean and within the grace period ({lost:?})",
            fleet.stopped.len()
        ),
        lost.is_empty() && fleet.stopped.len() == size.max_nodes - size.min_nodes,
    );
    // how each job that went back to the queue got there
    let mut handed_back = 0;
    let (mut expired, mut departed) = (0, 0);
    let requeued = db
        .query(
            "SELECT job_id::text, detail FROM job_events
             WHERE to_state = 'queued' AND from_state = 'processing'",
            &[],
        )
        .await
        .unwrap();
    for row in requeued {
        let (id, detail): (String, Option<String>) = (row.get(0), row.get(1));
        let detail = detail.unwrap_or_default();
        if detail == "node shutting down" {
            handed_back += 1;
            continue;
        }
        if detail.ends_with("left the cluster") {
            departed += 1;
        } else if detail.starts_with("lease of node") {
            expired += 1;
        } else {
            continue;
        }
        println!(
            "  job {id}: {:#?}",
            helpers::job_events(&fleet.db, &id).await
        );
        for s in &fleet.stopped {
            for line in s.log.iter().filter(|l| {
                l.contains(&id)
                    || l.contains("shutting")
                    || l.contains("drain")
                    || l.contains("stopped")
            }) {
                println!("    videoproject-{}: {line}", s.ordinal);
            }
        }
    }
    println!("jobs handed back by a stopping node: {handed_back}");
    check(
        &format!(
            "no job waited for a lease: {expired} taken back after their lease ran out, {departed} after their node left"
        ),
        expired == 0 && departed == 0,
    );
    let base = format!("http://{}", fleet.endpoints.read().unwrap()[0]);
    for (user, id) in &accepted {
        assert_done_once(
            &http,
            &base,
            &fleet.db,
            fleet.media.path(),
            &uploader.tokens[*user],
            id,
            FRAMES,
        )
        .await;
    }
    println!(
        "ok   all {} accepted videos done exactly once, {FRAMES} frames each, one whole zip",
        accepted.len()
    );
    println!(
        "run: {:.0} s, {:.2} videos/s overall",
        started.elapsed().as_secs_f64(),
        accepted.len() as f64 / started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        eprintln!("scaling: {} checks failed: {failures:?}", failures.len());
        std::process::exit(1);
    }
}
