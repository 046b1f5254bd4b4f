//! Many uploads at once: fair share between users, bounded backlogs.

use std::time::Duration;

use crate::helpers::{NodeConfig, TestApp, TestDb, error_code, eventually, fixture};

const PROCESSING: Duration = Duration::from_secs(180);
/// How long a shed upload keeps being sent again.
const RETRIES: Duration = Duration::from_secs(60);

/// Counts of one user's videos by status.
async fn statuses(app: &TestApp, token: &str, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            app.video(token, id).await["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    out
}

#[tokio::test]
async fn one_users_burst_does_not_starve_another() {
    let config = NodeConfig {
        workers: 2,
        ..NodeConfig::paced_with("max_processing_per_user = 1\n")
    };
    let app = TestApp::spawn_with(config, false).await;
    let ann = app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let mut burst = Vec::new();
    for _ in 0..5 {
        burst.push(
            app.upload_ok(&ann, &fixture("v60_big"), &[("interval", "0.04")])
                .await,
        );
    }
    let single = app
        .upload_ok(&bob, &fixture("v20"), &[("count", "2")])
        .await;

    let seen = eventually("bob's video to start", PROCESSING, || async {
        let bobs = app.video(&bob, &single).await["status"].clone();
        let anns = statuses(&app, &ann, &burst).await;
        let running = anns.iter().filter(|s| *s == "processing").count();
        assert!(running <= 1, "ann runs at most one job at a time: {anns:?}");
        (bobs == "processing" || bobs == "done").then_some(anns)
    })
    .await;
    let queued = seen.iter().filter(|s| *s == "queued").count();
    assert!(
        queued >= 3,
        "bob's video started while ann's burst was still queued: {seen:?}"
    );
    assert_eq!(
        app.wait_final(&bob, &single, PROCESSING).await["status"],
        "done"
    );
}

#[tokio::test]
async fn a_users_backlog_is_capped_with_429() {
    let config = NodeConfig {
        workers: 1,
        ..NodeConfig::paced_with("max_processing_per_user = 1\nmax_queued_per_user = 2\n")
    };
    let app = TestApp::spawn_with(config, false).await;
    let ann = app.user("ann@example.com").await;
    let first = app
        .upload_ok(&ann, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    eventually("the first job to run", PROCESSING, || async {
        (app.video(&ann, &first).await["status"] == "processing").then_some(())
    })
    .await;
    for _ in 0..2 {
        app.upload_ok(&ann, &fixture("v20"), &[("count", "1")])
            .await;
    }
    let r = app.upload(&ann, &fixture("v20"), &[("count", "1")]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "too_many_queued");
    // another user is not held back by ann's backlog
    let bob = app.user("bob@example.com").await;
    app.upload_ok(&bob, &fixture("v20"), &[("count", "1")])
        .await;
    assert_eq!(
        app.count_rows("jobs").await,
        4,
        "the refused upload left nothing"
    );
}

/// PostgreSQL stops under a running job: calls answer 503 quickly, the
/// ffmpeg work goes on, and everything resumes by itself when it returns.
#[tokio::test]
async fn a_database_outage_answers_503_and_loses_nothing() {
    let config = NodeConfig {
        workers: 1,
        ..NodeConfig::paced()
    };
    let app = TestApp::spawn_on(TestDb::private().await, config, false).await;
    let pg = app.db.server();
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    eventually("the job to be mid-way", PROCESSING, || async {
        let v = app.video(&token, &id).await;
        (v["status"] == "processing" && v["progress"].as_f64().unwrap() > 0.0).then_some(())
    })
    .await;

    pg.stop();
    let video = || app.get(&token, &format!("/api/v1/videos/{id}")).send();
    // answered while the database is still down: a call does not wait for it
    let r = tokio::time::timeout(PROCESSING, video())
        .await
        .expect("a call must not hang while the database is down")
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "unavailable");
    let app = &app;
    let status = |path: &'static str| async move { app.get_anonymous(path).await.status() };
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(status("/readyz").await, 503);

    pg.resume();
    let done = eventually("the job to finish after the outage", PROCESSING, || async {
        let r = video().await.ok().filter(|r| r.status() == 200)?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v["video"]["status"] == "done").then(|| v["video"].clone())
    })
    .await;
    assert_eq!(done["frames"], 1500);
    assert_eq!(status("/readyz").await, 200);
    let attempts: i32 = app
        .db
        .client()
        .await
        .query_one("SELECT attempts FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        attempts, 1,
        "the work done during the outage was kept, not rerun"
    );
}

/// Two hundred uploads at once on one node: all accepted, memory flat. A
/// node short of CPU may shed a few with 503 and Retry-After (a token check
/// or a probe over its budget); the client sends those again, as any client
/// does, and none is lost.
#[tokio::test]
async fn a_burst_of_200_uploads_is_all_accepted_with_flat_memory() {
    // Probes take the cores in turn, and the wait counts against
    // probe_timeout_secs: on two cores, a debug build and another test
    // beside it, the last of 200 waited past the default 30 s and were shed
    // (72 of 200 in one CI run). This test is about acceptance and memory,
    // not the probe queue: it gives the probes time.
    let app = TestApp::spawn_with(
        NodeConfig::tuned(
            "max_queued_per_user = 1000\nmax_uploads_per_user = 200\nprobe_timeout_secs = 120\n",
        ),
        false,
    )
    .await;
    let token = app.user("ann@example.com").await;
    let before = app.node.peak_rss_kib();
    let bytes = bytes::Bytes::from(std::fs::read(fixture("v20")).unwrap());
    let shed = std::sync::atomic::AtomicUsize::new(0);
    let uploads = (0..200).map(|i| {
        let (app, token, bytes, shed) = (&app, &token, &bytes, &shed);
        // a shed upload is sent again (same key: never a second video)
        // until it is answered otherwise, within a deadline
        async move {
            let what = format!("upload {i} to be answered");
            eventually(&what, RETRIES, move || async move {
                let form = reqwest::multipart::Form::new().text("count", "1").part(
                    "video",
                    reqwest::multipart::Part::stream(bytes.clone())
                        .file_name(format!("burst-{i}.mp4")),
                );
                let r = app
                    .post(token, "/api/v1/videos")
                    .header("idempotency-key", format!("burst-{i}"))
                    .multipart(form)
                    .send()
                    .await;
                let Ok(r) = r else { return Some(0) };
                if r.status() == 503 && r.headers().contains_key("retry-after") {
                    shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return None;
                }
                Some(r.status().as_u16())
            })
            .await
        }
    });
    let answers = futures::future::join_all(uploads).await;
    let mut statuses = std::collections::BTreeMap::new();
    for a in answers {
        *statuses.entry(a).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([(202, 200)]),
        "every upload accepted"
    );
    let shed = shed.into_inner();
    assert!(shed <= 10, "{shed} of 200 first answers were 503");
    let grown_mib = app.node.peak_rss_kib().saturating_sub(before) / 1024;
    println!(
        "200 concurrent uploads of {} KiB: peak RSS grew {grown_mib} MiB",
        bytes.len() / 1024
    );
    assert!(grown_mib < 256, "peak memory grew {grown_mib} MiB");
    assert_eq!(app.count_rows("jobs").await, 200);
}

/// The media store cannot take the bytes: 507, nothing kept, and uploads
/// work again once the store does.
#[tokio::test]
async fn an_upload_the_store_refuses_is_507_and_leaves_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    // a file where the store wants its `videos` directory: every write fails
    // (permissions would not stop root; this does)
    let blocker = app.media.path().join("videos");
    std::fs::write(&blocker, "not a directory").unwrap();
    let r = app.upload(&token, &fixture("v20"), &[]).await;
    assert_eq!(r.status(), 507);
    assert_eq!(error_code(r).await, "insufficient_storage");
    eventually(
        "the refused upload's row to go",
        Duration::from_secs(10),
        || async { (app.count_rows("jobs").await == 0).then_some(()) },
    )
    .await;
    std::fs::remove_file(&blocker).unwrap();
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "1")])
        .await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "done"
    );
}

/// The store takes the upload but not the zip (a file-size limit on the
/// node, as on a disk that fills up): the job is retried, then fails with
/// the reason and an email, and no partial zip stays.
#[tokio::test]
async fn a_zip_the_store_cannot_write_is_retried_then_fails_with_an_email() {
    let mut config = NodeConfig::tuned("job_max_attempts = 2\n");
    config.file_size_limit = Some(2 << 20);
    let app = TestApp::spawn_with(config, true).await;
    let token = app.user("ann@example.com").await;
    // a small upload whose frames make a zip far past the limit
    let options = [("count", "20"), ("format", "png"), ("width", "1920")];
    let id = app.upload_ok(&token, &fixture("v20"), &options).await;
    let failed = app.wait_final(&token, &id, Duration::from_secs(90)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["error"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 2 attempts") && reason.contains("media store"),
        "{reason}"
    );
    let mail = app
        .smtp
        .as_ref()
        .unwrap()
        .first_message("the failure email")
        .await;
    assert!(mail.contains("gave up after 2 attempts"), "{mail}");
    let files = app.media_files();
    assert!(
        files
            .iter()
            .all(|f| !f.to_string_lossy().contains("frames")),
        "no partial zip stays: {files:?}"
    );
}
