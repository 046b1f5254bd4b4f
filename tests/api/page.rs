//! The web page: served by the node under its own strict policy, and used
//! by a person in a real headless Chromium (see `browser`), with the mouse,
//! with the keyboard alone, and on a phone-sized screen.

use std::time::Duration;

use fantoccini::key::Key;
use serde_json::Value;

use crate::browser::Browser;
use crate::helpers::{PASSWORD, TestApp, fixture, zip_contents};

const UI: Duration = Duration::from_secs(20);
const PROCESSING: Duration = Duration::from_secs(120);

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_binary_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let page = app.get_anonymous("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(
        !policy.contains("unsafe"),
        "no inline code may run: {policy}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let etag = page.headers()["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));

    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = app.get_anonymous(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
        assert!(!r.bytes().await.unwrap().is_empty(), "{path}");
    }
    // a browser that has this version is told so, without the body
    let again = app
        .http
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let posted = app.http.post(app.url("/")).send().await.unwrap();
    assert_eq!(posted.status(), 405);
    // anything else is the API's JSON 404
    let missing = app.get_anonymous("/assets/nope.js").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// Records, inside the page, every value the upload bar takes with its
/// label, and every status a video in the list shows. A reload would
/// lose the marker.
const WATCH: &str = r#"
    window.__samples = [];
    window.__statuses = [];
    window.__same_page = true;
    const bar = document.getElementById('upload-progress');
    const label = document.getElementById('upload-label');
    new MutationObserver(() => window.__samples.push([Number(bar.value), label.textContent]))
        .observe(bar, { attributes: true, attributeFilter: ['value'] });
    new MutationObserver((records) => {
        for (const r of records) {
            const nodes = r.type === 'childList' ? [...r.addedNodes] : [r.target];
            for (const n of nodes) if (n.dataset && n.dataset.status) window.__statuses.push(n.dataset.status);
        }
    }).observe(document.getElementById('videos'),
        { childList: true, subtree: true, attributes: true, attributeFilter: ['data-status'] });
"#;

#[tokio::test]
async fn a_newcomer_signs_up_uploads_watches_it_finish_and_downloads_the_frames() {
    let app = TestApp::spawn().await;
    let video = fixture("bulky");
    let mut b = Browser::start("newcomer", 1280, 900).await;
    b.client.goto(&app.url("/")).await.unwrap();

    // a first visit offers to create an account
    b.text_where("#auth-title", UI, |t| t == "Create an account")
        .await;
    b.shot("sign-up").await;
    let email = "nia@example.com";
    b.type_into("#email", email).await;
    b.type_into("#password", PASSWORD).await;
    b.find("#auth-submit").await.click().await.unwrap();
    b.shown("#workspace", UI).await;
    assert_eq!(b.text("#who").await, email);
    b.text_where("#live", UI, |t| t.starts_with("Live")).await;

    // a file dropped on the zone is the chosen one
    let dropped = b
        .eval(
            r#"
            const dt = new DataTransfer();
            dt.items.add(new File(['not really a video'], 'dropped.mp4', { type: 'video/mp4' }));
            const zone = document.getElementById('drop');
            const event = (type) => new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true });
            zone.dispatchEvent(event('dragover'));
            const highlighted = zone.classList.contains('over');
            zone.dispatchEvent(event('drop'));
            return [highlighted, zone.classList.contains('over'), document.getElementById('file').files[0].name];
            "#,
        )
        .await;
    assert_eq!(dropped, serde_json::json!([true, false, "dropped.mp4"]));
    b.text_where("#file-info", UI, |t| t.starts_with("dropped.mp4, 18 bytes"))
        .await;

    b.eval(WATCH).await;
    // a home connection's upload speed, so the bar has time to move
    b.throttle_uploads(4_000_000).await;
    b.type_into("#file", video.to_str().unwrap()).await;
    b.text_where("#file-info", UI, |t| t.starts_with("bulky.mp4"))
        .await;
    b.find("#upload-submit").await.click().await.unwrap();
    b.text_where("#upload-label", UI, |t| t.ends_with("/s"))
        .await;
    b.shot("uploading").await;
    b.shown("#videos li.video", UI).await;
    b.shot("uploaded").await;

    // the list follows the job to its end without a reload
    let detail = b
        .text_where("#videos li[data-status=done] .detail", PROCESSING, |t| {
            t.contains("frames")
        })
        .await;
    b.shot("done").await;
    let seen = b
        .eval("return { samples: window.__samples, statuses: window.__statuses, same: window.__same_page === true };")
        .await;
    assert_eq!(seen["same"], true, "the page was not reloaded");

    // the bar moved with the bytes: values between empty and full, never
    // going back, each with bytes and a speed
    let samples = seen["samples"].as_array().unwrap();
    let values: Vec<f64> = samples.iter().map(|s| s[0].as_f64().unwrap()).collect();
    assert!(
        values.iter().filter(|v| **v > 0.0 && **v < 1.0).count() >= 5,
        "the bar showed the upload part-way, step by step: {samples:?}"
    );
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "the bar never went back: {values:?}"
    );
    assert_eq!(values.last(), Some(&1.0), "{values:?}");
    assert!(
        samples
            .iter()
            .any(|s| s[1].as_str().unwrap().contains(" of ")
                && s[1].as_str().unwrap().ends_with("/s")),
        "bytes and speed were shown: {samples:?}"
    );

    // statuses arrived as they happened: the video was seen before it was done
    let statuses: Vec<&str> = seen["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(statuses.last(), Some(&"done"), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .any(|s| *s == "queued" || *s == "processing"),
        "the page showed the video before it was done: {statuses:?}"
    );

    // what the page says is what the API says
    let token = app.sign_in(email).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    let api_video = &listed["videos"][0];
    assert_eq!(api_video["status"], "done");
    let frames = api_video["frames"].as_u64().unwrap();
    assert_eq!(frames, 8, "an 8 s video at one frame a second");
    assert!(detail.starts_with(&format!("{frames} frames")), "{detail}");

    // the download is the zip of those frames
    b.find("#videos li[data-status=done] a.download")
        .await
        .click()
        .await
        .unwrap();
    let zip = b.downloaded(UI).await;
    let (names, manifest) = zip_contents(&std::fs::read(&zip).unwrap());
    assert_eq!(names.len() as u64, frames + 1, "{names:?}");
    assert!(names[..frames as usize].iter().all(|n| n.ends_with(".jpg")));
    assert_eq!(manifest["count"], frames);

    b.find("#sign-out").await.click().await.unwrap();
    b.shown("#auth", UI).await;
    b.text_where("#auth-title", UI, |t| t == "Sign in").await;
    b.shot("signed-out").await;
    b.close().await;
}

#[tokio::test]
async fn with_the_keyboard_alone_on_a_phone_a_refused_file_and_a_failed_video_say_why() {
    let app = TestApp::spawn().await;
    let email = "kai@example.com";
    app.user(email).await;
    let mut b = Browser::start("keyboard-phone", 390, 844).await;
    b.client.goto(&app.url("/")).await.unwrap();
    b.shown("#auth", UI).await;
    b.shot("start").await;

    // focus starts in the email field; Tab walks the form to "Sign in"
    let type_keys = |text: String| {
        let client = b.client.clone();
        async move {
            let focused = client.active_element().await.unwrap();
            focused.send_keys(&text).await.unwrap();
        }
    };
    let focused_id = || async {
        let focused = b.client.active_element().await.unwrap();
        focused.attr("id").await.unwrap().unwrap_or_default()
    };
    assert_eq!(focused_id().await, "email");
    type_keys(Key::Tab.to_string()).await;
    type_keys(Key::Tab.to_string()).await;
    type_keys(Key::Tab.to_string()).await;
    assert_eq!(focused_id().await, "auth-switch");
    type_keys(Key::Enter.to_string()).await;
    b.text_where("#auth-title", UI, |t| t == "Sign in").await;
    assert_eq!(
        focused_id().await,
        "email",
        "switching puts you back at the start"
    );
    type_keys(email.to_owned()).await;
    type_keys(Key::Tab.to_string()).await;
    type_keys(format!("{PASSWORD}{}", Key::Enter)).await;
    b.shown("#workspace", UI).await;

    // nothing sticks out sideways on a phone
    let overflow = b
        .eval("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "page wider than the screen by {overflow}"
    );
    b.shot("phone-workspace").await;

    // a file that is not a video: the server's reason, and nothing listed
    b.type_into("#file", fixture("text").to_str().unwrap())
        .await;
    b.press_enter("#upload-submit").await;
    let refusal = b.text_where("#upload-error", UI, |t| !t.is_empty()).await;
    assert!(refusal.to_lowercase().contains("video"), "{refusal}");
    assert!(
        b.client
            .find_all(fantoccini::Locator::Css("#videos li"))
            .await
            .unwrap()
            .is_empty()
    );
    b.shot("refused").await;

    // a video that cannot be decoded fails, and the page says why
    b.type_into("#file", fixture("corrupt").to_str().unwrap())
        .await;
    b.press_enter("#upload-submit").await;
    let shown = b
        .text_where("#videos li[data-status=failed] .failure", PROCESSING, |t| {
            !t.is_empty()
        })
        .await;
    let token = app.sign_in(email).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    assert_eq!(listed["videos"][0]["status"], "failed");
    assert_eq!(listed["videos"][0]["error"], shown.as_str());
    b.eval("document.querySelector('#videos li').scrollIntoView();")
        .await;
    b.shot("failed").await;

    // delete it from the keyboard: a second press confirms
    let remove = b.find("#videos li[data-status=failed] button.remove").await;
    remove.send_keys(&Key::Enter.to_string()).await.unwrap();
    b.text_where("#videos li[data-status=failed] button.remove", UI, |t| {
        t.starts_with("Press again")
    })
    .await;
    remove.send_keys(&Key::Enter.to_string()).await.unwrap();
    b.shown("#videos-empty", UI).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    assert_eq!(listed["videos"].as_array().unwrap().len(), 0);
    b.close().await;
}

/// Reads `event: video` events from a server-sent event stream until
/// `enough` says so, giving back every video seen.
async fn read_videos(
    mut stream: reqwest::Response,
    timeout: Duration,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut text = String::new();
    let mut seen = Vec::new();
    while !enough(&seen) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("the stream went quiet; so far: {seen:?}"))
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let is_video = block
                .lines()
                .any(|l| l == "event:video" || l == "event: video");
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:"))
                && is_video
            {
                let body: Value = serde_json::from_str(data.trim()).unwrap();
                seen.push(body["video"].clone());
            }
        }
    }
    seen
}

#[tokio::test]
async fn one_stream_carries_every_change_to_the_callers_videos_and_no_one_elses() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let stream = app.get(&ann, "/api/v1/events").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    let first = app.upload_ok(&ann, &fixture("v20"), &[]).await;
    let second = app
        .upload_ok(&ann, &fixture("v20"), &[("count", "3")])
        .await;
    let theirs = app.upload_ok(&bob, &fixture("v20"), &[]).await;
    let done = |videos: &[Value], id: &str| {
        videos
            .iter()
            .any(|v| v["id"] == id && v["status"] == "done")
    };
    let seen = read_videos(stream, PROCESSING, |videos| {
        done(videos, &first) && done(videos, &second)
    })
    .await;
    assert!(
        seen.iter().all(|v| v["id"] != theirs.as_str()),
        "another user's video leaked into the stream"
    );
    for id in [&first, &second] {
        let mine: Vec<&Value> = seen.iter().filter(|v| v["id"] == id.as_str()).collect();
        // each change once, in order: never a stale state after a newer one
        let stamps: Vec<&str> = mine
            .iter()
            .map(|v| v["updated_at"].as_str().unwrap())
            .collect();
        let mut sorted = stamps.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(stamps, sorted, "{id}: {mine:?}");
        let last = mine.last().unwrap();
        assert!(last["download_url"].is_string(), "{last}");
    }
    let frames: Vec<&Value> = seen
        .iter()
        .filter(|v| v["id"] == second.as_str() && v["status"] == "done")
        .map(|v| &v["frames"])
        .collect();
    assert_eq!(frames, [&Value::from(3)]);

    // no token, no stream
    let anonymous = app.get_anonymous("/api/v1/events").await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn the_links_we_email_confirm_the_address_and_set_a_new_password_in_the_page() {
    let app = TestApp::spawn_with(crate::helpers::NodeConfig::default(), true).await;
    let smtp = app.smtp.as_ref().unwrap();
    let mut b = Browser::start("email-links", 1280, 900).await;
    b.client.goto(&app.url("/")).await.unwrap();
    let email = "ria@example.com";
    b.text_where("#auth-title", UI, |t| t == "Create an account")
        .await;
    b.type_into("#email", email).await;
    b.type_into("#password", PASSWORD).await;
    b.press_enter("#password").await;
    b.shown("#workspace", UI).await;
    let banner = b
        .text_where("#verify-text", UI, |t| t.contains(email))
        .await;
    assert!(banner.starts_with("Confirm your address"), "{banner}");
    b.shot("unconfirmed").await;

    // the link in the email (the node's own address: no VP_PUBLIC_URL set),
    // opened in a tab that shows the page already
    let page = app.url("/");
    let mail = smtp
        .message_with("Subject: Confirm your email address")
        .await;
    let verify = format!(
        "{page}#verify={}",
        crate::email_links::secret_after(&mail, &format!("{page}#verify="))
    );
    b.client.goto(&verify).await.unwrap();
    b.text_where("#notice", UI, |t| {
        t == format!("Thank you: {email} is confirmed.")
    })
    .await;
    let banner_hidden = || async {
        b.eval("return [document.getElementById('verify-banner').hidden, location.hash];")
            .await
    };
    let after = crate::helpers::eventually("the banner to go", UI, || async {
        let seen = banner_hidden().await;
        (seen[0] == true).then_some(seen)
    })
    .await;
    assert_eq!(after[1], "", "the secret left the address bar");
    b.shot("confirmed").await;

    // forgotten: ask for a link, with the keyboard
    b.find("#sign-out").await.click().await.unwrap();
    b.shown("#auth", UI).await;
    b.find("#forgot-open").await.click().await.unwrap();
    b.shown("#forgot", UI).await;
    // the address typed to sign in comes along
    assert_eq!(
        b.eval("return document.getElementById('forgot-email').value;")
            .await,
        email
    );
    b.press_enter("#forgot-email").await;
    b.text_where("#notice", UI, |t| {
        t.starts_with("If an account has this address")
    })
    .await;
    let mail = smtp.message_with("Subject: Set a new password").await;
    let reset = format!(
        "{page}#reset={}",
        crate::email_links::secret_after(&mail, &format!("{page}#reset="))
    );
    // a fresh tab, as from a mail program
    b.client.goto("about:blank").await.unwrap();
    b.client.goto(&reset).await.unwrap();
    b.shown("#reset", UI).await;
    b.shot("new-password").await;
    b.type_into("#new-password", "short").await;
    b.press_enter("#new-password").await;
    b.text_where("#reset-error", UI, |t| t.contains("at least 8"))
        .await;
    b.type_into("#new-password", " but longer now").await;
    b.press_enter("#new-password").await;
    b.text_where("#notice", UI, |t| t.starts_with("Your new password is set"))
        .await;
    b.shown("#auth", UI).await;
    assert_eq!(
        b.eval("return document.getElementById('email').value;")
            .await,
        email
    );
    b.type_into("#password", "short but longer now").await;
    b.press_enter("#password").await;
    b.shown("#workspace", UI).await;
    assert_eq!(b.text("#who").await, email);
    b.close().await;
}
