use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{NodeConfig, TestApp, eventually, fixture};

const PROCESSING: Duration = Duration::from_secs(120);

#[tokio::test]
async fn undecodable_video_fails_with_a_reason_and_an_email() {
    let app = TestApp::spawn_with(NodeConfig::default(), true).await;
    let token = app.user("ann@example.com").await;
    // its headers probe as a video, so the upload is accepted
    let id = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    let failed = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["error"]
        .as_str()
        .expect("a failed video carries a reason");
    assert!(!reason.is_empty());
    assert_eq!(failed["download_url"], Value::Null);
    let r = app
        .get(&token, &format!("/api/v1/videos/{id}/frames.zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let smtp = app.smtp.as_ref().unwrap();
    let mail = smtp.first_message("the failure email").await;
    assert!(mail.contains("To: ann@example.com"), "{mail}");
    assert!(mail.contains("corrupt.mp4"), "{mail}");
    assert!(
        mail.contains(reason),
        "the email gives the same reason: {mail}"
    );

    // sent once, and marked sent
    let client = app.db.client().await;
    eventually("the outbox row to be marked sent", Duration::from_secs(10), || async {
        let row = client.query_one("SELECT count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FROM notifications WHERE job_id IS NOT NULL", &[]).await.unwrap();
        (row.get::<_, i64>(0) == 1 && row.get::<_, i64>(1) == 1).then_some(())
    })
    .await;
    assert_eq!(smtp.about_videos().len(), 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("vp_media_failures_total{stage=\"extract\",kind=\""),
        "ffmpeg's failure is counted by kind: {metrics}"
    );
    assert!(metrics.contains("vp_notifications_pending 0"), "{metrics}");
    // the history has every transition
    let events = client
        .query("SELECT from_state::text, to_state::text FROM job_events WHERE job_id = $1::text::uuid ORDER BY id", &[&id])
        .await
        .unwrap();
    let path: Vec<(Option<String>, String)> = events.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        path,
        vec![
            (None, "uploading".into()),
            (Some("uploading".into()), "queued".into()),
            (Some("queued".into()), "processing".into()),
            (Some("processing".into()), "failed".into()),
        ]
    );
}

#[tokio::test]
async fn success_email_when_asked_for() {
    let app = TestApp::spawn_with(NodeConfig::default(), true).await;
    let token = app.user("ann@example.com").await;
    let r = app
        .patch_me(&token, &json!({"notify_on_success": true}))
        .await;
    assert_eq!(r.status(), 200);
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "done"
    );
    let smtp = app.smtp.as_ref().unwrap();
    let mail = smtp.first_message("the success email").await;
    assert!(mail.contains("ready"), "{mail}");
}

/// A node with one slot, running one long (paced) job mid-way.
async fn node_mid_job(tuning: &str) -> (TestApp, String, String) {
    let config = NodeConfig {
        workers: 1,
        ..NodeConfig::paced_with(tuning)
    };
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    wait_mid_job(&app, &token, &id).await;
    (app, token, id)
}

/// Waits until the job is running with some progress.
async fn wait_mid_job(app: &TestApp, token: &str, id: &str) {
    eventually("the job to be mid-way", PROCESSING, || async {
        let v = app.video(token, id).await;
        (v["status"] == "processing" && v["progress"].as_f64().unwrap() > 0.0).then_some(())
    })
    .await;
}

async fn transitions(app: &TestApp, id: &str) -> Vec<(String, String, Option<String>)> {
    let client = app.db.client().await;
    client
        .query(
            "SELECT coalesce(from_state::text, ''), to_state::text, detail FROM job_events WHERE job_id = $1::text::uuid ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_node_killed_mid_job_finishes_it_after_restart() {
    let (mut app, token, id) = node_mid_job("").await;

    app.node.kill(); // SIGKILL: no chance to clean up
    app.restart();

    let done = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["frames"], 1500);
    let (names, _) = crate::helpers::zip_contents(&app.download(&token, &id).await);
    assert_eq!(names.len(), 1501);
    let history = transitions(&app, &id).await;
    assert!(
        history.iter().any(|(from, to, detail)| from == "processing"
            && to == "queued"
            && detail.as_deref() == Some("node restarted")),
        "{history:?}"
    );
    assert_eq!(
        history
            .iter()
            .filter(|(_, to, _)| to == "processing")
            .count(),
        2,
        "{history:?}"
    );
    // no staging debris from the killed run
    assert!(
        app.media_files()
            .iter()
            .all(|p| !p.to_string_lossy().contains('#')),
        "{:?}",
        app.media_files()
    );
}

#[tokio::test]
async fn sigterm_hands_the_running_job_back_and_exits_cleanly() {
    // no grace period: the running job is handed back at once
    let (mut app, token, id) = node_mid_job("shutdown_grace_secs = 0\n").await;

    let status = app.node.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    let history = transitions(&app, &id).await;
    let last = history.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str(), last.2.as_deref()),
        ("processing", "queued", Some("node shutting down"))
    );
    let lines = app.node.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("processor pool stopped")),
        "graceful stop is logged"
    );
    // every log line about the job carries its id
    let about_job: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"processing started\""))
        .collect();
    assert!(
        !about_job.is_empty() && about_job.iter().all(|l| l.contains(&id)),
        "{about_job:?}"
    );

    app.restart();
    let done = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["frames"], 1500);
    let attempts = app.attempts(&id).await;
    assert_eq!(attempts, 1, "a graceful stop does not use up an attempt");
}

#[tokio::test]
async fn a_stalled_ffmpeg_is_killed_and_the_job_retried() {
    // The first ffmpeg run hangs without a word; later runs are the real ffmpeg.
    let wrapper = crate::helpers::script(
        "ffmpeg-stalls-once",
        "marker=\"$0.stalled\"\nif [ ! -e \"$marker\" ]; then : > \"$marker\"; exec sleep 600; fi\nexec ffmpeg \"$@\"",
    );
    let config = NodeConfig::tuned(&format!(
        "ffmpeg_path = \"{}\"\nffmpeg_stall_secs = 2\n",
        wrapper.display()
    ));
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("interval", "1")])
        .await;

    let done = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["frames"], 20);
    let history = transitions(&app, &id).await;
    let retried: Vec<_> = history
        .iter()
        .filter(|(from, to, _)| from == "processing" && to == "queued")
        .collect();
    assert_eq!(retried.len(), 1, "{history:?}");
    assert!(
        retried[0].2.as_deref().unwrap_or("").contains("too long"),
        "{history:?}"
    );
}

#[tokio::test]
async fn emails_are_retried_until_the_smtp_server_answers() {
    let port = crate::helpers::free_port();
    let config = NodeConfig {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        ..NodeConfig::default()
    };
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let id = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "failed"
    );

    // the first delivery fails: nothing listens yet
    let client = app.db.client().await;
    eventually(
        "a failed delivery attempt",
        Duration::from_secs(30),
        || async {
            let row = client
                .query_one(
                    "SELECT attempts, last_error FROM notifications WHERE job_id IS NOT NULL",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i32>(0) >= 1 && row.get::<_, Option<String>>(1).is_some()).then_some(())
        },
    )
    .await;
    // the video's answer shows the email waiting, with why
    let waiting = app.video(&token, &id).await["notifications"][0].clone();
    assert_eq!(waiting["channel"], "email");
    assert_eq!(waiting["kind"], "job_failed");
    assert_eq!(waiting["status"], "pending", "{waiting}");
    assert!(waiting["last_error"].is_string(), "{waiting}");
    let smtp = crate::helpers::SmtpServer::start_on(port);
    let mail = eventually(
        "the email after a retry",
        Duration::from_secs(60),
        || async { smtp.about_videos().into_iter().next() },
    )
    .await;
    assert!(mail.contains("corrupt.mp4"));
    let attempts: i32 = client
        .query_one(
            "SELECT attempts FROM notifications WHERE job_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(attempts >= 2, "{attempts}");
    let sent = eventually(
        "the delivery to be recorded",
        Duration::from_secs(10),
        || async {
            let n = app.video(&token, &id).await["notifications"][0].clone();
            (n["status"] == "sent").then_some(n)
        },
    )
    .await;
    assert_eq!(sent["attempts"].as_i64().unwrap(), i64::from(attempts));
    assert_eq!(smtp.about_videos().len(), 1, "delivered once");
}

#[tokio::test]
async fn a_job_that_keeps_failing_transiently_fails_for_good_with_an_email() {
    let wrapper = crate::helpers::script("ffmpeg-always-stalls", "exec sleep 600");
    let config = NodeConfig::tuned(&format!(
        "ffmpeg_path = \"{}\"\nffmpeg_stall_secs = 1\njob_max_attempts = 2\n",
        wrapper.display()
    ));
    let app = TestApp::spawn_with(config, true).await;
    let token = app.user("ann@example.com").await;
    let id = app.upload_ok(&token, &fixture("v20"), &[]).await;
    let failed = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["error"].as_str().unwrap();
    assert!(reason.starts_with("gave up after 2 attempts"), "{reason}");
    let history = transitions(&app, &id).await;
    assert_eq!(
        history
            .iter()
            .filter(|(_, to, _)| to == "processing")
            .count(),
        2,
        "{history:?}"
    );
    let smtp = app.smtp.as_ref().unwrap();
    let mail = smtp.first_message("the failure email").await;
    assert!(mail.contains("gave up after 2 attempts"), "{mail}");
}

/// A node that hangs (SIGSTOP) stops renewing its lease; another node takes
/// the job over, and the hung node's late work is fenced out.
#[tokio::test]
async fn a_hung_nodes_job_is_taken_over_after_its_lease_expires() {
    let short_lease = "[tuning]\njob_lease_secs = 3\n";
    let config_a = NodeConfig {
        workers: 1,
        ..NodeConfig::paced_with("job_lease_secs = 3\n")
    };
    let app = TestApp::spawn_with(config_a, false).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    wait_mid_job(&app, &token, &id).await;

    app.node.signal("STOP");
    let config_b = NodeConfig {
        node_name: "node-b".into(),
        config_toml: Some(short_lease.into()),
        ..NodeConfig::default()
    };
    let node_b = crate::helpers::start_node(&app.db.url, app.media.path(), &config_b);
    let via_b = |path: &str| format!("http://{}{path}", node_b.addr);
    let done = eventually("node-b to finish the job", PROCESSING, || async {
        let r = app.http.get(via_b(&format!("/api/v1/videos/{id}")));
        let v: Value = r.bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        (v["video"]["status"] == "done").then(|| v["video"].clone())
    })
    .await;
    assert_eq!(done["frames"], 1500);
    let history = transitions(&app, &id).await;
    assert!(
        history.iter().any(
            |(_, to, d)| to == "queued" && d.as_deref() == Some("lease of node node-a expired")
        ),
        "{history:?}"
    );

    // node-a wakes up: its lease is gone, it stops and writes nothing
    app.node.signal("CONT");
    eventually(
        "node-a to notice it lost the lease",
        Duration::from_secs(30),
        || async {
            app.node
                .log_lines()
                .iter()
                .any(|l| l.contains("lease lost"))
                .then_some(())
        },
    )
    .await;
    let after = transitions(&app, &id).await;
    assert_eq!(after.last().unwrap().1, "done", "{after:?}");
    let r = app
        .http
        .get(via_b(&format!("/api/v1/videos/{id}/frames.zip")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (names, _) = crate::helpers::zip_contents(&r.bytes().await.unwrap());
    assert_eq!(names.len(), 1501);
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish_within_the_grace_period() {
    let (mut app, _token, id) = node_mid_job("shutdown_grace_secs = 60\n").await;
    let status = app.node.terminate(Duration::from_secs(90)).await;
    assert!(status.success());
    let history = transitions(&app, &id).await;
    assert_eq!(
        history.last().unwrap().1,
        "done",
        "finished before the node exited: {history:?}"
    );
    assert_eq!(
        history
            .iter()
            .filter(|(_, to, _)| to == "processing")
            .count(),
        1,
        "{history:?}"
    );
}

/// Nodes on one machine that name one `shared_cores_dir` run at most one job
/// per core between them, each with all its workers free.
#[tokio::test]
async fn nodes_sharing_a_machine_run_at_most_a_job_per_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let shared = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        workers: cores,
        ..NodeConfig::paced_with(&format!(
            "shared_cores_dir = \"{}\"",
            shared.path().display()
        ))
    };
    let app = TestApp::spawn_with(config.clone(), false).await;
    let _other = crate::helpers::start_node(
        &app.db.url,
        app.media.path(),
        &NodeConfig {
            node_name: "node-b".into(),
            ..config
        },
    );
    let token = app.user("ann@example.com").await;
    let videos = 2 * cores;
    for _ in 0..videos {
        app.upload_ok(&token, &fixture("v20"), &[("count", "2")])
            .await;
    }
    // two nodes with a worker per core each: without the shared seats,
    // twice as many jobs as cores would run
    let sql = app.db.client().await;
    let most = std::sync::atomic::AtomicI64::new(0);
    eventually("every video done", PROCESSING, || async {
        let row = sql
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'processing'),
                        count(*) FILTER (WHERE state = 'done')
                 FROM jobs",
                &[],
            )
            .await
            .unwrap();
        let (running, done): (i64, i64) = (row.get(0), row.get(1));
        most.fetch_max(running, std::sync::atomic::Ordering::SeqCst);
        (done == videos as i64).then_some(())
    })
    .await;
    let most = most.into_inner();
    assert!(
        (1..=cores as i64).contains(&most),
        "{most} jobs ran at once on {cores} cores"
    );
}

/// SIGTERM while one job finishes within the grace period and another runs
/// on past it: no panic on the way down, the finished job is done and the
/// other is handed back at once.
#[tokio::test]
async fn sigterm_with_jobs_that_finish_and_run_on_hands_back_at_once() {
    let config = NodeConfig {
        workers: 2,
        ..NodeConfig::paced_with("shutdown_grace_secs = 4\n")
    };
    let mut app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    // paced at 10x: about 6 s, past the grace
    let long = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    // about 2 s: ends within the grace
    let short = app
        .upload_ok(&token, &fixture("v20"), &[("interval", "1")])
        .await;
    for id in [&long, &short] {
        eventually("both jobs to run", PROCESSING, || async {
            (app.video(&token, id).await["status"] == "processing").then_some(())
        })
        .await;
    }
    let status = app.node.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "exit status {status:?}");
    let lines = app.node.log_lines();
    assert!(
        !lines.iter().any(|l| l.contains("panicked")),
        "no panic on the way down"
    );
    assert!(lines.iter().any(|l| l.contains("running jobs handed back")));
    let short_history = transitions(&app, &short).await;
    assert_eq!(short_history.last().unwrap().1, "done", "{short_history:?}");
    let long_history = transitions(&app, &long).await;
    let last = long_history.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str(), last.2.as_deref()),
        ("processing", "queued", Some("node shutting down")),
        "{long_history:?}"
    );
}

/// A live event stream does not hold a stopping node up: SIGTERM ends it
/// cleanly at once (its client reconnects elsewhere), instead of leaving it
/// to be cut when the drain's time runs out.
#[tokio::test]
async fn sigterm_ends_live_event_streams_cleanly() {
    let mut app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    // answered: the stream has its place in the user's feed
    let mut stream = app.get(&token, "/api/v1/events").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let (status, ended) = tokio::join!(app.node.terminate(Duration::from_secs(30)), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    });
    assert!(
        matches!(ended, Ok(None)),
        "the stream ended cleanly, not cut: {ended:?}"
    );
    assert!(status.success(), "exit status {status:?}");
}
