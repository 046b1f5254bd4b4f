//! Hostile input and token misuse against the real binary: each case names
//! what is sent and the answer it must get, and afterwards nothing may be
//! left behind and the node must still be healthy.

use std::path::Path;
use std::time::{Duration, SystemTime};

use biscuit_auth::KeyPair;
use biscuit_auth::macros::biscuit;
use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use crate::helpers::{NodeConfig, PASSWORD, TestApp, error_code, eventually, fixture};

/// A node whose token key the test knows, so it can mint tokens of its own.
async fn app_with_key() -> (TestApp, KeyPair) {
    let key = KeyPair::new();
    let config = NodeConfig {
        env: vec![("VP_TOKEN_KEY".into(), key.private().to_bytes_hex())],
        ..NodeConfig::default()
    };
    (TestApp::spawn_with(config, false).await, key)
}

/// A token for `user` signed with `key`, expiring at `expires`.
fn mint(key: &KeyPair, user: &str, expires: SystemTime) -> String {
    biscuit!(
        r#"user({user}); check if time($t), $t < {expires};"#,
        user = user,
        expires = expires,
    )
    .build(key)
    .unwrap()
    .to_base64()
    .unwrap()
}

/// The answer must be JSON with this status and code, and no internals.
async fn expect(r: reqwest::Response, status: u16, code: &str, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    let body: Value = r.json().await.unwrap_or_else(|_| panic!("{what}: JSON"));
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for internal in ["/tmp", "/var", "postgres", "panicked", "src/"] {
        assert!(!message.contains(internal), "{what}: {message}");
    }
}

/// Nothing of a refused request may remain (its clean-up runs just after
/// the answer), and the node must be up.
async fn assert_nothing_left(app: &TestApp, what: &str) {
    eventually(
        &format!("{what}: nothing left"),
        Duration::from_secs(10),
        || async {
            (app.count_rows("jobs").await == 0 && app.media_files().is_empty()).then_some(())
        },
    )
    .await;
    let r = app.get_anonymous("/healthz").await;
    assert_eq!(r.status(), 200, "{what}: the node is down");
    assert!(
        !app.node.log_lines().iter().any(|l| l.contains("panicked")),
        "{what}: the node panicked"
    );
}

/// A done video of `token`'s, with `count` frames.
async fn done_video(app: &TestApp, token: &str, count: &str) -> (String, Value) {
    let id = app
        .upload_ok(token, &fixture("v20"), &[("count", count)])
        .await;
    let done = app.wait_final(token, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "done", "{done}");
    (id, done)
}

#[tokio::test]
async fn every_endpoint_refuses_every_kind_of_bad_token() {
    let (app, key) = app_with_key().await;
    let ann = app.user("ann@example.com").await;
    let ann_id = app.get_json(&ann, "/api/v1/me").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = app.user("bob@example.com").await;
    let (video, done) = done_video(&app, &ann, "2").await;
    let link = done["download_url"].as_str().unwrap();
    let link_token = link.split_once("?token=").unwrap().1.to_owned();

    let revoked = app.sign_in("ann@example.com").await;
    let r = app
        .delete(&revoked, "/api/v1/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let past = SystemTime::now() - Duration::from_secs(60);
    let future = SystemTime::now() + Duration::from_secs(600);
    let unauthorised: Vec<(&str, String)> = vec![
        ("revoked", revoked),
        ("expired", mint(&key, &ann_id, past)),
        (
            "signed by another key",
            mint(&KeyPair::new(), &ann_id, future),
        ),
        ("truncated", ann[..ann.len() - 10].to_owned()),
        ("garbage", "Zm9vYmFy".to_owned()),
        ("a download link", link_token),
    ];
    // the test's own minting is right: a fresh token from its key works
    let minted = mint(&key, &ann_id, future);
    assert_eq!(
        app.get(&minted, "/api/v1/me")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let endpoints: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/me".into()),
        (Method::PATCH, "/api/v1/me".into()),
        (Method::GET, "/api/v1/videos".into()),
        (Method::POST, "/api/v1/videos".into()),
        (Method::GET, format!("/api/v1/videos/{video}")),
        (Method::GET, format!("/api/v1/videos/{video}/frames.zip")),
        (Method::GET, format!("/api/v1/videos/{video}/events")),
        (Method::DELETE, format!("/api/v1/videos/{video}")),
        (Method::DELETE, "/api/v1/sessions".into()),
    ];
    for (method, path) in &endpoints {
        for (kind, token) in &unauthorised {
            let r = app
                .http
                .request(method.clone(), app.url(path))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            expect(r, 401, "unauthorized", &format!("{method} {path}, {kind}")).await;
        }
        // another user's good token: the video does not exist for them
        if path.contains(&video) {
            let r = app
                .http
                .request(method.clone(), app.url(path))
                .header(AUTHORIZATION, format!("Bearer {bob}"))
                .send()
                .await
                .unwrap();
            expect(r, 404, "not_found", &format!("{method} {path}, Bob")).await;
        }
    }
    // Bob's own calls show Bob's account and nothing of Ann's
    let me = app.get_json(&bob, "/api/v1/me").await;
    assert_eq!(me["email"], "bob@example.com");
    assert_eq!(
        app.get_json(&bob, "/api/v1/videos").await["videos"],
        json!([])
    );
    // and Ann's video survived every attempt
    assert_eq!(app.video(&ann, &video).await["status"], "done");
}

#[tokio::test]
async fn a_download_link_reads_its_zip_without_a_header_and_nothing_else() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let (first, done) = done_video(&app, &ann, "2").await;
    let (second, _) = done_video(&app, &ann, "3").await;
    let link = done["download_url"].as_str().unwrap().to_owned();
    let token = link.split_once("?token=").unwrap().1;

    // a browser or curl: no Authorization header
    let r = app.get_anonymous(&link).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=")
    );
    let zip = r.bytes().await.unwrap();
    assert_eq!(zip, app.download(&ann, &first).await);

    // the same token for the other video, or for anything else, is refused
    let other = format!("/api/v1/videos/{second}/frames.zip?token={token}");
    let r = app.get_anonymous(&other).await;
    expect(r, 401, "unauthorized", "another video's zip").await;
    let r = app.get(token, "/api/v1/me").send().await.unwrap();
    expect(r, 401, "unauthorized", "the link token as a session").await;
    let r = app
        .delete(token, &format!("/api/v1/videos/{first}"))
        .send()
        .await
        .unwrap();
    expect(r, 401, "unauthorized", "deleting with a link token").await;

    // signing out ends the session's links too
    let r = app.delete(&ann, "/api/v1/sessions").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.get_anonymous(&link).await;
    expect(r, 401, "unauthorized", "a link of a revoked session").await;
}

#[tokio::test]
async fn tokens_and_passwords_never_reach_the_log() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let (_, done) = done_video(&app, &ann, "2").await;
    let link = done["download_url"].as_str().unwrap();
    assert_eq!(app.get_anonymous(link).await.status(), 200);
    // a refused token is not logged either
    let r = app
        .get("refused-token-xyz", "/api/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let link_token = link.split_once("?token=").unwrap().1;
    let log = app.node.log_lines().join("\n");
    assert!(log.contains("upload queued"), "the log is being read");
    for secret in [
        ann.as_str(),
        &ann[..24],
        link_token,
        "refused-token-xyz",
        PASSWORD,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test]
async fn every_answer_carries_security_headers() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let answers = [
        app.get(&ann, "/api/v1/me").send().await.unwrap(),
        app.get(&ann, "/api/v1/videos/nope").send().await.unwrap(),
        app.get_anonymous("/api/v1/me").await,
        app.get_anonymous("/no/such/page").await,
        app.get_anonymous("/healthz").await,
    ];
    for r in answers {
        let h = r.headers();
        let what = format!("{} {}", r.status(), r.url().path());
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(!h.contains_key("access-control-allow-origin"), "{what}");
    }
}

/// A preflight from `origin` for `GET /api/v1/me`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, app.url("/api/v1/me"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_closed_unless_an_origin_is_configured() {
    let closed = TestApp::spawn().await;
    let r = preflight(&closed, "https://app.example").await;
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let open = TestApp::spawn_with(
        NodeConfig {
            env: vec![("VP_CORS_ORIGINS".into(), "https://app.example".into())],
            ..NodeConfig::default()
        },
        false,
    )
    .await;
    let r = preflight(&open, "https://app.example").await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("GET"), "{methods}");
    let r = preflight(&open, "https://evil.example").await;
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let ann = open.user("ann@example.com").await;
    let r = open
        .get(&ann, "/api/v1/me")
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn sign_in_is_limited_per_client_address_across_accounts() {
    let app = TestApp::spawn().await;
    app.user("ann@example.com").await;
    let mut limited = None;
    // each account sees only a few failures; the address sees them all,
    // whatever proxy header the client makes up (no proxy is trusted)
    for i in 0..120 {
        let r = app
            .http
            .post(app.url("/api/v1/sessions"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": format!("guess{}@example.com", i % 40), "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            401 => {}
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                limited = Some(i);
                break;
            }
            other => panic!("attempt {i}: {other}"),
        }
    }
    assert_eq!(
        limited,
        Some(100),
        "the 101st failure from one address is refused"
    );
    // even a right password from that address waits
    let r = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(r).await, "rate_limited");
}

#[tokio::test]
async fn one_client_address_gets_a_bounded_number_of_sign_ups() {
    let app = TestApp::spawn().await;
    let mut statuses = Vec::new();
    for i in 0..32 {
        let r = app
            .post_json(
                "/api/v1/users",
                &json!({"email": format!("new{i}@example.com"), "password": PASSWORD}),
            )
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..30], [201; 30], "{statuses:?}");
    assert_eq!(statuses[30..], [429, 429], "{statuses:?}");
    assert_eq!(app.count_rows("users").await, 30);
}

#[tokio::test]
async fn guesses_sent_at_once_are_counted_as_they_arrive() {
    let app = TestApp::spawn().await;
    app.user("ann@example.com").await;
    let wrong = json!({"email": "ann@example.com", "password": "wrong password"});
    let answers =
        futures::future::join_all((0..30).map(|_| app.post_json("/api/v1/sessions", &wrong))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(
        checked, 10,
        "only the account's 10 attempts are checked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
}

/// A multipart body by hand, for the malformed ones.
fn raw_multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(b"--XBOUNDARY\r\n");
        let disposition = match filename {
            Some(f) => {
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
            }
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XBOUNDARY--\r\n");
    body
}

/// Files that are no videos of their own: playlists and concat scripts that
/// name another file or a URL on `port`, and a still image.
fn referring_files(port: u16) -> Vec<(&'static str, Vec<u8>)> {
    let video = fixture("v20");
    let video = video.display();
    let url = format!("http://127.0.0.1:{port}/segment.ts");
    vec![
        (
            "an HLS playlist of a local file",
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:20\n#EXTINF:20,\n{video}\n#EXT-X-ENDLIST\n")
                .into_bytes(),
        ),
        (
            "an HLS playlist of a URL",
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:20\n#EXTINF:20,\n{url}\n#EXT-X-ENDLIST\n")
                .into_bytes(),
        ),
        (
            "an ffconcat script",
            format!("ffconcat version 1.0\nfile '{video}'\n").into_bytes(),
        ),
        (
            "an ffconcat script of a URL",
            format!("ffconcat version 1.0\nfile '{url}'\n").into_bytes(),
        ),
        ("a still image", b"P6\n1 1\n255\n\0\0\0".to_vec()),
    ]
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_leave_nothing_behind() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let dir = tempfile::tempdir().unwrap();
    // a listener that must never be called: ffmpeg has no network
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let audio = dir.path().join("song.m4a");
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "2",
        ])
        .arg(&audio)
        .status()
        .unwrap();
    assert!(st.success());
    let video = std::fs::read(fixture("v20")).unwrap();

    type Case = (&'static str, &'static str, Vec<u8>, u16, &'static str);
    let multipart = "multipart/form-data; boundary=XBOUNDARY";
    let mut cases: Vec<Case> = vec![
        (
            "an empty file",
            multipart,
            raw_multipart(&[("video", Some("a.mp4"), b"")]),
            415,
            "unsupported_media",
        ),
        (
            "an audio-only file",
            multipart,
            raw_multipart(&[("video", Some("a.m4a"), &std::fs::read(&audio).unwrap())]),
            415,
            "unsupported_media",
        ),
        (
            "text",
            multipart,
            raw_multipart(&[("video", Some("a.mp4"), &b"hello world\n".repeat(500))]),
            415,
            "unsupported_media",
        ),
        (
            "no video field",
            multipart,
            raw_multipart(&[("count", None, b"3")]),
            422,
            "invalid_input",
        ),
        (
            "two videos",
            multipart,
            raw_multipart(&[
                ("video", Some("a.mp4"), &video),
                ("video", Some("b.mp4"), &video),
            ]),
            422,
            "invalid_input",
        ),
        (
            "an unknown option",
            multipart,
            raw_multipart(&[("colour", None, b"red"), ("video", Some("a.mp4"), &video)]),
            422,
            "invalid_input",
        ),
        (
            "an option out of range",
            multipart,
            raw_multipart(&[("width", None, b"99999"), ("video", Some("a.mp4"), &video)]),
            422,
            "invalid_input",
        ),
        (
            "an option after the file",
            multipart,
            raw_multipart(&[
                ("video", Some("a.mp4"), &video),
                ("interval", None, b"0.001"),
            ]),
            422,
            "invalid_input",
        ),
        (
            "an option value too long",
            multipart,
            raw_multipart(&[
                ("count", None, &b"1".repeat(5000)),
                ("video", Some("a.mp4"), &video),
            ]),
            422,
            "invalid_input",
        ),
        (
            "a truncated multipart body",
            multipart,
            raw_multipart(&[("video", Some("a.mp4"), &video)])[..video.len() / 2].to_vec(),
            400,
            "invalid_multipart",
        ),
        (
            "a body that is not multipart",
            "application/json",
            b"{\"video\": 1}".to_vec(),
            400,
            "invalid_multipart",
        ),
        (
            "a multipart body without its boundary",
            "multipart/form-data",
            raw_multipart(&[("video", Some("a.mp4"), &video)]),
            400,
            "invalid_multipart",
        ),
    ];
    for (what, data) in referring_files(port) {
        cases.push((
            what,
            multipart,
            raw_multipart(&[("video", Some("a.mp4"), &data)]),
            415,
            "unsupported_media",
        ));
    }

    for (what, content_type, body, status, code) in cases {
        let r = app
            .post(&ann, "/api/v1/videos")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        if code == "invalid_input" && status == 422 {
            let r_status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(r_status, status, "{what}: {body}");
            assert_eq!(body["error"]["code"], code, "{what}: {body}");
            assert!(
                body["error"]["field"].is_string(),
                "{what} names the field: {body}"
            );
        } else {
            expect(r, status, code, what).await;
        }
        assert_nothing_left(&app, what).await;
    }
    assert!(
        listener.accept().is_err(),
        "ffmpeg or ffprobe opened a network connection"
    );
}

#[tokio::test]
async fn hostile_file_names_are_kept_only_for_display() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let video = std::fs::read(fixture("v20")).unwrap();
    let cases = [
        ("../../../../tmp/evil.mp4", "evil.mp4"),
        ("C:\\Windows\\evil.mp4", "evil.mp4"),
        ("sneaky\u{202E}4pm.exe", "sneaky4pm.exe"),
        ("..", "video"),
    ];
    // the video under the file name `name`: the answer's status and body
    let upload_as = |name: String| {
        let form = reqwest::multipart::Form::new().text("count", "1").part(
            "video",
            reqwest::multipart::Part::bytes(video.clone()).file_name(name),
        );
        async {
            let r = app
                .post(&ann, "/api/v1/videos")
                .multipart(form)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    for (sent, shown) in cases {
        let (status, body) = upload_as(sent.to_owned()).await;
        assert_eq!(status, 202, "{sent:?}: {body}");
        assert_eq!(body["video"]["filename"], shown, "{sent:?}");
    }
    // every stored file is inside the media store, named by id
    assert!(!Path::new("/tmp/evil.mp4").exists());
    for file in app.media_files() {
        let name = file.to_string_lossy();
        assert!(!name.contains("evil") && !name.contains("sneaky"), "{name}");
    }
    let (_, body) = upload_as("é".repeat(1000)).await;
    assert_eq!(
        body["video"]["filename"].as_str().unwrap().chars().count(),
        255
    );
}

#[tokio::test]
async fn json_bodies_and_queries_are_bounded_and_checked() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let long_email = format!("{}@example.com", "a".repeat(500));
    // (what, method, path, body, status, code); bodies are sent as they are
    let cases: Vec<(&str, Method, &str, String, u16, &str)> = vec![
        (
            "a 100 KB sign-up",
            Method::POST,
            "/api/v1/users",
            json!({"email": "x@example.com", "password": "p".repeat(100_000)}).to_string(),
            413,
            "too_large",
        ),
        (
            "truncated JSON",
            Method::POST,
            "/api/v1/sessions",
            "{\"email\": ".into(),
            400,
            "bad_request",
        ),
        (
            "a NUL in an email",
            Method::POST,
            "/api/v1/users",
            json!({"email": "a\u{0}@example.com", "password": PASSWORD}).to_string(),
            422,
            "invalid_input",
        ),
        (
            "a very long email",
            Method::POST,
            "/api/v1/users",
            json!({"email": long_email, "password": PASSWORD}).to_string(),
            422,
            "invalid_input",
        ),
        (
            "an unknown profile field",
            Method::PATCH,
            "/api/v1/me",
            json!({"is_admin": true}).to_string(),
            422,
            "invalid_input",
        ),
        (
            "a webhook that is not https",
            Method::PATCH,
            "/api/v1/me",
            json!({"webhook_url": "file:///etc/passwd"}).to_string(),
            422,
            "invalid_input",
        ),
        (
            "a list limit out of range",
            Method::GET,
            "/api/v1/videos?limit=100000",
            String::new(),
            422,
            "invalid_input",
        ),
        (
            "a cursor that is no cursor",
            Method::GET,
            "/api/v1/videos?cursor=%00%01",
            String::new(),
            422,
            "invalid_input",
        ),
        (
            "an unknown list parameter",
            Method::GET,
            "/api/v1/videos?owner=bob",
            String::new(),
            422,
            "invalid_input",
        ),
    ];
    for (what, method, path, body, status, code) in cases {
        let r = app
            .http
            .request(method, app.url(path))
            .header(AUTHORIZATION, format!("Bearer {ann}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect(r, status, code, what).await;
    }
    // a body refused unread closes its connection, and says so first
    let huge = json!({"email": "x@example.com", "password": "p".repeat(100_000)});
    let r = app.post_json("/api/v1/users", &huge).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["connection"], "close");
    assert_nothing_left(&app, "JSON").await;
    assert_eq!(app.count_rows("users").await, 1);
}

/// ffmpeg and ffprobe parse whatever users upload: they start with nothing
/// of the node's environment (its database URL, token key, credentials).
#[tokio::test]
async fn the_media_tools_see_none_of_the_nodes_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let wrap = |tool: &str| {
        let path = dir.path().join(tool);
        let seen = dir.path().join(format!("{tool}.env"));
        std::fs::write(
            &path,
            format!("#!/bin/sh\nenv >> {}\nexec {tool} \"$@\"\n", seen.display()),
        )
        .unwrap();
        let status = std::process::Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        (path, seen)
    };
    let (ffmpeg, ffmpeg_env) = wrap("ffmpeg");
    let (ffprobe, ffprobe_env) = wrap("ffprobe");
    let config = NodeConfig {
        env: vec![(
            "VP_TOKEN_KEY".into(),
            KeyPair::new().private().to_bytes_hex(),
        )],
        ..NodeConfig::tuned(&format!(
            "ffmpeg_path = \"{}\"\nffprobe_path = \"{}\"",
            ffmpeg.display(),
            ffprobe.display()
        ))
    };
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    assert_eq!(
        app.wait_final(&token, &id, Duration::from_secs(120)).await["status"],
        "done"
    );
    for seen in [ffprobe_env, ffmpeg_env] {
        let env = std::fs::read_to_string(&seen).unwrap();
        assert!(env.lines().any(|l| l == "LC_ALL=C"), "{env}");
        for secret in ["DATABASE_URL", "VP_TOKEN_KEY", "VP_"] {
            assert!(
                !env.contains(secret),
                "{secret} reached {}: {env}",
                seen.display()
            );
        }
    }
}
