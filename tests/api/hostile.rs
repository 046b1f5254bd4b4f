//! The hostile-client suite: each attack found by trying the node as an
//! attacker would, reproduced against the real binary over raw sockets, and
//! the behaviour that must hold instead. Sizes are quick (CI); the limits are
//! tuned down so the attacks bite within seconds.

use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A client that speaks HTTP/1.1 by hand, to send what no library would.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    async fn connect(app: &TestApp) -> Self {
        Self {
            stream: TcpStream::connect(app.node.addr).await.unwrap(),
        }
    }

    /// Sends bytes; false once the node has closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// The status of the answer, once one comes within `within`; None if
    /// the node closes without one or says nothing.
    async fn status(&mut self, within: Duration) -> Option<u16> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(within, read).await;
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// The head of a chunked multipart upload with boundary `BND`.
fn upload_head(app: &TestApp, token: Option<&str>) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /api/v1/videos HTTP/1.1\r\nHost: {}\r\n{auth}\
         Content-Type: multipart/form-data; boundary=BND\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.node.addr
    )
    .into_bytes()
}

/// One chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn file_part_head() -> &'static [u8] {
    b"--BND\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\n"
}

#[tokio::test]
async fn stuck_uploads_time_out_and_one_user_never_holds_every_place() {
    let config = NodeConfig::tuned(
        "max_concurrent_uploads = 8\nmax_uploads_per_user = 4\nupload_idle_secs = 2\n",
    );
    let app = TestApp::spawn_with(config, false).await;
    let mallory = app.user("mallory@example.com").await;
    let ann = app.user("ann@example.com").await;

    // eight uploads that send the first boundary line and then nothing
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut c = Raw::connect(&app).await;
        assert!(c.send(&upload_head(&app, Some(&mallory))).await);
        assert!(c.send(&chunk(b"--BND\r\n")).await);
        stuck.push(c);
    }
    app.wait_metric("vp_uploads_in_flight 4").await;
    // another user still gets in while they are held
    let r = app.upload(&ann, &fixture("v20"), &[]).await;
    assert_eq!(r.status(), 202, "ann's upload beside mallory's stuck ones");

    // each stuck upload is answered: four had no place (429), four timed
    // out waiting for their next part (408)
    let mut statuses = Vec::new();
    for c in &mut stuck {
        statuses.push(c.status(Duration::from_secs(30)).await);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            Some(408),
            Some(408),
            Some(408),
            Some(408),
            Some(429),
            Some(429),
            Some(429),
            Some(429)
        ]
    );
    app.wait_metric("vp_uploads_in_flight 0").await;
    // nothing of mallory's is left; ann's video is
    assert_eq!(app.count_rows("jobs").await, 1);
}

#[tokio::test]
async fn an_upload_slower_than_the_minimum_rate_is_cut_off() {
    let config = NodeConfig::tuned(
        "upload_idle_secs = 20\nupload_grace_secs = 1\nupload_min_rate_bytes = 10000\n",
    );
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("mallory@example.com").await;
    let mut c = Raw::connect(&app).await;
    assert!(c.send(&upload_head(&app, Some(&token))).await);
    assert!(c.send(&chunk(file_part_head())).await);
    // 100 bytes every 200 ms: never idle, but 500 bytes a second
    const CHUNKS: usize = 300;
    // the attack's own pace, not a wait for the node
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    let mut sent = 0;
    // until the node answers or closes: the order of events, not a clock
    while sent < CHUNKS && c.stream.readable().now_or_never().is_none() {
        pace.tick().await;
        if !c.send(&chunk(&[0u8; 100])).await {
            break;
        }
        sent += 1;
    }
    // the node cut the trickle off while it was still coming
    assert!(
        sent < CHUNKS,
        "all {CHUNKS} chunks of the trickle were taken"
    );
    let status = c.status(Duration::from_secs(5)).await;
    assert_eq!(status, Some(408), "a trickle is cut off");
    eventually(
        "the trickle to leave nothing",
        Duration::from_secs(10),
        || async {
            (app.count_rows("jobs").await == 0 && app.media_files().is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_part_header_that_never_ends_costs_no_memory() {
    let app = TestApp::spawn().await;
    let token = app.user("mallory@example.com").await;
    let before = app.node.peak_rss_kib();
    let filler = chunk(&vec![b'A'; 1024 * 1024]);
    // two sockets without a token, two with one; each sends 48 MiB of one
    // part header (or until the node closes the connection)
    let mut attacks = Vec::new();
    for i in 0..4 {
        let head = upload_head(&app, (i % 2 == 1).then_some(token.as_str()));
        let filler = filler.clone();
        let mut c = Raw::connect(&app).await;
        attacks.push(tokio::spawn(async move {
            c.send(&head).await;
            c.send(&chunk(b"--BND\r\nX-Filler: ")).await;
            for _ in 0..48 {
                if !c.send(&filler).await {
                    break;
                }
            }
            c.status(Duration::from_secs(20)).await
        }));
    }
    for a in attacks {
        let status = a.await.unwrap();
        // refused (401 or 400) or cut off: never accepted
        assert!(
            matches!(status, None | Some(400) | Some(401) | Some(413)),
            "{status:?}"
        );
    }
    let grown_mib = (app.node.peak_rss_kib() - before) / 1024;
    eprintln!("four never-ending part headers: peak RSS grew {grown_mib} MiB");
    assert!(
        grown_mib < 32,
        "four never-ending part headers grew the node by {grown_mib} MiB"
    );
    // the node is fine
    assert_eq!(app.get_anonymous("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_refused_upload_is_gone_before_its_answer() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    for round in 0..5 {
        let r = app.upload(&token, &fixture("text"), &[]).await;
        assert_eq!(r.status(), 415);
        let list = app.get_json(&token, "/api/v1/videos").await;
        assert_eq!(
            list["videos"],
            Value::Array(vec![]),
            "round {round}: a list right after the 415 shows the refused upload"
        );
    }
}

/// Opens `count` sockets to the node from the loopback addresses
/// 127.0.0.2, 127.0.0.3, …, `per_address` each, that send nothing.
async fn idle_sockets(app: &TestApp, count: usize, per_address: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / per_address) as u8);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        // a full backlog makes connect wait: that is the node's business
        match tokio::time::timeout(Duration::from_secs(2), socket.connect(app.node.addr)).await {
            Ok(Ok(s)) => sockets.push(s),
            _ => continue,
        }
    }
    sockets
}

/// `/healthz` answers 200 within a few seconds, on a new connection.
async fn healthz_answers(app: &TestApp) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client.get(app.url("/healthz")).send().await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

/// Quick (CI): 3 000 idle sockets against a node limited to 1 024 open
/// files. `VP_HOSTILE_FULL=1`: 19 500 against a node with the machine's
/// own limit (run it alone: the test process needs that many files too).
fn socket_flood() -> (usize, Option<u64>) {
    match std::env::var("VP_HOSTILE_FULL").as_deref() {
        Ok("1") => (19_500, None),
        _ => (3000, Some(1024)),
    }
}

/// Closed connections by reason, from the node's metrics.
fn closed_for(metrics: &str, reason: &str) -> u64 {
    let key = format!("vp_http_connections_closed_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key)?.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test]
async fn idle_sockets_past_the_descriptor_limit_leave_the_node_answering() {
    let (count, node_files) = socket_flood();
    let mut config = NodeConfig::tuned("first_request_secs = 3\n");
    config.open_files_limit = node_files;
    let app = TestApp::spawn_with(config, false).await;
    let mut sockets = idle_sockets(&app, count, 100).await;
    assert!(
        sockets.len() > count * 2 / 3,
        "only {} connected",
        sockets.len()
    );
    for round in 0..3 {
        assert!(
            healthz_answers(&app).await,
            "round {round}: /healthz with {} idle sockets open",
            sockets.len()
        );
    }
    // a socket that never sends a request is closed: the last ones opened
    // were not pushed out, they time out
    let last = sockets.last_mut().unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(15), last.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent socket is closed within its deadline: {closed:?}"
    );
    // past the cap, the quietest were pushed out (at 1 024 files the cap is
    // 512: the flood is far past it); the others timed out
    let metrics = app.metrics().await;
    if node_files.is_some() {
        assert!(closed_for(&metrics, "evicted") > 0, "{metrics}");
    }
    assert!(closed_for(&metrics, "first_request") > 0, "{metrics}");
    eprintln!(
        "{} idle sockets: {} pushed out, {} timed out",
        sockets.len(),
        closed_for(&metrics, "evicted"),
        closed_for(&metrics, "first_request")
    );
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let app = TestApp::spawn_with(
        NodeConfig::tuned("max_connections_per_address = 20\nmax_streams_per_user = 30\n"),
        false,
    )
    .await;
    let token = app.user("mallory@example.com").await;
    // 127.0.0.2 holds 20 live event streams: connections with an answer
    // under way, which are never pushed out
    let mut streams = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut c = Raw {
            stream: socket.connect(app.node.addr).await.unwrap(),
        };
        let head = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        assert!(c.send(head.as_bytes()).await);
        assert_eq!(c.status(Duration::from_secs(10)).await, Some(200));
        streams.push(c);
    }
    // a 21st connection from that address is closed at once
    let mut extra = idle_sockets(&app, 1, 1).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), extra[0].read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // the streams are still there, and other addresses get in
    assert!(healthz_answers(&app).await);
    assert!(
        app.metrics()
            .await
            .contains("vp_http_connections_refused_total{reason=\"per_address\"} 1")
    );
    let open: usize = app
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("vp_http_connections ")?.parse::<f64>().ok())
        .map(|n| n as usize)
        .unwrap();
    assert!(open >= 20, "the streams stayed open ({open})");
}

#[tokio::test]
async fn bodies_that_stop_and_heads_that_never_end_are_cut_off() {
    let app = TestApp::spawn_with(
        NodeConfig::tuned("json_body_secs = 2\nkeep_alive_secs = 2\n"),
        false,
    )
    .await;
    // a JSON body that stops after 10 of 60 000 declared bytes
    let mut c = Raw::connect(&app).await;
    let head = "POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n";
    assert!(c.send(head.as_bytes()).await);
    assert!(c.send(b"{\"email\": ").await);
    assert_eq!(c.status(Duration::from_secs(15)).await, Some(408));

    // a kept-alive connection that goes quiet is closed
    let mut c = Raw::connect(&app).await;
    assert!(c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await);
    assert_eq!(c.status(Duration::from_secs(5)).await, Some(200));
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match c.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle kept-alive connection is closed");
}

#[tokio::test]
async fn bodies_refused_for_their_length_say_so() {
    let app = TestApp::spawn().await;
    let big = vec![b' '; 70 * 1024];
    let r = app
        .http
        .post(app.url("/api/v1/sessions"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "too_large");
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter([Ok::<_, std::io::Error>(
        bytes::Bytes::from_static(b"{}"),
    )]));
    let r = app
        .http
        .post(app.url("/api/v1/sessions"))
        .header("content-type", "application/json")
        .body(chunked)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 411);
    assert_eq!(error_code(r).await, "length_required");
    let r = app.http.head(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Opens `GET path` as an event stream; the socket once its 200 is in.
async fn open_stream(app: &TestApp, token: &str, path: &str) -> Raw {
    let mut c = Raw::connect(app).await;
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    assert!(c.send(head.as_bytes()).await);
    assert_eq!(c.status(Duration::from_secs(10)).await, Some(200));
    c
}

/// Whether the node ends the stream within `within` (what it still sends
/// before the end is read and dropped).
async fn ends_within(c: &mut Raw, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let ended = async {
        loop {
            match c.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // the chunked body's last chunk: the stream ended cleanly
                Ok(n) if buf[..n].ends_with(b"0\r\n\r\n") => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, ended).await.is_ok()
}

#[tokio::test]
async fn streams_end_with_their_session_their_account_and_their_token() {
    let app = TestApp::spawn_with(NodeConfig::tuned("token_ttl_secs = 6\n"), false).await;
    let token = app.user("ann@example.com").await;
    let video = app.upload_ok(&token, &fixture("v20"), &[]).await;

    // signed out: both kinds of stream end within a second
    let mut all = open_stream(&app, &token, "/api/v1/events").await;
    let mut one = open_stream(&app, &token, &format!("/api/v1/videos/{video}/events")).await;
    let mut one_done = false;
    let r = app.delete(&token, "/api/v1/sessions").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        ends_within(&mut all, Duration::from_secs(1)).await,
        "signed out"
    );
    // the video's stream may have ended with its video already
    one_done |= ends_within(&mut one, Duration::from_secs(1)).await;
    assert!(one_done, "signed out (one video's stream)");

    // disabled by an operator
    let token = app.sign_in("ann@example.com").await;
    let mut all = open_stream(&app, &token, "/api/v1/events").await;
    let (ok, _, err) = operator(&app, &["user", "disable", "ann@example.com"]);
    assert!(ok, "{err}");
    assert!(
        ends_within(&mut all, Duration::from_secs(1)).await,
        "disabled"
    );
    let (ok, _, err) = operator(&app, &["user", "enable", "ann@example.com"]);
    assert!(ok, "{err}");

    // expired: the stream ends by the token's expiry, a few seconds on
    let token = app.sign_in("ann@example.com").await;
    let mut all = open_stream(&app, &token, "/api/v1/events").await;
    assert!(
        ends_within(&mut all, Duration::from_secs(6 + 3)).await,
        "expired"
    );
}

/// One number about `db` from PostgreSQL's statistics views (`sql` takes
/// the database's name as `$1`).
async fn statistic(db: &TestDb, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(
        &db.url.replace(&format!("/{}", db.name), "/postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client.query_one(sql, &[&db.name]).await.unwrap().get(0)
}

/// Transactions committed in `db` so far, as PostgreSQL counts them.
async fn transactions(db: &TestDb) -> i64 {
    statistic(
        db,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
    )
    .await
}

/// Connections open to `db`.
async fn backends(db: &TestDb) -> i64 {
    statistic(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
    )
    .await
}

/// The transactions a node makes from just before `work` runs (given the
/// node and a signed-in user's token) until it has stopped.
async fn transactions_of<W>(config: NodeConfig, work: W) -> i64
where
    W: for<'a> FnOnce(&'a TestApp, &'a str) -> futures::future::BoxFuture<'a, ()>,
{
    let mut app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let before = transactions(&app.db).await;
    work(&app, &token).await;
    // a backend reports its counts when it ends: stop the node, wait for
    // its connections to go
    app.node.terminate(Duration::from_secs(30)).await;
    eventually(
        "the node's connections to end",
        Duration::from_secs(30),
        || async { (backends(&app.db).await == 0).then_some(()) },
    )
    .await;
    transactions(&app.db).await - before
}

/// The node's transactions while `streams` streams of one user stay open
/// and one of that user's videos is processed.
async fn transactions_with_streams(streams: usize) -> i64 {
    let config =
        NodeConfig::paced_with("max_streams_per_user = 2000\nmax_connections_per_address = 5000\n");
    transactions_of(config, |app, token| {
        Box::pin(async move {
            let mut open = Vec::new();
            for _ in 0..streams {
                open.push(open_stream(app, token, "/api/v1/events").await);
            }
            let video = app.upload_ok(token, &fixture("v20"), &[]).await;
            let done = app.wait_final(token, &video, Duration::from_secs(60)).await;
            assert_eq!(done["status"], "done");
        })
    })
    .await
}

#[tokio::test]
async fn a_thousand_streams_cost_the_database_what_one_does() {
    let one = transactions_with_streams(1).await;
    let thousand = transactions_with_streams(1000).await;
    eprintln!("transactions: one stream {one}, a thousand streams {thousand}");
    // the same work; the slack is the processing's own variation
    assert!(
        thousand <= one + one / 2 + 20,
        "one stream: {one} transactions; a thousand: {thousand}"
    );
}

#[tokio::test]
async fn lease_renewals_do_not_notify_every_node() {
    // ffmpeg starts 4 s late: the job renews its lease with no progress
    let late = script("ffmpeg-late", "sleep 4; exec ffmpeg \"$@\"");
    let app = TestApp::spawn_with(
        NodeConfig::tuned(&format!("ffmpeg_path = \"{}\"\n", late.display())),
        false,
    )
    .await;
    let token = app.user("ann@example.com").await;
    let me = app.get_json(&token, "/api/v1/me").await;
    let payload = format!("u:{}", me["id"].as_str().unwrap());

    // what every node hears: the change feed's notifications
    let (client, mut connection) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = heard.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message
                && n.payload() == payload
            {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    client.batch_execute("LISTEN vp_changes").await.unwrap();

    let video = app
        .upload_ok(&token, &fixture("v20"), &[("count", "1")])
        .await;
    let done = app
        .wait_final(&token, &video, Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "done");
    // created, queued, claimed, done, and a progress step or two: not one
    // per renewal (eight or more in those 4 s)
    let heard = heard.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (3..=6).contains(&heard),
        "{heard} notifications for one video's life"
    );
}

/// A video made with ffmpeg's lavfi sources: `args` between the input and
/// the output file.
fn crafted(name: &str, source: &str, args: &[&str]) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source])
        .args(args)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "making {name}");
    path
}

#[tokio::test]
async fn tiny_file_bombs_are_refused_before_they_cost_anything() {
    let app = TestApp::spawn().await;
    let token = app.user("mallory@example.com").await;
    // 50 KB: two black 4096² frames, at 0 s and 20 000 s
    let far_apart = crafted(
        "bomb.mkv",
        "color=black:s=4096x4096:r=1:d=2",
        &[
            "-vf",
            "setpts=N*20000/TB",
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    assert!(std::fs::metadata(&far_apart).unwrap().len() < 100_000);
    let r = app.upload(&token, &far_apart, &[("interval", "4")]).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "over_budget", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fewer frames"),
        "{body}"
    );
    // the same file, asking for what fits, is taken
    let r = app
        .upload(&token, &far_apart, &[("count", "2"), ("width", "640")])
        .await;
    assert_eq!(r.status(), 202);

    // one 8192² picture is more than a picture may be
    let huge = crafted(
        "huge.mkv",
        "color=black:s=8192x8192:r=1:d=1",
        &["-c:v", "png"],
    );
    let r = app.upload(&token, &huge, &[("count", "1")]).await;
    assert_eq!(r.status(), 422);
    assert_eq!(error_code(r).await, "over_budget");
    // nothing of the refused ones is left
    assert_eq!(app.count_rows("jobs").await, 1);
}

#[tokio::test]
async fn a_zip_that_outgrows_its_budget_fails_at_once_for_good_with_an_email() {
    let app = TestApp::spawn_with(NodeConfig::tuned("max_zip_bytes = 300000\n"), true).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(
            &token,
            &fixture("v20"),
            &[("interval", "0.04"), ("format", "png")],
        )
        .await;
    let failed = app.wait_final(&token, &id, Duration::from_secs(60)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("300000 bytes"),
        "{failed}"
    );
    // one attempt: a retry would spend the same again
    let attempts = app.attempts(&id).await;
    assert_eq!(attempts, 1);
    let mail = app
        .smtp
        .as_ref()
        .unwrap()
        .first_message("the failure email")
        .await;
    assert!(mail.contains("300000 bytes"), "{mail}");
    // no partial zip is left in the store
    assert!(
        app.media_files()
            .iter()
            .all(|p| !p.to_string_lossy().contains("zip")),
        "{:?}",
        app.media_files()
    );
}

#[tokio::test]
async fn a_user_keeps_no_more_than_their_storage_quota() {
    let size = std::fs::metadata(fixture("v20")).unwrap().len();
    let quota = size + size / 2;
    let app = TestApp::spawn_with(
        NodeConfig::tuned(&format!("max_storage_per_user = {quota}\n")),
        false,
    )
    .await;
    let token = app.user("ann@example.com").await;
    let first = app
        .upload_ok(&token, &fixture("v20"), &[("count", "1")])
        .await;
    let me = app.get_json(&token, "/api/v1/me").await;
    assert_eq!(me["storage"]["quota_bytes"], quota);
    assert_eq!(me["storage"]["used_bytes"], size, "{me}");
    // a second one does not fit: refused as it streams, nothing kept
    let r = app.upload(&token, &fixture("v20"), &[("count", "1")]).await;
    assert_eq!(r.status(), 507);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(app.count_rows("jobs").await, 1);
    // said up front when the upload says its size
    let big = vec![0u8; (size as usize) * 2];
    let r = app
        .post(&token, "/api/v1/videos")
        .multipart(reqwest::multipart::Form::new().part(
            "video",
            reqwest::multipart::Part::bytes(big).file_name("big.mp4"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    // room again once a video is deleted
    app.wait_final(&token, &first, Duration::from_secs(60))
        .await;
    assert_eq!(app.delete_video(&token, &first).await, 204);
    app.upload_ok(&token, &fixture("v20"), &[("count", "1")])
        .await;
}

#[tokio::test]
async fn metrics_and_readiness_asked_often_cost_no_more_queries() {
    let once = transactions_of(NodeConfig::default(), |app, _| {
        Box::pin(async move {
            app.metrics().await;
            app.get_anonymous("/readyz").await;
        })
    })
    .await;
    let often = transactions_of(NodeConfig::default(), |app, _| {
        Box::pin(async move {
            for _ in 0..300 {
                app.metrics().await;
                assert_eq!(app.get_anonymous("/readyz").await.status(), 200);
            }
        })
    })
    .await;
    eprintln!("transactions: metrics and readiness once {once}, 300 times {often}");
    // one reading a second, not one a request
    assert!(often <= once + 40, "once: {once}; 300 times: {often}");
}
