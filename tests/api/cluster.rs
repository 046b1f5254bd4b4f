//! Several real nodes on loopback sharing one database and media directory,
//! joined into one ractor cluster.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    JobEvent, Node, NodeConfig, PASSWORD, TestDb, assert_done_once, cluster_configs, error_code,
    eventually, fixture, free_port, job_events, job_files, start_node,
};

const PROCESSING: Duration = Duration::from_secs(180);
const COOKIE: &str = "test-cluster-cookie";

struct TestCluster {
    db: TestDb,
    media: tempfile::TempDir,
    configs: Vec<NodeConfig>,
    nodes: Vec<Node>,
    http: reqwest::Client,
}

impl TestCluster {
    /// `n` nodes named node-0, node-1, …, each seeded with every other.
    async fn start(n: usize, base: NodeConfig) -> Self {
        let db = TestDb::create().await;
        let media = tempfile::tempdir().unwrap();
        let configs = cluster_configs(n, base, COOKIE);
        let nodes = configs
            .iter()
            .map(|c| start_node(&db.url, media.path(), c))
            .collect();
        let cluster = Self {
            db,
            media,
            configs,
            nodes,
            http: reqwest::Client::new(),
        };
        for i in 0..n {
            cluster.wait_peers(i, n - 1).await;
        }
        cluster
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[node].addr)
    }

    async fn readyz(&self, node: usize) -> Value {
        self.readyz_of(&self.nodes[node]).await
    }

    async fn readyz_of(&self, node: &Node) -> Value {
        self.http
            .get(format!("http://{}/readyz", node.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Starts a node like node-0 on a port of its own, without the `drop`
    /// variables and with `extra`: one that tries to join the cluster.
    fn intruder(&self, name: &str, drop: &[&str], extra: Vec<(String, String)>) -> Node {
        let mut config = self.configs[0].clone();
        config.node_name = name.into();
        config
            .env
            .retain(|(k, _)| k != "VP_CLUSTER_ADDR" && !drop.contains(&k.as_str()));
        config.env.push((
            "VP_CLUSTER_ADDR".into(),
            format!("127.0.0.1:{}", free_port()),
        ));
        config.env.extend(extra);
        start_node(&self.db.url, self.media.path(), &config)
    }

    async fn wait_peers(&self, node: usize, peers: usize) {
        eventually(
            &format!("node-{node} to see {peers} peers"),
            Duration::from_secs(30),
            || async { (self.readyz(node).await["cluster"]["peers"] == peers).then_some(()) },
        )
        .await;
    }

    async fn user(&self, email: &str) -> String {
        let r = self
            .http
            .post(self.url(0, "/api/v1/users"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        self.sign_in(1, email).await
    }

    async fn sign_in(&self, node: usize, email: &str) -> String {
        let r = self
            .http
            .post(self.url(node, "/api/v1/sessions"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn upload(
        &self,
        node: usize,
        token: &str,
        file: &str,
        fields: &[(&str, &str)],
    ) -> String {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        form = form.part(
            "video",
            reqwest::multipart::Part::bytes(bytes).file_name(format!("{file}.mp4")),
        );
        let r = self
            .http
            .post(self.url(node, "/api/v1/videos"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()["video"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn video(&self, node: usize, token: &str, id: &str) -> Value {
        let r = self
            .http
            .get(self.url(node, &format!("/api/v1/videos/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["video"].clone()
    }

    /// (owner node, state) of a job, from the database.
    async fn owner(&self, id: &str) -> (Option<String>, String) {
        let row = self
            .db
            .client()
            .await
            .query_one(
                "SELECT owner_node, state::text FROM jobs WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    async fn events(&self, id: &str) -> Vec<JobEvent> {
        job_events(&self.db, id).await
    }

    fn job_files(&self, id: &str) -> Vec<String> {
        job_files(self.media.path(), id)
    }

    /// Done once with `frames` frames, downloaded from another node than
    /// the one that took the upload.
    async fn assert_done_once(&self, token: &str, id: &str, frames: u64) {
        let base = format!("http://{}", self.nodes[2 % self.nodes.len()].addr);
        assert_done_once(
            &self.http,
            &base,
            &self.db,
            self.media.path(),
            token,
            id,
            frames,
        )
        .await;
    }
}

#[tokio::test]
async fn nodes_join_share_work_and_refuse_a_wrong_cookie() {
    // the pools' polling of the queue is all but off: a job is taken only
    // because its upload's wake-up reached a pool
    let cluster = TestCluster::start(3, NodeConfig::tuned("queue_poll_secs = 3600\n")).await;
    let token = cluster.user("ann@example.com").await;

    // uploads to every node; idle capacity anywhere picks them up at once
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            cluster
                .upload(i % 3, &token, "v20", &[("count", "3")])
                .await,
        );
    }
    for id in &ids {
        eventually("the video to be done", PROCESSING, || async {
            (cluster.video(1, &token, id).await["status"] == "done").then_some(())
        })
        .await;
        cluster.assert_done_once(&token, id, 3).await;
    }

    // a token revoked on one node is refused by the others
    let r = cluster
        .http
        .delete(cluster.url(0, "/api/v1/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for node in 1..3 {
        // the other nodes hear it from PostgreSQL's change feed when the
        // revoking node does (how soon is the benchmarks' business)
        let r = eventually(
            "the revocation to reach the other nodes",
            PROCESSING,
            || async {
                let r = cluster
                    .http
                    .get(cluster.url(node, "/api/v1/me"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                (r.status() == 401).then_some(r)
            },
        )
        .await;
        assert_eq!(error_code(r).await, "unauthorized");
    }

    // a node with the wrong cookie is refused by every peer
    let intruder = cluster.intruder(
        "intruder",
        &["VP_CLUSTER_COOKIE"],
        vec![("VP_CLUSTER_COOKIE".into(), "wrong-cookie".into())],
    );
    let refusals = || -> usize {
        let refused = |l: &&String| l.contains("shutting down due to authentication failure");
        cluster
            .nodes
            .iter()
            .map(|n| n.log_lines().iter().filter(refused).count())
            .sum()
    };
    eventually(
        "a peer to refuse the intruder's handshake",
        Duration::from_secs(30),
        || async { (refusals() > 0).then_some(()) },
    )
    .await;
    // and it stays refused when it dials again
    let first = refusals();
    eventually(
        "the intruder to be refused again",
        Duration::from_secs(30),
        || async { (refusals() > first).then_some(()) },
    )
    .await;
    let seen = cluster.readyz_of(&intruder).await;
    assert_eq!(seen["cluster"]["peers"], 0, "{seen}");
    for node in 0..3 {
        let peers = cluster.readyz(node).await["cluster"]["peer_names"].clone();
        assert!(
            !peers.as_array().unwrap().iter().any(|p| p == "intruder"),
            "{peers}"
        );
    }
}

#[tokio::test]
async fn killing_a_busy_node_loses_nothing_and_it_rejoins() {
    let base = NodeConfig {
        workers: 1,
        ..NodeConfig::paced()
    };
    let mut cluster = TestCluster::start(3, base).await;
    let token = cluster.user("ann@example.com").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            cluster
                .upload(i % 3, &token, "v60_big", &[("interval", "0.04")])
                .await,
        );
    }
    // node-1 is busy with one of them, with progress visible on the other nodes
    let victim_job = eventually("node-1 to be mid-job", PROCESSING, || async {
        for id in &ids {
            if cluster.owner(id).await == (Some("node-1".into()), "processing".into()) {
                let v = cluster.video(0, &token, id).await;
                if v["progress"].as_f64().unwrap() > 0.0 {
                    return Some(id.clone());
                }
            }
        }
        None
    })
    .await;

    let killed_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let killed_at = Instant::now();
    cluster.nodes[1].kill();
    let taken_over = eventually("another node to take the job over", PROCESSING, || async {
        let (owner, state) = cluster.owner(&victim_job).await;
        (state == "processing" && owner.as_deref() != Some("node-1")).then(|| killed_at.elapsed())
    })
    .await;

    for id in &ids {
        eventually("every video to be done", PROCESSING, || async {
            (cluster.video(0, &token, id).await["status"] == "done").then_some(())
        })
        .await;
        cluster.assert_done_once(&token, id, 1500).await;
    }
    let events = cluster.events(&victim_job).await;
    let taken_back = events
        .iter()
        .find(|e| e.to == "queued" && e.detail.as_deref() == Some("node node-1 left the cluster"))
        .unwrap_or_else(|| {
            panic!("taken back because node-1 left, not by lease expiry: {events:?}")
        });
    println!(
        "take-over after SIGKILL: jobs taken back after {:.0} ms, running again after {} ms (when a slot was free)",
        (taken_back.at - killed_epoch) * 1000.0,
        taken_over.as_millis()
    );

    // the killed node comes back under its name and rejoins
    cluster.nodes[1] = start_node(&cluster.db.url, cluster.media.path(), &cluster.configs[1]);
    for node in 0..3 {
        cluster.wait_peers(node, 2).await;
    }
}

#[tokio::test]
async fn a_paused_node_is_fenced_out_when_it_wakes() {
    // the default 30 s lease: the take-over must come from the heartbeat
    let base = NodeConfig {
        workers: 1,
        ..NodeConfig::paced()
    };
    let cluster = TestCluster::start(2, base).await;
    let token = cluster.user("ann@example.com").await;
    let id = cluster
        .upload(0, &token, "v60_big", &[("interval", "0.04")])
        .await;
    let (owner, _) = eventually("the job to run", PROCESSING, || async {
        let (owner, state) = cluster.owner(&id).await;
        (state == "processing").then(|| (owner.unwrap(), state))
    })
    .await;
    let paused = if owner == "node-0" { 0 } else { 1 };
    let other = 1 - paused;

    cluster.nodes[paused].signal("STOP");
    let stopped_at = Instant::now();
    let taken_over = eventually("the other node to take over", PROCESSING, || async {
        let (o, state) = cluster.owner(&id).await;
        (state == "processing" && o.as_deref() == Some(&format!("node-{other}")))
            .then(|| stopped_at.elapsed())
    })
    .await;
    println!("take-over of a paused node: {} ms", taken_over.as_millis());
    let paused_name = format!("node-{paused}");
    let detail = format!("node {paused_name} left the cluster");
    let events = cluster.events(&id).await;
    assert!(
        events
            .iter()
            .any(|e| e.to == "queued" && e.detail.as_deref() == Some(detail.as_str())),
        "taken over because the heartbeat dropped the paused node: {events:?}"
    );
    eventually("the video to be done", PROCESSING, || async {
        (cluster.video(other, &token, &id).await["status"] == "done").then_some(())
    })
    .await;
    let before = cluster.events(&id).await;

    cluster.nodes[paused].signal("CONT");
    eventually(
        "the paused node to find its lease gone",
        Duration::from_secs(30),
        || async {
            cluster.nodes[paused]
                .log_lines()
                .iter()
                .any(|l| l.contains("lease") && l.contains("lost"))
                .then_some(())
        },
    )
    .await;
    // it rejoins; its stale work had every chance to land: nothing did
    eventually("the cluster to settle", Duration::from_secs(30), || async {
        let ready = cluster.readyz(other).await;
        (ready["cluster"]["peers"] == 1).then_some(())
    })
    .await;
    assert_eq!(
        cluster.events(&id).await.len(),
        before.len(),
        "no transition after the fence"
    );
    cluster.assert_done_once(&token, &id, 1500).await;
}

/// A peer's departure must not cost a node its own way down: ractor drops a
/// departed peer's pool proxy under the name this node's pool is found by.
#[tokio::test]
async fn after_a_peer_left_a_stopping_node_still_hands_its_jobs_back() {
    let mut cluster = TestCluster::start(
        2,
        NodeConfig {
            workers: 1,
            ..NodeConfig::paced_with("shutdown_grace_secs = 1\n")
        },
    )
    .await;
    let token = cluster.user("ann@example.com").await;
    let left = cluster.nodes[1].terminate(Duration::from_secs(30)).await;
    assert!(left.success());
    cluster.wait_peers(0, 0).await;

    let id = cluster.upload(0, &token, "v60", &[("count", "3")]).await;
    eventually("node-0 to run the job", PROCESSING, || async {
        (cluster.owner(&id).await == (Some("node-0".into()), "processing".into())).then_some(())
    })
    .await;
    let stopped = cluster.nodes[0].terminate(Duration::from_secs(30)).await;
    assert!(stopped.success());
    let events = cluster.events(&id).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.to.as_str(), last.detail.as_deref()),
        ("queued", Some("node shutting down")),
        "handed back at once, not left to a lease: {events:?}"
    );
    assert_eq!(cluster.owner(&id).await, (None, "queued".into()));
}

#[tokio::test]
async fn deleting_on_one_node_stops_ffmpeg_on_another() {
    let cluster = TestCluster::start(
        2,
        NodeConfig {
            workers: 1,
            ..NodeConfig::paced()
        },
    )
    .await;
    let token = cluster.user("ann@example.com").await;
    let id = cluster
        .upload(0, &token, "v60_big", &[("interval", "0.04")])
        .await;
    // ffmpeg is running: the job has made progress
    let owner = eventually("the job to be mid-way", PROCESSING, || async {
        let (owner, state) = cluster.owner(&id).await;
        let progress = cluster.video(0, &token, &id).await["progress"]
            .as_f64()
            .unwrap_or(0.0);
        (state == "processing" && progress > 0.0).then(|| owner.unwrap())
    })
    .await;
    let runner = if owner == "node-0" { 0 } else { 1 };
    let other = 1 - runner;

    let started = Instant::now();
    let r = cluster
        .http
        .delete(cluster.url(other, &format!("/api/v1/videos/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let stopped = eventually(
        "the running node to stop ffmpeg",
        Duration::from_secs(10),
        || async {
            let lines = cluster.nodes[runner].log_lines();
            lines
                .iter()
                .any(|l| l.contains("stopped: cancelled") && l.contains(&id))
                .then(|| started.elapsed())
        },
    )
    .await;
    println!("cross-node cancel took {} ms", stopped.as_millis());
    eventually(
        "the job's files to be gone",
        Duration::from_secs(10),
        || async { cluster.job_files(&id).is_empty().then_some(()) },
    )
    .await;
}

/// A CA and one certificate it issued, as PEM files in `dir`: the
/// `VP_CLUSTER_TLS_*` variables for a node holding that certificate.
fn cluster_pki(dir: &std::path::Path, name: &str) -> Vec<(String, String)> {
    let issued = crate::helpers::Issued::new(dir, name, &[format!("{name}.cluster.test")]);
    let path = |p: std::path::PathBuf| p.display().to_string();
    vec![
        ("VP_CLUSTER_TLS_CERT".into(), path(issued.cert)),
        ("VP_CLUSTER_TLS_KEY".into(), path(issued.key)),
        ("VP_CLUSTER_TLS_CA".into(), path(issued.ca)),
    ]
}

#[tokio::test]
async fn with_mutual_tls_the_cookie_alone_does_not_let_a_node_in() {
    let pki = tempfile::tempdir().unwrap();
    let ours = cluster_pki(pki.path(), "cluster");
    let base = NodeConfig {
        env: ours.clone(),
        ..NodeConfig::default()
    };
    // nodes holding certificates of the cluster's CA join each other
    let cluster = TestCluster::start(2, base).await;
    let tls_refusals = || -> usize {
        let refused = |l: &&String| {
            l.contains("TLS handshake refused") || l.contains("Error establishing secure socket")
        };
        cluster
            .nodes
            .iter()
            .map(|n| n.log_lines().iter().filter(refused).count())
            .sum()
    };
    assert_eq!(tls_refusals(), 0);
    for node in &cluster.nodes {
        assert!(
            node.log_lines()
                .iter()
                .any(|l| l.contains("cluster node listening") && l.contains("\"tls\":true")),
            "the node did not start with TLS"
        );
    }

    // the right cookie without a certificate, then with a certificate of
    // another CA (trusting ours, so that only our side can refuse it)
    let mut foreign = cluster_pki(pki.path(), "other");
    foreign[2] = ours[2].clone();
    assert_eq!(foreign[2].0, "VP_CLUSTER_TLS_CA");
    for (i, tls) in [Vec::new(), foreign].into_iter().enumerate() {
        let before = tls_refusals();
        let intruder = cluster.intruder(
            &format!("intruder-{i}"),
            &[
                "VP_CLUSTER_TLS_CERT",
                "VP_CLUSTER_TLS_KEY",
                "VP_CLUSTER_TLS_CA",
            ],
            tls,
        );
        eventually(
            "the cluster to refuse the intruder's connection",
            Duration::from_secs(30),
            || async { (tls_refusals() > before).then_some(()) },
        )
        .await;
        let seen = cluster.readyz_of(&intruder).await;
        assert_eq!(seen["cluster"]["peers"], 0, "intruder {i}: {seen}");
        for node in 0..2 {
            let ready = cluster.readyz(node).await;
            assert_eq!(ready["cluster"]["peers"], 1, "node-{node}: {ready}");
        }
    }
}

/// Under TLS a socket that opens the cluster port and stalls its handshake
/// holds up no one: another node joins meanwhile, and the socket is closed.
#[tokio::test]
async fn with_tls_a_stalled_handshake_keeps_no_peer_out() {
    use tokio::io::AsyncReadExt;
    let pki = tempfile::tempdir().unwrap();
    let base = NodeConfig {
        env: cluster_pki(pki.path(), "cluster"),
        ..NodeConfig::default()
    };
    let cluster = TestCluster::start(1, base).await;
    let mut stalled = tokio::net::TcpStream::connect(cluster_addr(&cluster.configs[0]))
        .await
        .unwrap();
    // a member that dials node-0 (node-0 does not know it, so only its
    // accepting can bring them together)
    let newcomer = cluster.intruder("node-1", &[], Vec::new());
    eventually(
        "the newcomer to join past the stalled handshake",
        Duration::from_secs(30),
        || async { (cluster.readyz_of(&newcomer).await["cluster"]["peers"] == 1).then_some(()) },
    )
    .await;
    cluster.wait_peers(0, 1).await;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(25), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled socket is still open");
}

/// A second process with a running node's name is refused at start, with a
/// message that says why, and takes nothing from the running one.
#[tokio::test]
async fn a_second_node_with_a_running_nodes_name_is_refused() {
    let app = crate::helpers::TestApp::spawn_with(NodeConfig::paced(), false).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &crate::helpers::fixture("v20"), &[])
        .await;
    let mut twin = std::process::Command::new(crate::helpers::binary())
        .arg("serve")
        .env_clear()
        .envs(crate::helpers::kept_env())
        .env("DATABASE_URL", &app.db.url)
        .env("VP_HTTP_ADDR", "127.0.0.1:0")
        .env(
            "VP_MEDIA_URL",
            format!("file://{}", app.media.path().display()),
        )
        .env("VP_NODE_NAME", &app.config.node_name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually("the twin to exit", Duration::from_secs(30), || {
        let exited = twin.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(!status.success());
    let mut said = String::new();
    std::io::Read::read_to_string(twin.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("another node named `node-a` is running"),
        "{said}"
    );
    // the running node's job was left alone
    let done = app.wait_final(&token, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "done");
    let client = app.db.client().await;
    let requeued: i64 = client
        .query_one(
            "SELECT count(*) FROM job_events WHERE to_state = 'queued' AND from_state = 'processing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(requeued, 0);
}

/// The cluster address a node of [`cluster_configs`] listens on.
fn cluster_addr(config: &NodeConfig) -> String {
    config
        .env
        .iter()
        .find(|(k, _)| k == "VP_CLUSTER_ADDR")
        .map(|(_, v)| v.clone())
        .expect("a cluster node's config")
}

/// What a peer that passed the cookie sends to the processor pools, under
/// the pools' variant names: a stop-claiming order, a task's end, and
/// cancellations of a running job and of garbage.
#[derive(ractor_cluster::RactorClusterMessage)]
enum RoguePoolMsg {
    Drain(String),
    Finished(String),
    Tick(String),
    Cancel(Vec<u8>),
}

/// A peer is trusted with hints only: it cannot make a node stop claiming,
/// cancel a job its owner still wants, or crash an actor with bytes that
/// do not decode.
#[tokio::test]
async fn a_peer_cannot_drain_a_node_or_cancel_a_wanted_job() {
    use ractor::Actor;
    let config = cluster_configs(1, NodeConfig::paced(), COOKIE).remove(0);
    let node_addr = cluster_addr(&config);
    let app = crate::helpers::TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let running = app.upload_ok(&token, &fixture("v60"), &[]).await;
    eventually("the job to run", PROCESSING, || async {
        (app.video(&token, &running).await["status"] == "processing").then_some(())
    })
    .await;

    // a peer with the cookie joins and reaches the node's pool
    let server = ractor_cluster::NodeServer::new(
        free_port(),
        COOKIE.into(),
        "rogue".into(),
        "127.0.0.1".into(),
        None,
        Some(ractor_cluster::node::NodeConnectionMode::Transitive),
    );
    let (server, _) = Actor::spawn(None, server, ()).await.unwrap();
    ractor_cluster::client_connect(&server, node_addr.as_str())
        .await
        .unwrap();
    let pools = eventually(
        "the node's pool to be seen",
        Duration::from_secs(20),
        || async {
            let members = ractor::pg::get_members(&"vp.pools".to_owned());
            (!members.is_empty()).then_some(members)
        },
    )
    .await;
    let pool = ractor::ActorRef::<RoguePoolMsg>::from(pools[0].clone());
    let id = uuid::Uuid::parse_str(&running).unwrap();
    for msg in [
        RoguePoolMsg::Drain("stop".into()),
        RoguePoolMsg::Finished("x".into()),
        RoguePoolMsg::Tick(String::new()),
        RoguePoolMsg::Cancel(id.as_bytes().to_vec()),
        RoguePoolMsg::Cancel(b"not a job id".to_vec()),
    ] {
        pool.cast(msg).unwrap();
    }
    eventually(
        "the node to say it ignored them",
        Duration::from_secs(20),
        || async {
            (app.node
                .log_lines()
                .iter()
                .filter(|l| l.contains("a peer sent a message only this node may send"))
                .count()
                >= 3)
                .then_some(())
        },
    )
    .await;

    // the running job goes on to its end, once
    let done = app.wait_final(&token, &running, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    // the node still claims: a new video is processed
    let next = app
        .upload_ok(&token, &fixture("v20"), &[("count", "1")])
        .await;
    let done = app.wait_final(&token, &next, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    assert!(
        !app.node.log_lines().iter().any(|l| l.contains("panicked")),
        "no actor panicked"
    );
    server.stop(None);
}

/// A socket that opens the cluster port and says nothing is closed by the
/// handshake deadline, as is one that sends garbage.
#[tokio::test]
async fn a_silent_socket_on_the_cluster_port_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = cluster_configs(1, NodeConfig::default(), COOKIE).remove(0);
    let cluster_addr = cluster_addr(&config);
    let _app = crate::helpers::TestApp::spawn_with(config, false).await;
    let mut silent = tokio::net::TcpStream::connect(&cluster_addr).await.unwrap();
    let mut chatty = tokio::net::TcpStream::connect(&cluster_addr).await.unwrap();
    chatty.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    for (what, socket) in [("silent", &mut silent), ("garbage", &mut chatty)] {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(25), async {
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the {what} socket is still open");
    }
}
