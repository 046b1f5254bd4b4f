use serde_json::Value;

use std::time::Duration;

use crate::helpers::{TestApp, error_code, eventually, fixture, operator};

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    let app = TestApp::spawn().await;
    let r = app.get_anonymous("/healthz").await;
    assert_eq!(r.status(), 200);
    let r = app.get_anonymous("/readyz").await;
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["database"], true);
    assert_eq!(ready["node"], "node-a");

    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    assert_eq!(
        app.wait_final(&token, &id, Duration::from_secs(120)).await["status"],
        "done"
    );
    let metrics = app.get_anonymous("/metrics").await.text().await.unwrap();
    for needle in [
        "vp_uploads_total{result=\"accepted\"} 1",
        "vp_jobs{state=\"done\"} 1",
        "vp_jobs{state=\"queued\"} 0",
        "vp_processing_seconds_count 1",
        "vp_frames_per_second_count 1",
        "vp_queue_oldest_seconds 0",
        "vp_http_request_seconds_count{route=\"/api/v1/videos\",method=\"POST\",status=\"202\"} 1",
        "vp_http_request_seconds_bucket{route=\"/api/v1/sessions\",method=\"POST\",status=\"200\",le=\"+Inf\"} 1",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack `{needle}`:\n{metrics}"
        );
    }

    // every request: an id on the answer, one JSON log line, and a span
    // around what it logs; routes, never raw paths (they carry tokens)
    let r = app
        .get(&token, "/api/v1/videos")
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-1");
    let line = eventually("the request's log line", Duration::from_secs(5), || async {
        app.node.log_lines().into_iter().find_map(|l| {
            let v: Value = serde_json::from_str(&l).ok()?;
            (v["span"]["id"] == "trace-me-1" && v["fields"]["message"] == "answered").then_some(v)
        })
    })
    .await;
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert_eq!(line["span"]["route"], "/api/v1/videos", "{line}");
    assert!(line["fields"]["ms"].is_number(), "{line}");
    let own = app.get_anonymous("/healthz").await;
    assert_eq!(
        own.headers()["x-request-id"].len(),
        16,
        "one is made when none came"
    );
    let upload_lines: Vec<String> = app
        .node
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("\"route\":\"/api/v1/videos\"") && l.contains("\"method\":\"POST\""))
        .collect();
    assert!(
        upload_lines.iter().any(|l| l.contains(&id)),
        "what the upload logged is in its request's span: {upload_lines:?}"
    );

    // the API's description, for integrators and the contract check in CI
    let r = app.get_anonymous("/api/v1/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert!(doc["paths"]["/api/v1/videos"]["post"].is_object());

    let r = app.get_anonymous("/api/v1/nothing-here").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
    let r = app.http.put(app.url("/api/v1/users")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "method_not_allowed");
}

#[tokio::test]
async fn cli_version_migrate_and_user_add() {
    let db = crate::helpers::TestDb::create().await;
    let run = |args: &[&str]| {
        std::process::Command::new(crate::helpers::binary())
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("VP_USER_PASSWORD", crate::helpers::PASSWORD)
            .output()
            .unwrap()
    };
    let out = run(&["version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("videoproject "));
    assert!(run(&["migrate"]).status.success());
    assert!(
        run(&["migrate"]).status.success(),
        "migrating twice is a no-op"
    );
    let out = run(&["user", "add", "ops@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "ops@example.com");
    let out = run(&["user", "add", "ops@example.com"]);
    assert!(!out.status.success(), "a taken email is refused");
    let out = std::process::Command::new(crate::helpers::binary())
        .arg("serve")
        .env("VP_WORKERS", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VP_WORKERS"));
}

/// `videoproject ARGS…` against the app's database: (success, stdout, stderr).
#[tokio::test]
async fn the_operator_lists_and_inspects_jobs_from_the_command_line() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let good = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    let bad = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    let timeout = std::time::Duration::from_secs(120);
    assert_eq!(
        app.wait_final(&token, &good, timeout).await["status"],
        "done"
    );
    assert_eq!(
        app.wait_final(&token, &bad, timeout).await["status"],
        "failed"
    );

    let (ok, all, _) = operator(&app, &["jobs"]);
    assert!(ok);
    let line = |id: &str| {
        all.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line(&good).contains("done") && line(&good).contains("ann@example.com"),
        "{all}"
    );
    assert!(line(&bad).contains("failed"), "{all}");

    let (ok, failed, _) = operator(&app, &["jobs", "--state", "failed"]);
    assert!(ok);
    assert!(failed.contains(&bad) && !failed.contains(&good), "{failed}");

    let (ok, shown, _) = operator(&app, &["jobs", "show", &good, "--follow"]);
    assert!(ok);
    assert!(shown.contains("2 frames"), "{shown}");
    assert!(shown.contains("queued -> processing"), "{shown}");
    assert!(shown.contains("processing -> done"), "{shown}");
    assert_eq!(
        shown.lines().last(),
        Some("done 100%"),
        "--follow ends on the final state"
    );

    let (ok, _, err) = operator(&app, &["jobs", "--state", "finished"]);
    assert!(!ok);
    assert!(err.contains("unknown state"), "{err}");
    let (ok, _, err) = operator(&app, &["jobs", "show", "not-an-id"]);
    assert!(!ok);
    assert!(err.contains("no job"), "{err}");
}

#[tokio::test]
async fn an_operator_can_disable_an_account_and_enable_it_again() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let me = |token: &str| app.get(token, "/api/v1/me").send();
    let credentials =
        serde_json::json!({"email": "ann@example.com", "password": crate::helpers::PASSWORD});
    let sign_in = || app.post_json("/api/v1/sessions", &credentials);

    let (ok, said, _) = operator(&app, &["user", "disable", "ann@example.com"]);
    assert!(ok, "{said}");
    let r = me(&ann).await.unwrap();
    assert_eq!(r.status(), 401, "a disabled account's token is refused");
    assert_eq!(error_code(r).await, "unauthorized");
    let r = sign_in().await;
    assert_eq!(r.status(), 401, "and it cannot sign in");
    assert_eq!(error_code(r).await, "invalid_credentials");
    assert_eq!(
        me(&bob).await.unwrap().status(),
        200,
        "others are not affected"
    );

    let (ok, _, _) = operator(&app, &["user", "enable", "ann@example.com"]);
    assert!(ok);
    assert_eq!(sign_in().await.status(), 200);
    assert_eq!(me(&ann).await.unwrap().status(), 200);

    let (ok, _, err) = operator(&app, &["user", "disable", "nobody@example.com"]);
    assert!(!ok);
    assert!(err.contains("no account"), "{err}");
}

/// In production a node will not make its own token key and keep it in the
/// database: without one from the environment it refuses to start. Nor does
/// it start without the address people reach it by (its emails' links).
#[tokio::test]
async fn a_production_node_refuses_to_start_without_its_token_key() {
    let db = crate::helpers::TestDb::create().await;
    let media = tempfile::tempdir().unwrap();
    let refused = |extra: &[(&str, String)]| {
        let out = std::process::Command::new(crate::helpers::binary())
            .arg("serve")
            .env_clear()
            .envs(crate::helpers::kept_env())
            .env("DATABASE_URL", &db.url)
            .env("VP_HTTP_ADDR", "127.0.0.1:0")
            .env("VP_MEDIA_URL", format!("file://{}", media.path().display()))
            .env("VP_ENV", "production")
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = refused(&[]);
    assert!(said.contains("VP_TOKEN_KEY"), "{said}");
    let key = biscuit_auth::KeyPair::new().private().to_bytes_hex();
    let said = refused(&[("VP_TOKEN_KEY", key)]);
    assert!(said.contains("VP_PUBLIC_URL"), "{said}");
    // with a key, and the address people reach it by, it starts
    let config = crate::helpers::NodeConfig {
        env: vec![
            ("VP_ENV".into(), "production".into()),
            ("VP_PUBLIC_URL".into(), "https://videos.test".into()),
            (
                "VP_TOKEN_KEY".into(),
                biscuit_auth::KeyPair::new().private().to_bytes_hex(),
            ),
        ],
        ..Default::default()
    };
    let app = TestApp::spawn_on(db, config, false).await;
    assert_eq!(app.get_anonymous("/healthz").await.status(), 200);
}

/// Readiness is asked with a short timeout (3 s in the manifests). With
/// every pool connection held by requests waiting on a lock, /readyz still
/// answers in time, and truly: the database is up.
#[tokio::test]
async fn readiness_answers_in_time_while_every_pool_connection_is_busy() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let mut holder = app.db.client().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // more requests than the pool has connections, each stuck on the lock
    let stuck: Vec<_> = (0..60)
        .map(|_| tokio::spawn(app.get(&token, "/api/v1/me").send()))
        .collect();
    eventually(
        "every pool connection to wait on the lock",
        Duration::from_secs(20),
        || async {
            let waiting: i64 = app
                .db
                .client()
                .await
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (waiting >= 32).then_some(())
        },
    )
    .await;
    let ready = app
        .http
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("/readyz answered within the probe's timeout");
    assert_eq!(ready.status(), 200);
    lock.rollback().await.unwrap();
    for request in stuck {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}
