//! PostgreSQL that takes TLS connections only, as RDS does with
//! `rds.force_ssl`: every kind of connection a node makes (the pool, the
//! change feed, the node-name lock, creating the database, `migrate`)
//! speaks TLS and checks the server as `sslmode` says, and a setting that
//! cannot work stops the node at start with the cause.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Issued, NodeConfig, PASSWORD, TempPostgres, binary, start_node};

fn url(pg: &TempPostgres, host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{}/vp_tls?{query}", pg.port)
}

/// Runs the binary with `args` against `database_url` until it exits (or
/// is killed after a minute).
async fn run(args: &[&str], database_url: &str, media: &Path) -> Output {
    let child = tokio::process::Command::new(binary())
        .args(args)
        .env_clear()
        .envs(crate::helpers::kept_env())
        .env("DATABASE_URL", database_url)
        .env("VP_HTTP_ADDR", "127.0.0.1:0")
        .env("VP_CLUSTER_ADDR", "127.0.0.1:0")
        .env("VP_MEDIA_URL", format!("file://{}", media.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not exit within a minute"))
        .unwrap()
}

/// What a run said on stderr, asserting it failed.
fn refused(out: &Output) -> String {
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "it should not start: {said}");
    said
}

#[tokio::test]
async fn with_verify_full_every_connection_is_encrypted_and_the_server_checked() {
    let pki = tempfile::tempdir().unwrap();
    let issued = Issued::new(pki.path(), "pg", &["localhost".into()]);
    let pg = TempPostgres::start_tls_only(&issued);
    let media = tempfile::tempdir().unwrap();
    let database = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", issued.ca.display()),
    );

    let migrated = run(&["migrate"], &database, media.path()).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let node = start_node(&database, media.path(), &NodeConfig::default());
    let http = reqwest::Client::new();
    let base = format!("http://{}", node.addr);
    let r = http
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // what the server saw: the node's long-lived connections, encrypted
    let seen = Command::new("psql")
        .arg(&database)
        .args([
            "-tAc",
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = 'vp_tls' AND a.pid <> pg_backend_pid() ORDER BY 1",
        ])
        .output()
        .unwrap();
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let seen = String::from_utf8_lossy(&seen.stdout);
    for name in ["videoproject changes|t", "videoproject node name|t"] {
        assert!(seen.lines().any(|l| l == name), "{name} in {seen}");
    }
    assert!(
        seen.lines().all(|l| l.ends_with("|t")),
        "every connection is encrypted: {seen}"
    );
    drop(node);

    // the chain only: a host name the certificate does not carry is fine
    let by_address = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", issued.ca.display()),
    );
    let out = run(&["migrate"], &by_address, media.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_database_setting_that_cannot_work_stops_the_node_at_start_with_the_cause() {
    let pki = tempfile::tempdir().unwrap();
    let issued = Issued::new(pki.path(), "pg", &["localhost".into()]);
    let stranger = Issued::new(pki.path(), "stranger", &["localhost".into()]);
    let pg = TempPostgres::start_tls_only(&issued);
    let media = tempfile::tempdir().unwrap();

    // another CA's certificate
    let said = refused(
        &run(
            &["serve"],
            &url(
                &pg,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", stranger.ca.display()),
            ),
            media.path(),
        )
        .await,
    );
    assert!(said.contains("UnknownIssuer"), "{said}");
    assert!(said.contains("sslrootcert"), "{said}");

    // a host name the certificate does not carry
    let said = refused(
        &run(
            &["migrate"],
            &url(
                &pg,
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={}", issued.ca.display()),
            ),
            media.path(),
        )
        .await,
    );
    assert!(said.contains("not valid for name \"127.0.0.1\""), "{said}");

    // no encryption, against a server that wants it
    let said = refused(
        &run(
            &["migrate"],
            &url(&pg, "localhost", "sslmode=disable"),
            media.path(),
        )
        .await,
    );
    assert!(said.contains("no encryption"), "{said}");

    // verification asked for with nothing to verify against
    let said = refused(
        &run(
            &["migrate"],
            &url(&pg, "localhost", "sslmode=verify-full"),
            media.path(),
        )
        .await,
    );
    assert!(said.contains("needs sslrootcert"), "{said}");
}
