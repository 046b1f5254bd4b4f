use serde_json::Value;

use crate::helpers::{TestApp, error_code, fixture};

/// Another user's video does not exist for you, on every endpoint.
#[tokio::test]
async fn users_only_ever_see_their_own_videos() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let id = app
        .upload_ok(&ann, &fixture("v20"), &[("count", "2")])
        .await;
    assert_eq!(
        app.wait_final(&ann, &id, std::time::Duration::from_secs(120))
            .await["status"],
        "done"
    );

    for path in [
        format!("/api/v1/videos/{id}"),
        format!("/api/v1/videos/{id}/frames.zip"),
        format!("/api/v1/videos/{id}/events"),
        "/api/v1/videos/not-a-uuid".to_owned(),
    ] {
        let r = app.get(&bob, &path).send().await.unwrap();
        assert_eq!(r.status(), 404, "GET {path}");
        assert_eq!(error_code(r).await, "not_found");
    }
    let r = app
        .delete(&bob, &format!("/api/v1/videos/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let bobs: Value = app.get_json(&bob, "/api/v1/videos").await;
    assert_eq!(bobs["videos"], Value::Array(vec![]));
    let anns: Value = app.get_json(&ann, "/api/v1/videos").await;
    assert_eq!(anns["videos"][0]["id"], id.as_str());
    // Bob's failed delete left Ann's video intact
    assert_eq!(
        app.download(&ann, &id).await.len() as u64,
        app.video(&ann, &id).await["zip_bytes"].as_u64().unwrap()
    );
}
