//! The load and fault suite. Each scenario starts the real binary (release
//! build) on loopback with its own database and media directory, drives it
//! with concurrent HTTP clients, breaks something real under that load
//! (PostgreSQL, the SMTP server, the media directory), and checks what a
//! client must be able to count on: no accepted upload lost, no notification
//! lost or doubled, no answer outside the documented ones, every refusal
//! with a `Retry-After`. It prints what it did and checked, and exits
//! non-zero when a check fails.
//!
//!   cargo bench --bench faults -- [--quick] [soak] [database] [smtp] [storage]
//!
//! No scenario named runs them all. The upload burst driven by a real HTTP
//! load tool is `bench/burst.sh`; the method and numbers are in
//! docs/BENCHMARKS.md.

use videoproject_test_support as helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use helpers::{
    NodeConfig, SmtpServer, TestApp, TestDb, WebhookReceiver, eventually, fixture, free_port,
};

/// How long accepted work may take to finish once the load stops.
const SETTLE: Duration = Duration::from_secs(300);
/// The longest a client honours a `Retry-After` for, so that load goes on.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = ["soak", "database", "smtp", "storage"];
    let chosen: Vec<&str> = if named.is_empty() {
        all.to_vec()
    } else {
        named
    };
    let mut failed = Vec::new();
    for name in chosen {
        let report = match name {
            "soak" => soak(quick).await,
            "database" => database(quick).await,
            "smtp" => smtp(quick).await,
            "storage" => storage(quick).await,
            other => {
                eprintln!("unknown scenario `{other}`; known: {all:?}");
                std::process::exit(2);
            }
        };
        report.print();
        if !report.passed() {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        println!("\nall checks passed");
    } else {
        println!("\nchecks FAILED in: {failed:?}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- load

/// What the clients of one load got back.
#[derive(Default)]
struct Tally {
    sent: u64,
    statuses: BTreeMap<u16, u64>,
    /// 429 and 503 answers, and how many of them carried `Retry-After`.
    refusals: u64,
    refusals_with_retry_after: u64,
    transport_errors: u64,
    first_transport_error: Option<String>,
    /// Latency of each 202.
    accept_latencies: Vec<Duration>,
    slowest: Duration,
    /// The ids of the videos answered 202.
    accepted: Vec<String>,
}

impl Tally {
    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers outside `allowed`.
    fn unexpected(&self, allowed: &[u16]) -> u64 {
        let listed: u64 = allowed.iter().map(|s| self.count(*s)).sum();
        self.statuses.values().sum::<u64>() - listed
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
        let mut l = self.accept_latencies.clone();
        l.sort();
        let i = ((l.len() as f64 * p).ceil() as usize).checked_sub(1)?;
        l.get(i).copied()
    }

    fn statuses_line(&self) -> String {
        let parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        parts.join(" ")
    }
}

/// Concurrent clients, each repeating its request until told to stop or
/// until the shared budget of requests is spent.
struct Load {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One client's next request; `None` when it has nothing to do right now.
type Attempt = Option<reqwest::Result<reqwest::Response>>;

impl Load {
    fn start<F, Fut>(clients: usize, budget: Option<u64>, request: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Attempt> + Send,
    {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicU64::new(budget.unwrap_or(u64::MAX)));
        let request = Arc::new(request);
        let tasks = (0..clients)
            .map(|client| {
                let (tally, stop, left, request) =
                    (tally.clone(), stop.clone(), left.clone(), request.clone());
                tokio::spawn(async move {
                    let mut round = 0;
                    while !stop.load(Ordering::Relaxed)
                        && left
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                n.checked_sub(1)
                            })
                            .is_ok()
                    {
                        round += 1;
                        let started = Instant::now();
                        let Some(answer) = request(client * 1_000_000 + round).await else {
                            // pacing, not synchronisation: nothing to do yet
                            left.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        let pause = record(&tally, answer, started).await;
                        if let Some(pause) = pause {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Self { tally, stop, tasks }
    }

    /// Waits for the budget to be spent.
    async fn wait(self) -> Tally {
        for t in self.tasks {
            t.await.expect("a client panicked");
        }
        Arc::into_inner(self.tally).unwrap().into_inner().unwrap()
    }

    /// Stops the clients after their current request.
    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.wait().await
    }
}

/// Counts one answer; returns how long the client should back off.
async fn record(
    tally: &Mutex<Tally>,
    answer: reqwest::Result<reqwest::Response>,
    started: Instant,
) -> Option<Duration> {
    let r = match answer {
        Ok(r) => r,
        Err(e) => {
            let mut t = tally.lock().unwrap();
            t.sent += 1;
            t.transport_errors += 1;
            t.first_transport_error.get_or_insert_with(|| e.to_string());
            return Some(MAX_BACKOFF);
        }
    };
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = r.bytes().await.unwrap_or_default();
    let elapsed = started.elapsed();
    let mut t = tally.lock().unwrap();
    t.sent += 1;
    *t.statuses.entry(status).or_default() += 1;
    t.slowest = t.slowest.max(elapsed);
    if status == 202 {
        t.accept_latencies.push(elapsed);
        if let Some(id) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["video"]["id"].as_str().map(str::to_owned))
        {
            t.accepted.push(id);
        }
    }
    if status == 429 || status == 503 {
        t.refusals += 1;
        if let Some(secs) = retry_after {
            t.refusals_with_retry_after += 1;
            return Some(Duration::from_secs(secs).min(MAX_BACKOFF));
        }
    }
    None
}

// ---------------------------------------------------------------- report

struct Report {
    title: String,
    lines: Vec<(String, String)>,
    checks: Vec<(String, bool)>,
}

impl Report {
    fn new(title: &str) -> Self {
        println!("\n== {title}");
        Self {
            title: title.to_owned(),
            lines: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn line(&mut self, what: &str, value: impl std::fmt::Display) {
        self.lines.push((what.to_owned(), value.to_string()));
    }

    fn check(&mut self, what: &str, ok: bool) {
        self.checks.push((what.to_owned(), ok));
    }

    /// The standard lines and checks of a load.
    fn load(&mut self, name: &str, t: &Tally, allowed: &[u16]) {
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        self.line(&format!("{name}: sent"), t.sent);
        self.line(&format!("{name}: answers"), t.statuses_line());
        self.line(&format!("{name}: accepted (202)"), t.count(202));
        self.line(
            &format!("{name}: refused with Retry-After"),
            format!("{} of {}", t.refusals_with_retry_after, t.refusals),
        );
        self.line(
            &format!("{name}: accept latency p50 / p99"),
            format!("{} / {}", ms(t.percentile(0.5)), ms(t.percentile(0.99))),
        );
        self.line(&format!("{name}: slowest answer"), ms(Some(t.slowest)));
        let first_error = t
            .first_transport_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default();
        self.check(
            &format!("{name}: no connection errors{first_error}"),
            t.transport_errors == 0,
        );
        self.check(
            &format!("{name}: only answers in {allowed:?}"),
            t.unexpected(allowed) == 0,
        );
        self.check(
            &format!("{name}: every 429/503 carries Retry-After"),
            t.refusals == t.refusals_with_retry_after,
        );
    }

    fn rss(&mut self, before_kib: u64, app: &TestApp) {
        self.line(
            "node peak RSS",
            format!(
                "{} -> {} MiB",
                before_kib / 1024,
                app.node.peak_rss_kib() / 1024
            ),
        );
    }

    /// On a failed check, the node's own account of its errors.
    fn errors_of(&mut self, app: &TestApp) {
        if self.passed() {
            return;
        }
        let errors: Vec<String> = app
            .node
            .log_lines()
            .into_iter()
            // errors and panics (a 5xx answer is logged as a warning)
            .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("panicked"))
            .take(10)
            .collect();
        for e in errors {
            self.line("node error", e);
        }
    }

    fn passed(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }

    fn print(&self) {
        for (what, value) in &self.lines {
            println!("  {what:<44} {value}");
        }
        for (what, ok) in &self.checks {
            println!("  [{}] {what}", if *ok { "ok" } else { "FAILED" });
        }
        println!(
            "  -> {}: {}",
            self.title,
            if self.passed() { "passed" } else { "FAILED" }
        );
    }
}

// ---------------------------------------------------------------- helpers

/// Waits until every accepted video is `done` (or gone, when deleted), and
/// reports how many were lost (no row) and how many never finished.
async fn settle(
    app: &TestApp,
    accepted: &[String],
    deleted: &BTreeSet<String>,
    report: &mut Report,
) {
    let ids: Vec<uuid::Uuid> = accepted
        .iter()
        .filter(|id| !deleted.contains(*id))
        .map(|id| id.parse().unwrap())
        .collect();
    let client = app.db.client().await;
    let started = Instant::now();
    let states = loop {
        let rows = client
            .query(
                "SELECT state::text, count(*) FROM jobs WHERE id = ANY($1) GROUP BY 1",
                &[&ids],
            )
            .await
            .unwrap();
        let states: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let done = states.get("done").copied().unwrap_or(0);
        if done as usize == ids.len() || started.elapsed() > SETTLE {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let present: i64 = states.values().sum();
    let lost = ids.len() as i64 - present;
    let unfinished = present - states.get("done").copied().unwrap_or(0);
    report.line(
        "accepted uploads finished",
        format!(
            "{} of {} in {:.1} s after the load ({} deleted by their owners)",
            states.get("done").copied().unwrap_or(0),
            ids.len(),
            started.elapsed().as_secs_f64(),
            deleted.len()
        ),
    );
    report.line("lost (accepted, no row)", lost);
    report.check("no accepted upload lost", lost == 0);
    report.check(
        &format!("every accepted upload finished ({states:?})"),
        unfinished == 0,
    );
    let orphans: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE state = 'uploading'", &[])
        .await
        .unwrap()
        .get(0);
    report.check("no half-written upload left behind", orphans == 0);
}

async fn tokens(app: &TestApp, users: usize) -> Arc<Vec<String>> {
    let mut tokens = Vec::new();
    for i in 0..users {
        tokens.push(app.user(&format!("user{i}@example.com")).await);
    }
    Arc::new(tokens)
}

/// Clients uploading `file` with `fields`, spread over `tokens`.
fn upload_load(
    app: &Arc<TestApp>,
    tokens: &Arc<Vec<String>>,
    clients: usize,
    budget: Option<u64>,
    file: &'static str,
    fields: &'static [(&'static str, &'static str)],
) -> Load {
    let (app, tokens) = (app.clone(), tokens.clone());
    let path = fixture(file);
    Load::start(clients, budget, move |n| {
        let (app, tokens, path) = (app.clone(), tokens.clone(), path.clone());
        async move {
            let token = &tokens[n % tokens.len()];
            Some(app.upload_request(token, &path, fields).await.send().await)
        }
    })
}

/// Clients listing their videos.
fn list_load(app: &Arc<TestApp>, tokens: &Arc<Vec<String>>, clients: usize) -> Load {
    let (app, tokens) = (app.clone(), tokens.clone());
    Load::start(clients, None, move |n| {
        let request = app.get(&tokens[n % tokens.len()], "/api/v1/videos?limit=20");
        async move { Some(request.send().await) }
    })
}

/// A `count(*)` query.
async fn rows(app: &TestApp, sql: &str) -> i64 {
    app.db
        .client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

const LIGHT: &[(&str, &str)] = &[("count", "2")];

/// A node that lets one user queue as much as the load sends.
/// No backlog limit, and webhooks may reach the receivers on this machine.
fn unbounded_backlog() -> NodeConfig {
    NodeConfig::tuned(
        "max_queued_per_user = 100000\nmax_uploads_per_user = 100000\nwebhook_private_networks = true\n",
    )
}

// ---------------------------------------------------------------- scenarios

/// Mixed traffic for a while: uploads, lists, downloads and deletes from
/// several users at once.
async fn soak(quick: bool) -> Report {
    let secs = if quick { 20 } else { 120 };
    let mut report = Report::new(&format!(
        "soak: {secs} s of mixed traffic from 3 users (6 uploading, 3 listing, 2 downloading, 1 deleting)"
    ));
    let config = unbounded_backlog();
    let app = Arc::new(TestApp::spawn_with(config, false).await);
    let tokens = tokens(&app, 3).await;
    let rss = app.node.peak_rss_kib();

    let uploads = upload_load(&app, &tokens, 6, None, "v20", LIGHT);
    let lists = list_load(&app, &tokens, 3);
    // downloads and deletes pick from what the API lists as done
    let done_video = {
        let app = app.clone();
        move |token: String, n: usize| {
            let app = app.clone();
            async move {
                let list: Value = app
                    .get(&token, "/api/v1/videos?limit=50")
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let done: Vec<String> = list["videos"]
                    .as_array()?
                    .iter()
                    .filter(|v| v["status"] == "done")
                    .filter_map(|v| v["id"].as_str().map(str::to_owned))
                    .collect();
                (!done.is_empty()).then(|| done[n % done.len()].clone())
            }
        }
    };
    let downloads = {
        let (app, tokens, done_video) = (app.clone(), tokens.clone(), done_video.clone());
        Load::start(2, None, move |n| {
            let (app, token) = (app.clone(), tokens[n % tokens.len()].clone());
            let pick = done_video(token.clone(), n);
            async move {
                let id = pick.await?;
                let path = format!("/api/v1/videos/{id}/frames.zip");
                Some(app.get(&token, &path).send().await)
            }
        })
    };
    let deleted = Arc::new(Mutex::new(BTreeSet::new()));
    let deletes = {
        let (app, tokens, deleted) = (app.clone(), tokens.clone(), deleted.clone());
        Load::start(1, None, move |n| {
            let (app, token, deleted) = (
                app.clone(),
                tokens[n % tokens.len()].clone(),
                deleted.clone(),
            );
            let pick = done_video(token.clone(), n);
            async move {
                // one delete for every few rounds of the others
                tokio::time::sleep(Duration::from_millis(500)).await;
                let id = pick.await?;
                deleted.lock().unwrap().insert(id.clone());
                let path = format!("/api/v1/videos/{id}");
                Some(app.delete(&token, &path).send().await)
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (uploads, lists, downloads, deletes) = (
        uploads.finish().await,
        lists.finish().await,
        downloads.finish().await,
        deletes.finish().await,
    );
    // 503 (with Retry-After) is the honest answer of a node whose two cores
    // are saturated by ffmpeg, e.g. a token check that ran out of time
    report.load("uploads", &uploads, &[202, 429, 503]);
    report.load("lists", &lists, &[200, 503]);
    // a video listed as done may have been deleted by the deleting client since
    report.load("downloads", &downloads, &[200, 404, 503]);
    report.load("deletes", &deletes, &[204, 404, 503]);
    let deleted = deleted.lock().unwrap().clone();
    settle(&app, &uploads.accepted, &deleted, &mut report).await;
    report.rss(rss, &app);
    report.errors_of(&app);
    report
}

/// PostgreSQL stopped and started again under uploads and reads.
async fn database(quick: bool) -> Report {
    let phase = Duration::from_secs(if quick { 6 } else { 20 });
    let mut report = Report::new(&format!(
        "database: PostgreSQL stopped for {} s and restarted under 4 uploading and 2 listing clients",
        phase.as_secs()
    ));
    let config = unbounded_backlog();
    let app = Arc::new(TestApp::spawn_on(TestDb::private().await, config, false).await);
    let tokens = tokens(&app, 2).await;
    let rss = app.node.peak_rss_kib();
    let uploads = upload_load(&app, &tokens, 4, None, "v20", LIGHT);
    let lists = list_load(&app, &tokens, 2);
    tokio::time::sleep(phase).await;
    app.db.server().stop();
    let stopped = Instant::now();
    tokio::time::sleep(phase).await;
    app.db.server().resume();
    let down_for = stopped.elapsed();
    // back to work by itself: the next request that passes again
    let recovered = eventually("readiness after the outage", SETTLE, || async {
        let r = app.http.get(app.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then(Instant::now)
    })
    .await;
    tokio::time::sleep(phase).await;
    let (uploads, lists) = (uploads.finish().await, lists.finish().await);
    report.line(
        "database down for",
        format!("{:.1} s", down_for.as_secs_f64()),
    );
    report.line(
        "ready again after the restart",
        format!("{:.1} s", (recovered - stopped - down_for).as_secs_f64()),
    );
    report.load("uploads", &uploads, &[202, 503]);
    report.load("lists", &lists, &[200, 503]);
    report.check(
        "calls were refused during the outage (the fault happened)",
        uploads.count(503) + lists.count(503) > 0,
    );
    settle(&app, &uploads.accepted, &BTreeSet::new(), &mut report).await;
    report.rss(rss, &app);
    report.errors_of(&app);
    report
}

/// The SMTP server away while videos fail, and a webhook receiver that
/// refuses at first: every notification arrives once.
async fn smtp(quick: bool) -> Report {
    let videos = if quick { 4 } else { 20 };
    let mut report = Report::new(&format!(
        "smtp: {videos} failing videos while the SMTP server is down and the webhook answers 500 to the first {}",
        videos / 2
    ));
    let port = free_port();
    let config = NodeConfig {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        ..unbounded_backlog()
    };
    let hook = WebhookReceiver::start(videos / 2).await;
    let app = Arc::new(TestApp::spawn_with(config, false).await);
    let tokens = tokens(&app, 1).await;
    app.patch_me_ok(&tokens[0], &json!({"webhook_url": hook.url()}))
        .await;
    let uploads = upload_load(&app, &tokens, 4, Some(videos as u64), "corrupt", &[])
        .wait()
        .await;
    report.load("uploads", &uploads, &[202]);
    let due = 2 * uploads.accepted.len() as i64;
    eventually("every email tried while SMTP is down", SETTLE, || async {
        let tried = rows(
            &app,
            "SELECT count(*) FROM notifications WHERE channel = 'email' AND job_id IS NOT NULL AND attempts > 0",
        )
        .await;
        (tried == due / 2).then_some(())
    })
    .await;
    let smtp = SmtpServer::start_on(port);
    let back = Instant::now();
    let sent = eventually("every notification delivered", SETTLE, || async {
        let sent = rows(
            &app,
            "SELECT count(*) FROM notifications WHERE job_id IS NOT NULL AND sent_at IS NOT NULL",
        )
        .await;
        (sent == due).then_some(sent)
    })
    .await;
    report.line(
        "notifications queued / delivered",
        format!(
            "{due} / {sent}, {:.1} s after SMTP came back",
            back.elapsed().as_secs_f64()
        ),
    );
    let mails = smtp.about_videos();
    let ids: BTreeSet<String> = mails
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(str::to_owned)
        })
        .collect();
    let calls = hook.received();
    let accepted: Vec<&str> = calls
        .iter()
        .filter(|c| c.answered == 200)
        .filter_map(|c| c.headers.get("x-vp-delivery")?.to_str().ok())
        .collect();
    let distinct: BTreeSet<&str> = accepted.iter().copied().collect();
    report.line(
        "emails received (distinct Message-IDs)",
        format!("{} ({})", mails.len(), ids.len()),
    );
    report.line(
        "webhook calls, accepted (distinct deliveries)",
        format!("{}, {} ({})", calls.len(), accepted.len(), distinct.len()),
    );
    let expected = uploads.accepted.len();
    report.check(
        "every email arrived once",
        mails.len() == expected && ids.len() == expected,
    );
    report.check(
        "every webhook event was accepted once",
        accepted.len() == expected && distinct.len() == expected,
    );
    let gave_up = rows(
        &app,
        "SELECT count(*) FROM notifications WHERE gave_up_at IS NOT NULL",
    )
    .await;
    report.check("no notification given up", gave_up == 0);
    report.errors_of(&app);
    report
}

/// The media directory refuses every write, then works again.
async fn storage(quick: bool) -> Report {
    let (n, clients) = if quick { (20, 10) } else { (200, 100) };
    let mut report = Report::new(&format!(
        "storage: {n} uploads ({clients} at a time) while the media directory refuses writes, then {n} after it is fixed"
    ));
    let config = unbounded_backlog();
    let app = Arc::new(TestApp::spawn_with(config, false).await);
    let tokens = tokens(&app, 2).await;
    let rss = app.node.peak_rss_kib();
    // a file where the store wants its directory: every write fails, even
    // for root (permissions would not stop it)
    let blocker = app.media.path().join("videos");
    std::fs::write(&blocker, "not a directory").unwrap();
    let refused = upload_load(&app, &tokens, clients, Some(n), "v20", LIGHT)
        .wait()
        .await;
    report.load("while broken", &refused, &[507]);
    let left = eventually("refused uploads cleaned up", SETTLE, || async {
        let rows = rows(&app, "SELECT count(*) FROM jobs").await;
        (rows == 0).then_some(rows)
    })
    .await;
    let files: Vec<_> = app
        .media_files()
        .into_iter()
        .filter(|f| *f != blocker)
        .collect();
    report.line(
        "rows / files left by refused uploads",
        format!("{left} / {}", files.len()),
    );
    report.check("refused uploads leave no row and no file", files.is_empty());
    std::fs::remove_file(&blocker).unwrap();
    let fixed = upload_load(&app, &tokens, clients, Some(n), "v20", LIGHT)
        .wait()
        .await;
    report.load("after the fix", &fixed, &[202]);
    report.check("every upload accepted after the fix", fixed.count(202) == n);
    settle(&app, &fixed.accepted, &BTreeSet::new(), &mut report).await;
    report.rss(rss, &app);
    report.errors_of(&app);
    report
}
