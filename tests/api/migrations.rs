//! The schema at start. A node answers its probes while it applies a long
//! migration or waits for the migration job; in production it waits, as a
//! role that changes rows and never tables, and the autoscaler's role counts
//! jobs by state and reads nothing else.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    NodeConfig, TestApp, TestDb, binary, error_code, eventually, fixture, manifest_field,
    run_as_admin, start_node_listening,
};

/// What a node logs, with its address, before it prepares the database.
/// The lock `videoproject migrate` and `serve` take to migrate one at a time.
const MIGRATION_LOCK: i64 = 0x5650_4d49_4752;
const SCALED_OBJECT: &str = include_str!("../../k8s/base/scaledobject.yaml");

async fn answer(http: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let r = http
        .get(format!("{base}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} answered within 2 s: {e}"));
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A starting node: `/healthz` 200, `/readyz` 503, the API 503 with
/// `Retry-After`, and the real routes not served yet.
async fn assert_starting(http: &reqwest::Client, base: &str) {
    for _ in 0..3 {
        assert_eq!(
            answer(http, base, "/healthz").await,
            (200, serde_json::json!({"status": "starting"}))
        );
    }
    let (status, body) = answer(http, base, "/readyz").await;
    assert_eq!((status, &body["status"]), (503, &Value::from("starting")));
    let r = http
        .get(format!("{base}/api/v1/videos"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "unavailable");
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    eventually("the node to be ready", Duration::from_secs(60), || async {
        (answer(http, base, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(answer(http, base, "/healthz").await.1["status"], "ok");
}

#[tokio::test]
async fn a_node_answers_its_probes_while_a_migration_holds_it() {
    let db = TestDb::create().await;
    // another migrator holds the lock: this node's migration waits behind it
    let holder = db.client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .unwrap();
    let media = tempfile::tempdir().unwrap();
    let node = start_node_listening(&db.url, media.path(), &NodeConfig::default());
    let http = reqwest::Client::new();
    let base = format!("http://{}", node.addr);
    assert_starting(&http, &base).await;
    assert!(
        !node
            .log_lines()
            .iter()
            .any(|l| l.contains("migrations applied")),
        "the migration waits for the lock"
    );

    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .unwrap();
    wait_ready(&http, &base).await;
}

/// Login roles of one test, dropped after its database (declare it first).
struct Roles {
    names: Vec<String>,
    admin: String,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let drops = self
            .names
            .iter()
            .map(|n| format!("DROP ROLE IF EXISTS {n}"))
            .collect();
        run_as_admin(&self.admin, drops);
    }
}

async fn refused(client: &tokio_postgres::Client, sql: &str) {
    let e = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("`{sql}` is refused"));
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "`{sql}`: {e:?}"
    );
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn in_production_nodes_wait_for_the_migration_job_and_change_no_table() {
    let db = TestDb::create().await;
    let suffix = &db.name["vp_test_".len()..][..12];
    let (app_role, monitor_role) = (format!("vp_app_{suffix}"), format!("vp_keda_{suffix}"));
    let _roles = Roles {
        names: vec![app_role.clone(), monitor_role.clone()],
        admin: db.admin_url().to_owned(),
    };
    let role_url = |role: &str| {
        let url = db
            .url
            .replacen("postgres@", &format!("{role}:pass-of-{role}@"), 1);
        assert_ne!(url, db.url, "a user in {}", db.url);
        url
    };
    let (app_url, monitor_url) = (role_url(&app_role), role_url(&monitor_role));

    // the node starts before the job: its role does not exist yet, nor the schema
    let media = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        env: vec![
            ("DATABASE_URL".into(), app_url.clone()),
            ("VP_MIGRATIONS".into(), "await".into()),
        ],
        ..NodeConfig::default()
    };
    let node = start_node_listening(&db.url, media.path(), &config);
    let http = reqwest::Client::new();
    let base = format!("http://{}", node.addr);
    assert_starting(&http, &base).await;
    eventually(
        "the node to say what it waits for",
        Duration::from_secs(20),
        || async {
            node.log_lines()
                .iter()
                .any(|l| l.contains("waiting for"))
                .then_some(())
        },
    )
    .await;
    let tables: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a waiting node changes nothing");

    // the migration job: a superuser is never handed out
    let migrate = |app: &str| {
        Command::new(binary())
            .arg("migrate")
            .env_clear()
            .envs(crate::helpers::kept_env())
            .env("DATABASE_URL", &db.url)
            .env("VP_APP_DATABASE_URL", app)
            .env("VP_MONITOR_DATABASE_URL", &monitor_url)
            .env("VP_LOG_FORMAT", "json")
            .output()
            .unwrap()
    };
    let out = migrate(&role_url("postgres"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("must not be the migrating role or a superuser"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migrate(&app_url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // again, as each release runs it: the roles exist, their grants renewed
    let out = migrate(&app_url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the node goes on by itself, as its own role, and does its work
    wait_ready(&http, &base).await;
    let app = TestApp {
        db,
        media,
        config,
        node,
        http,
        smtp: None,
    };
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "3")])
        .await;
    let video = app.wait_final(&token, &id, Duration::from_secs(120)).await;
    assert_eq!(video["status"], "done", "{video}");
    assert_eq!(video["frames"], 3);

    // its role changes rows, not tables, nor the migrations' history
    let as_app = connect(&app_url).await;
    for sql in [
        "CREATE TABLE intruder (a int)",
        "DROP TABLE jobs",
        "ALTER TABLE users ADD COLUMN intruder int",
        "DELETE FROM refinery_schema_history",
    ] {
        refused(&as_app, sql).await;
    }
    // the autoscaler's role runs the ScaledObject's query, and reads nothing else
    let as_monitor = connect(&monitor_url).await;
    let queued: i64 = as_monitor
        .query_one(manifest_field(SCALED_OBJECT, "query"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 0);
    for sql in [
        "SELECT email FROM users",
        "SELECT id FROM jobs",
        "SELECT * FROM jobs",
        "UPDATE jobs SET state = state",
    ] {
        refused(&as_monitor, sql).await;
    }
}
