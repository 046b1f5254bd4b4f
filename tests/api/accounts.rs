use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, error_code};

#[tokio::test]
async fn sign_up_sign_in_profile_and_sign_out() {
    let app = TestApp::spawn().await;

    let r = app
        .post_json(
            "/api/v1/users",
            &json!({"email": "Ann@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "ann@example.com");
    assert!(user["id"].as_str().is_some_and(|id| id.len() == 36));

    let r = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let session: Value = r.json().await.unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    assert!(session["expires_at"].as_str().unwrap().ends_with('Z'));

    let me: Value = app.get_json(&token, "/api/v1/me").await;
    assert_eq!(
        me,
        json!({"id": user["id"], "email": "ann@example.com", "email_verified": false, "locale": "en", "notify_on_success": false, "webhook_url": null, "webhook_secret": null,
               "storage": {"used_bytes": 0, "quota_bytes": 21474836480u64}})
    );

    let r = app
        .patch_me(
            &token,
            &json!({"notify_on_success": true, "webhook_url": "https://hooks.example.com/vp"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["notify_on_success"], true);
    assert_eq!(me["webhook_url"], "https://hooks.example.com/vp");
    // a webhook comes with the key its events are signed with: kept while
    // the webhook stays, replaced on request, gone with the webhook
    let secret = me["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{me}");
    let again = app
        .patch_me_ok(&token, &json!({"notify_on_success": false}))
        .await;
    assert_eq!(again["webhook_secret"], secret.as_str());
    let rotated = app
        .patch_me_ok(&token, &json!({"rotate_webhook_secret": true}))
        .await;
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    assert!(
        new_secret.starts_with("whsec_") && new_secret != secret,
        "{rotated}"
    );
    let cleared = app.patch_me_ok(&token, &json!({"webhook_url": null})).await;
    assert_eq!(cleared["webhook_url"], Value::Null);
    assert_eq!(cleared["webhook_secret"], Value::Null);

    let r = app
        .patch_me(&token, &json!({"webhook_url": "http://example.com/hook"}))
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(error_code(r).await, "invalid_input");

    // sign out: the token is refused from then on
    let r = app.delete(&token, "/api/v1/sessions").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.get(&token, "/api/v1/me").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "unauthorized");
    // …also after a restart of the node (revocations are in the database)
    let mut app = app;
    app.restart();
    let r = app.get(&token, "/api/v1/me").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // a new sign-in works
    let token = app.sign_in("ann@example.com").await;
    assert_eq!(
        app.get(&token, "/api/v1/me").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn sign_up_and_sign_in_errors() {
    let app = TestApp::spawn().await;
    app.user("bob@example.com").await;

    let cases = [
        (
            json!({"email": "bob@example.com", "password": PASSWORD}),
            409,
            "email_taken",
        ),
        (
            json!({"email": "BOB@example.com", "password": PASSWORD}),
            409,
            "email_taken",
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            422,
            "invalid_input",
        ),
        (
            json!({"email": "c@example.com", "password": "short"}),
            422,
            "invalid_input",
        ),
        (json!({"email": "c@example.com"}), 422, "invalid_input"),
        // well-formed JSON of the wrong shape
        (
            json!({"email": 7, "password": PASSWORD}),
            422,
            "invalid_input",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post_json("/api/v1/users", &body).await;
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }
    let r = app
        .http
        .post(app.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "bad_request");

    for body in [
        json!({"email": "bob@example.com", "password": "wrong password"}),
        json!({"email": "nobody@example.com", "password": PASSWORD}),
    ] {
        let r = app.post_json("/api/v1/sessions", &body).await;
        assert_eq!(r.status(), 401, "{body}");
        assert_eq!(error_code(r).await, "invalid_credentials");
    }
}

#[tokio::test]
async fn repeated_wrong_passwords_are_rate_limited() {
    let app = TestApp::spawn().await;
    app.user("carol@example.com").await;
    let wrong = json!({"email": "carol@example.com", "password": "not the password"});
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            app.post_json("/api/v1/sessions", &wrong)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    let r = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "carol@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        r.status(),
        429,
        "even the right password waits out the lock"
    );
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "rate_limited");
    // the guesses came from one address: from another, the owner signs in
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = elsewhere
        .post(app.url("/api/v1/sessions"))
        .json(&json!({"email": "carol@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner is not locked out");
}

#[tokio::test]
async fn every_authenticated_call_refuses_missing_or_bad_tokens() {
    let app = TestApp::spawn().await;
    let token = app.user("dan@example.com").await;
    let id = "01a222f2-d857-7688-b0de-cbfc793f2674";
    let calls = [
        ("GET", "/api/v1/me".to_owned()),
        ("PATCH", "/api/v1/me".to_owned()),
        ("GET", "/api/v1/videos".to_owned()),
        ("POST", "/api/v1/videos".to_owned()),
        ("GET", format!("/api/v1/videos/{id}")),
        ("DELETE", format!("/api/v1/videos/{id}")),
        ("GET", format!("/api/v1/videos/{id}/frames.zip")),
        ("GET", format!("/api/v1/videos/{id}/events")),
        // last: with the good token it signs out
        ("DELETE", "/api/v1/sessions".to_owned()),
    ];
    // one character changed in the middle, to something it surely was not
    let mid = token.len() / 2;
    let swapped = if &token[mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{swapped}{}", &token[..mid], &token[mid + 1..]);
    for (method, path) in &calls {
        for auth in [
            None,
            Some("Bearer garbage".to_owned()),
            Some(format!("Bearer {tampered}")),
            Some(format!("Bearer {token}")),
        ] {
            let mut req = app.http.request(method.parse().unwrap(), app.url(path));
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            let r = req.send().await.unwrap();
            if auth.as_deref() == Some(&format!("Bearer {token}")) {
                assert_ne!(r.status(), 401, "{method} {path} with a good token");
            } else {
                assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
                assert_eq!(error_code(r).await, "unauthorized");
            }
        }
    }
}

#[tokio::test]
async fn a_configured_token_key_is_used_and_shared() {
    let key = biscuit_auth::KeyPair::new().private().to_bytes_hex();
    let config = crate::helpers::NodeConfig {
        env: vec![("VP_TOKEN_KEY".into(), key)],
        ..crate::helpers::NodeConfig::default()
    };
    let mut app = TestApp::spawn_with(config, false).await;
    let key = app.config.env[0].1.clone();
    let token = app.user("ann@example.com").await;
    assert_eq!(
        app.count_rows("signing_keys").await,
        0,
        "no key generated when one is configured"
    );
    // another start with the same key accepts the token
    app.restart();
    assert_eq!(
        app.get(&token, "/api/v1/me").send().await.unwrap().status(),
        200
    );
    // rotation: a new key signs, the old one is still accepted...
    let new_key = biscuit_auth::KeyPair::new().private().to_bytes_hex();
    app.config.env = vec![("VP_TOKEN_KEY".into(), format!("{new_key},{key}"))];
    app.restart();
    assert_eq!(
        app.get(&token, "/api/v1/me").send().await.unwrap().status(),
        200,
        "a token of the previous key is still good"
    );
    let fresh = app.sign_in("ann@example.com").await;
    // ...until it is dropped; tokens of the new key stay good
    app.config.env = vec![("VP_TOKEN_KEY".into(), new_key)];
    app.restart();
    assert_eq!(
        app.get(&token, "/api/v1/me").send().await.unwrap().status(),
        401
    );
    assert_eq!(
        app.get(&fresh, "/api/v1/me").send().await.unwrap().status(),
        200
    );
    // a key that is not one refuses to start
    app.config.env = vec![("VP_TOKEN_KEY".into(), "not hex".into())];
    app.node.kill();
    let out = std::process::Command::new(crate::helpers::binary())
        .arg("serve")
        .env("DATABASE_URL", &app.db.url)
        .env("VP_HTTP_ADDR", "127.0.0.1:0")
        .env("VP_TOKEN_KEY", "not hex")
        .env(
            "VP_MEDIA_URL",
            format!("file://{}", app.media.path().display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token key"));
}
