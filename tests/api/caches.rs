//! A node answers repeated reads (a user's pages of videos, the tokens it
//! verified) from memory. What changes elsewhere — on another node, by any
//! SQL — must still show at once, and a node that cannot hear the
//! database's notifications must keep nothing.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{NodeConfig, TestApp, error_code, eventually, fixture, start_node};

/// Far below the 60 s a kept page may live without news: passing within it
/// shows the news arrived.
const NEWS: Duration = Duration::from_secs(5);

#[tokio::test]
async fn another_nodes_writes_and_revocations_show_at_once() {
    let app = TestApp::spawn().await;
    let other = start_node(
        &app.db.url,
        app.media.path(),
        &NodeConfig {
            node_name: "node-b".into(),
            ..NodeConfig::default()
        },
    );
    let token = app.user("ann@example.com").await;
    let on_b = |path: &str| {
        app.http
            .get(format!("http://{}{path}", other.addr))
            .bearer_auth(&token)
            .send()
    };
    let list_on_b = || async {
        let r = on_b("/api/v1/videos?limit=5").await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["videos"]
            .as_array()
            .unwrap()
            .clone()
    };
    // read twice: the second answer comes from node b's memory
    assert!(list_on_b().await.is_empty());
    assert!(list_on_b().await.is_empty());

    // an upload on node a
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    eventually("node b to list node a's upload", NEWS, || async {
        list_on_b()
            .await
            .first()
            .map(|v| v["id"] == id.as_str())?
            .then_some(())
    })
    .await;
    let done = app.wait_final(&token, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "done");
    eventually("node b to list it done", NEWS, || async {
        let videos = list_on_b().await;
        (videos[0]["status"] == "done" && videos[0]["download_url"].is_string()).then_some(())
    })
    .await;

    // any writer, even plain SQL
    let sql = app.db.client().await;
    sql.execute("UPDATE jobs SET filename = 'renamed.mp4'", &[])
        .await
        .unwrap();
    eventually("node b to show the SQL change", NEWS, || async {
        (list_on_b().await[0]["filename"] == "renamed.mp4").then_some(())
    })
    .await;

    // a deletion on node a
    assert_eq!(app.delete_video(&token, &id).await, 204);
    eventually("node b to drop the deleted video", NEWS, || async {
        list_on_b().await.is_empty().then_some(())
    })
    .await;

    // node b cannot hear the database: it keeps nothing meanwhile
    let cut = sql
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'videoproject changes'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(cut, 2, "both nodes listen");
    sql.execute(
        "INSERT INTO jobs (id, user_id, filename, state, error, options, max_attempts)
         SELECT gen_random_uuid(), id, 'quiet.mp4', 'failed', 'written unheard', '{}', 1
         FROM users",
        &[],
    )
    .await
    .unwrap();
    eventually("node b to read past its memory", NEWS, || async {
        (list_on_b().await.first()?["filename"] == "quiet.mp4").then_some(())
    })
    .await;

    // signed out on node a: refused by node b as soon as the 204 is back,
    // though node b had kept the token
    let r = app.delete(&token, "/api/v1/sessions").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = on_b("/api/v1/me").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "unauthorized");
}
