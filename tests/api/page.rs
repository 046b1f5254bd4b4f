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
    assert!(html.contains("<script type=\"module\" src=\"/assets/app.js\"></script>"));

    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/videos.js", "text/javascript; charset=utf-8"),
        ("/assets/frames.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
        ("/assets/locales/en.json", "application/json; charset=utf-8"),
        (
            "/assets/locales/pt-BR.json",
            "application/json; charset=utf-8",
        ),
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

/// Records, inside the page, every value each upload row's bar takes with
/// its label (by file name), the most uploads sending at once, and every
/// status a video in the list shows. A reload would lose the marker.
const WATCH: &str = r#"
    window.__samples = {};
    window.__statuses = [];
    window.__sending = 0;
    window.__same_page = true;
    const uploads = document.getElementById('uploads');
    new MutationObserver((records) => {
        for (const r of records) {
            const row = r.target.closest && r.target.closest('li.upload');
            if (!row) continue;
            const name = row.querySelector('.name').textContent;
            const bar = row.querySelector('.progress');
            (window.__samples[name] ||= []).push([Number(bar.value), row.querySelector('.upload-label').textContent]);
        }
        const sending = uploads.querySelectorAll('li.upload[data-state=sending]').length;
        window.__sending = Math.max(window.__sending, sending);
    }).observe(uploads, { childList: true, subtree: true, attributes: true, attributeFilter: ['value', 'data-state'] });
    new MutationObserver((records) => {
        for (const r of records) {
            const nodes = r.type === 'childList' ? [...r.addedNodes] : [r.target];
            for (const n of nodes) if (n.dataset && n.dataset.status) window.__statuses.push(n.dataset.status);
        }
    }).observe(document.getElementById('videos'),
        { childList: true, subtree: true, attributes: true, attributeFilter: ['data-status'] });
"#;

/// What WATCH saw: the bar values and labels of the upload of `name`.
fn samples_of(seen: &Value, name: &str) -> (Vec<f64>, Vec<String>) {
    let samples = seen["samples"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no samples of {name}: {seen}"));
    let values = samples.iter().map(|s| s[0].as_f64().unwrap()).collect();
    let labels = samples
        .iter()
        .map(|s| s[1].as_str().unwrap().to_owned())
        .collect();
    (values, labels)
}

/// The bar of one upload moved with the bytes: values between empty and
/// full, never going back, with percent, bytes, speed and time left.
fn assert_progressed(seen: &Value, name: &str, steps: usize) {
    let (values, labels) = samples_of(seen, name);
    assert!(
        values.iter().filter(|v| **v > 0.0 && **v < 1.0).count() >= steps,
        "{name}: the bar showed the upload part-way, step by step: {values:?}"
    );
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "{name}: the bar never went back: {values:?}"
    );
    assert_eq!(values.last(), Some(&1.0), "{name}: {values:?}");
    assert!(
        labels.iter().any(|l| l.contains('%')
            && l.contains(" of ")
            && l.contains("/s")
            && l.ends_with(" left")),
        "{name}: percent, bytes, speed and time left were shown: {labels:?}"
    );
}

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
    b.text_where("#uploads .upload-label", UI, |t| t.ends_with(" left"))
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

    assert_progressed(&seen, "bulky.mp4", 5);

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
    let refusal = b
        .text_where("#uploads .upload-error", UI, |t| !t.is_empty())
        .await;
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
        .text_where("#videos li[data-status=failed] .reason", PROCESSING, |t| {
            !t.is_empty()
        })
        .await;
    let token = app.sign_in(email).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    assert_eq!(listed["videos"][0]["status"], "failed");
    // the reason in plain words when the page knows its code, the raw
    // text of the tools kept under "details"; the raw text alone otherwise
    let raw = b
        .eval("return document.querySelector('#videos li[data-status=failed] .raw-text').textContent;")
        .await;
    let error = listed["videos"][0]["error"].as_str().unwrap();
    assert!(
        shown == error || raw == error,
        "shown {shown:?}, details {raw:?}, the API's {error:?}"
    );
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

/// Signs `email` (an existing account) in through the page's form.
async fn sign_in_page(b: &Browser, app: &TestApp, email: &str) {
    b.client.goto(&app.url("/")).await.unwrap();
    b.shown("#auth", UI).await;
    // a first visit offers to create an account: switch to signing in
    if b.client
        .find(fantoccini::Locator::Css("#password-hint"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
    {
        b.find("#auth-switch").await.click().await.unwrap();
    }
    b.type_into("#email", email).await;
    b.type_into("#password", PASSWORD).await;
    b.press_enter("#password").await;
    b.shown("#workspace", UI).await;
}

/// The names in the list, top to bottom.
async fn names(b: &Browser) -> Value {
    b.eval(
        "return [...document.querySelectorAll('#videos li.video .name')].map(n => n.textContent);",
    )
    .await
}

/// The index of the frame the viewer shows.
async fn viewer_index(b: &Browser) -> Value {
    b.eval("return document.getElementById('viewer').dataset.index;")
        .await
}

/// Presses `key` on the focused element.
async fn press(b: &Browser, key: Key) {
    let focused = b.client.active_element().await.unwrap();
    focused.send_keys(&key.to_string()).await.unwrap();
}

/// How many rows of the list match `css` (under `#videos`).
async fn count(b: &Browser, css: &str) -> usize {
    b.client
        .find_all(fantoccini::Locator::Css(&format!("#videos {css}")))
        .await
        .unwrap()
        .len()
}

/// Waits until `n` rows of the list match `css`.
async fn rows(b: &Browser, css: &str, n: usize, timeout: Duration) {
    crate::helpers::eventually(&format!("{n} rows {css}"), timeout, || async move {
        (count(b, css).await == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn several_files_at_once_each_get_a_row_go_three_at_a_time_and_end_done() {
    let app = TestApp::spawn().await;
    let email = "sam@example.com";
    app.user(email).await;
    let mut b = Browser::start("several-files", 1280, 900).await;
    sign_in_page(&b, &app, email).await;
    b.eval(WATCH).await;
    b.throttle_uploads(3_000_000).await;

    // four files chosen at once, one of them not a video
    let files = ["v20", "v60", "text", "v60_big"].map(|f| fixture(f).to_str().unwrap().to_owned());
    b.type_into("#file", &files.join("\n")).await;
    b.text_where("#file-info", UI, |t| t.starts_with("4 files, "))
        .await;
    b.find("#upload-submit").await.click().await.unwrap();
    // each has its row at once, before any is sent
    let at_once = b
        .eval("return [...document.querySelectorAll('#uploads li.upload .name')].map(n => n.textContent);")
        .await;
    assert_eq!(
        at_once,
        serde_json::json!(["v20.mp4", "v60.mp4", "notes.mp4", "v60_big.mp4"])
    );
    b.text_where("#uploads .upload-label", UI, |t| t.ends_with(" left"))
        .await;
    b.shot("several-uploading").await;

    // the refused one says why and stays; the others go on to the end
    let refusal = b
        .text_where("#uploads li[data-state=failed] .upload-error", UI, |t| {
            !t.is_empty()
        })
        .await;
    assert!(refusal.to_lowercase().contains("video"), "{refusal}");
    rows(&b, "li[data-status=done]", 3, PROCESSING).await;
    b.shot("several-done").await;
    let seen = b
        .eval("return { samples: window.__samples, sending: window.__sending, same: window.__same_page === true };")
        .await;
    assert_eq!(seen["same"], true, "the page was not reloaded");
    assert_progressed(&seen, "v60_big.mp4", 3);
    assert_progressed(&seen, "v60.mp4", 1);
    let sending = seen["sending"].as_u64().unwrap();
    assert!(
        (2..=3).contains(&sending),
        "uploads went a few at a time, never more than three: {sending}"
    );
    // the refused one is still there, with a way to try again or dismiss it
    assert_eq!(
        b.text("#uploads li[data-state=failed] .name").await,
        "notes.mp4"
    );
    b.find("#uploads li[data-state=failed] .upload-dismiss")
        .await
        .click()
        .await
        .unwrap();
    let token = app.sign_in(email).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    let mut names: Vec<&str> = listed["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["filename"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["v20.mp4", "v60.mp4", "v60_big.mp4"]);
    b.close().await;
}

#[tokio::test]
async fn a_stopped_upload_is_not_an_error_and_the_others_go_on() {
    let app = TestApp::spawn().await;
    let email = "stu@example.com";
    app.user(email).await;
    let b = Browser::start("stopped-upload", 1280, 900).await;
    sign_in_page(&b, &app, email).await;
    // slow enough that the big one is still sending when it is stopped
    b.throttle_uploads(500_000).await;
    let files = ["v60_big", "v20"].map(|f| fixture(f).to_str().unwrap().to_owned());
    b.type_into("#file", &files.join("\n")).await;
    b.find("#upload-submit").await.click().await.unwrap();
    b.text_where("#uploads .upload-label", UI, |t| t.ends_with(" left"))
        .await;
    b.find("#uploads li.upload .upload-stop")
        .await
        .click()
        .await
        .unwrap();
    rows(&b, "li[data-status=done]", 1, PROCESSING).await;
    assert_eq!(
        b.text("#videos li[data-status=done] .name").await,
        "v20.mp4"
    );
    let left = b
        .eval("return [document.querySelectorAll('#uploads li').length, document.getElementById('upload-error').textContent];")
        .await;
    assert_eq!(
        left,
        serde_json::json!([0, ""]),
        "the stopped upload left no row, no error"
    );
    b.close().await;
}

#[tokio::test]
async fn the_page_speaks_portuguese_to_a_portuguese_browser_and_switches_back() {
    let app = TestApp::spawn().await;
    let mut b = Browser::start_in("portuguese", 1280, 900, "pt-BR").await;
    b.client.goto(&app.url("/")).await.unwrap();
    // before signing in: the browser's language
    b.text_where("#auth-title", UI, |t| t == "Criar uma conta")
        .await;
    assert_eq!(
        b.eval("return document.documentElement.lang;").await,
        "pt-BR"
    );
    assert_eq!(b.text("#auth-submit").await, "Criar conta");
    b.shot("pt-sign-up").await;
    let email = "ana@example.com";
    b.type_into("#email", email).await;
    b.type_into("#password", PASSWORD).await;
    b.press_enter("#password").await;
    b.shown("#workspace", UI).await;
    assert_eq!(b.text("#upload-title").await, "Novos vídeos");
    b.text_where("#live", UI, |t| t.starts_with("Ao vivo"))
        .await;

    // a video with its options in words, its dates and numbers in Portuguese
    b.find("#interval").await.clear().await.unwrap();
    b.type_into("#interval", "2.5").await;
    b.find("#format option[value=png]")
        .await
        .click()
        .await
        .unwrap();
    b.type_into("#width", "80").await;
    b.type_into("#file", fixture("v20").to_str().unwrap()).await;
    b.find("#upload-submit").await.click().await.unwrap();
    let detail = b
        .text_where("#videos li[data-status=done] .detail", PROCESSING, |t| {
            t.contains("quadros")
        })
        .await;
    assert!(detail.starts_with("8 quadros, zip de "), "{detail}");
    assert_eq!(b.text("#videos li .status").await, "PRONTO");
    b.find("#videos li .more summary")
        .await
        .click()
        .await
        .unwrap();
    let facts = b.text("#videos li .facts").await;
    assert!(
        facts.contains("1 quadro a cada 2,5 s, PNG, 80 px de largura"),
        "{facts}"
    );
    assert!(facts.contains("Enviado em"), "{facts}");
    b.shot("pt-workspace").await;

    // the account keeps the language the page chose at sign-up (once the
    // API has it), and the switch takes the page back to English
    let token = app.sign_in(email).await;
    let me = app.get_json(&token, "/api/v1/me").await;
    if me.get("locale").is_some() {
        assert_eq!(me["locale"], "pt-BR");
    }
    b.find("#language option[value=en]")
        .await
        .click()
        .await
        .unwrap();
    b.text_where("#upload-title", UI, |t| t == "New videos")
        .await;
    assert_eq!(b.eval("return document.documentElement.lang;").await, "en");
    let facts = b.text("#videos li .facts").await;
    assert!(
        facts.contains("1 frame every 2.5 s, PNG, 80 px wide"),
        "{facts}"
    );
    if me.get("locale").is_some() {
        let me = crate::helpers::eventually("the locale saved", UI, || async {
            let me = app.get_json(&token, "/api/v1/me").await;
            (me["locale"] == "en").then_some(me)
        })
        .await;
        assert_eq!(me["locale"], "en");
    }
    // and the choice holds when the page is opened again
    b.client.refresh().await.unwrap();
    b.text_where("#upload-title", UI, |t| t == "New videos")
        .await;
    b.close().await;
}

#[tokio::test]
async fn the_list_filters_by_status_and_name_and_sorts_both_ways() {
    let app = TestApp::spawn().await;
    let email = "fia@example.com";
    let token = app.user(email).await;
    let first = app.upload_ok(&token, &fixture("v20"), &[]).await;
    let second = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    app.wait_final(&token, &first, PROCESSING).await;
    app.wait_final(&token, &second, PROCESSING).await;
    let mut b = Browser::start("list-filter", 1280, 900).await;
    sign_in_page(&b, &app, email).await;
    rows(&b, "li.video", 2, UI).await;
    assert_eq!(
        names(&b).await,
        serde_json::json!(["corrupt.mp4", "v20.mp4"])
    );

    b.find("#filter-status option[value=failed]")
        .await
        .click()
        .await
        .unwrap();
    rows(&b, "li.video", 1, UI).await;
    assert_eq!(b.text("#videos li.video .name").await, "corrupt.mp4");
    b.shot("filtered-failed").await;

    b.find("#filter-status option[value='']")
        .await
        .click()
        .await
        .unwrap();
    rows(&b, "li.video", 2, UI).await;
    b.type_into("#filter-q", "V20").await;
    rows(&b, "li.video", 1, UI).await;
    assert_eq!(b.text("#videos li.video .name").await, "v20.mp4");
    b.type_into("#filter-q", "x").await;
    rows(&b, "li.video", 0, UI).await;
    b.shown("#videos-empty", UI).await;
    b.find("#filter-q").await.clear().await.unwrap();
    b.type_into("#filter-q", " ").await;
    rows(&b, "li.video", 2, UI).await;

    b.find("#filter-order option[value=oldest]")
        .await
        .click()
        .await
        .unwrap();
    crate::helpers::eventually("the oldest first", UI, || async {
        (names(&b).await == serde_json::json!(["v20.mp4", "corrupt.mp4"])).then_some(())
    })
    .await;
    b.close().await;
}

#[tokio::test]
async fn the_account_panel_sets_the_emails_and_shows_the_webhook_secret_once() {
    let app = TestApp::spawn().await;
    let email = "acc@example.com";
    let token = app.user(email).await;
    let mut b = Browser::start("account", 390, 844).await;
    sign_in_page(&b, &app, email).await;
    b.find("#account-open").await.click().await.unwrap();
    b.shown("#account-panel", UI).await;
    b.find("#notify-success").await.click().await.unwrap();
    b.text_where("#notify-status", UI, |t| t.starts_with("Emails when"))
        .await;
    let me = app.get_json(&token, "/api/v1/me").await;
    assert_eq!(me["notify_on_success"], true);

    b.type_into("#webhook-url", "https://hooks.example.com/vp")
        .await;
    b.press_enter("#webhook-url").await;
    b.shown("#webhook-secret-box", UI).await;
    let me = app.get_json(&token, "/api/v1/me").await;
    assert_eq!(me["webhook_url"], "https://hooks.example.com/vp");
    let secret = b.text("#webhook-secret").await;
    assert_eq!(me["webhook_secret"], secret.as_str());
    let overflow = b
        .eval("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "wider than a phone by {overflow}"
    );
    b.shot("account").await;

    // a new secret replaces it, shown once more
    b.find("#webhook-rotate").await.click().await.unwrap();
    let rotated = b
        .text_where("#webhook-secret", UI, |t| !t.is_empty() && t != secret)
        .await;
    let me = app.get_json(&token, "/api/v1/me").await;
    assert_eq!(me["webhook_secret"], rotated.as_str());
    // closed and opened again, it is not shown
    b.find("#account-close").await.click().await.unwrap();
    b.find("#account-open").await.click().await.unwrap();
    b.shown("#account-panel", UI).await;
    let hidden = b
        .eval("return document.getElementById('webhook-secret-box').hidden;")
        .await;
    assert_eq!(hidden, true, "the secret is shown once");
    b.close().await;
}

// Frames on screen, acting on videos, and the account's password.

#[tokio::test]
async fn a_done_video_shows_thumbnails_and_the_viewer_steps_by_keyboard() {
    let app = TestApp::spawn().await;
    let email = "vic@example.com";
    let token = app.user(email).await;
    let id = app.upload_ok(&token, &fixture("v20"), &[]).await;
    app.wait_final(&token, &id, PROCESSING).await;
    let mut b = Browser::start("frames-viewer", 1280, 900).await;
    sign_in_page(&b, &app, email).await;
    // a strip of thumbnails, loaded lazily, each an image of this node
    b.shown("#videos li[data-status=done] .thumbs img", UI)
        .await;
    let thumbs = b
        .eval("return [...document.querySelectorAll('#videos .thumbs img')].map(i => [i.loading, new URL(i.src).pathname]);")
        .await;
    let thumbs = thumbs.as_array().unwrap();
    assert_eq!(
        thumbs.len(),
        12,
        "the first page of a 20-frame video: {thumbs:?}"
    );
    assert!(
        thumbs
            .iter()
            .all(|t| t[0] == "lazy" && t[1].as_str().unwrap().starts_with("/api/v1/videos/")),
        "{thumbs:?}"
    );
    // the strip scrolls sideways: the thumbnails in view load (the others
    // wait for their turn, lazily)
    crate::helpers::eventually("the thumbnails in view to load", UI, || async {
        let loaded = b
            .eval(
                "const strip = document.querySelector('#videos .thumbs').getBoundingClientRect(); \
                   const seen = [...document.querySelectorAll('#videos .thumbs img')] \
                     .filter(i => i.getBoundingClientRect().left < strip.right); \
                   return seen.length > 0 && seen.every(i => i.complete && i.naturalWidth > 0);",
            )
            .await;
        (loaded == true).then_some(())
    })
    .await;
    b.eval("document.querySelector('#videos li[data-status=done]').scrollIntoView(); return true;")
        .await;
    b.shot("thumbnails").await;

    // the viewer opens on the frame chosen, with the keyboard
    let first = b.find("#videos .thumbs button.thumb").await;
    first.send_keys(&Key::Enter.to_string()).await.unwrap();
    b.shown("#viewer", UI).await;
    assert_eq!(viewer_index(&b).await, "0");
    b.text_where("#viewer-time", UI, |t| t.starts_with("Frame 1 of 20"))
        .await;
    // past the first page of the strip: the next page is fetched as it goes
    for _ in 0..14 {
        press(&b, Key::Right).await;
    }
    crate::helpers::eventually("frame 15", UI, || async {
        (viewer_index(&b).await == "14").then_some(())
    })
    .await;
    press(&b, Key::Left).await;
    crate::helpers::eventually("frame 14", UI, || async {
        (viewer_index(&b).await == "13").then_some(())
    })
    .await;
    let frame = b
        .eval("const i = document.getElementById('viewer-image'); return [i.complete && i.naturalWidth > 0, document.getElementById('viewer-download').getAttribute('href')];")
        .await;
    assert!(
        frame[1].as_str().unwrap().starts_with("/api/v1/videos/"),
        "{frame}"
    );
    b.shot("viewer").await;
    press(&b, Key::Escape).await;
    crate::helpers::eventually("the viewer to close", UI, || async {
        let open = b
            .eval("return document.getElementById('viewer').open;")
            .await;
        (open == false).then_some(())
    })
    .await;
    b.close().await;
}

#[tokio::test]
async fn process_again_with_other_options_and_retry_a_failed_video() {
    let app = TestApp::spawn().await;
    let email = "rex@example.com";
    let token = app.user(email).await;
    let done = app.upload_ok(&token, &fixture("v20"), &[]).await;
    let failed = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    app.wait_final(&token, &done, PROCESSING).await;
    app.wait_final(&token, &failed, PROCESSING).await;
    let mut b = Browser::start("process-again", 1280, 900).await;
    sign_in_page(&b, &app, email).await;
    rows(&b, "li.video", 2, UI).await;

    // process the done one again: 3 frames, PNG
    let row = format!("#videos li[data-id='{done}']");
    b.find(&format!("{row} .again-open"))
        .await
        .click()
        .await
        .unwrap();
    b.shown(&format!("{row} form.again"), UI).await;
    b.find(&format!("{row} form.again .mode-count"))
        .await
        .click()
        .await
        .unwrap();
    b.find(&format!("{row} form.again .count"))
        .await
        .clear()
        .await
        .unwrap();
    b.type_into(&format!("{row} form.again .count"), "3").await;
    b.find(&format!("{row} form.again .format option[value=png]"))
        .await
        .click()
        .await
        .unwrap();
    b.shot("process-again").await;
    b.press_enter(&format!("{row} form.again .count")).await;
    rows(&b, "li.video", 3, UI).await;
    let again = b
        .text_where("#videos li.video .source", UI, |t| !t.is_empty())
        .await;
    assert_eq!(again, "Processed again from v20.mp4");
    rows(&b, "li[data-status=done]", 2, PROCESSING).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    let new = listed["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["source_id"] == done.as_str())
        .expect("the new video names its source")
        .clone();
    assert_eq!(new["frames"], 3);
    assert_eq!(new["options"]["format"], "png");
    let details = b
        .text(&format!(
            "#videos li[data-id='{}'] .detail",
            new["id"].as_str().unwrap()
        ))
        .await;
    assert!(details.starts_with("3 frames"), "{details}");

    // retry the failed one: the same options, a new entry naming it
    let row = format!("#videos li[data-id='{failed}']");
    b.find(&format!("{row} .retry"))
        .await
        .click()
        .await
        .unwrap();
    rows(&b, "li.video", 4, UI).await;
    let listed = app.get_json(&token, "/api/v1/videos").await;
    let retried = listed["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["source_id"] == failed.as_str())
        .expect("the retry names its source")
        .clone();
    assert_eq!(
        retried["options"],
        app.video(&token, &failed).await["options"]
    );
    b.shot("retried").await;
    b.close().await;
}

#[tokio::test]
async fn the_account_panel_changes_the_password() {
    let app = TestApp::spawn().await;
    let email = "pat@example.com";
    app.user(email).await;
    let b = Browser::start("password-change", 1280, 900).await;
    sign_in_page(&b, &app, email).await;
    b.find("#account-open").await.click().await.unwrap();
    b.shown("#account-panel", UI).await;
    b.type_into("#current-password", "not the password").await;
    b.type_into("#changed-password", "a brand new passphrase")
        .await;
    b.press_enter("#changed-password").await;
    b.text_where("#password-error", UI, |t| {
        t == "The current password is not right."
    })
    .await;
    b.find("#current-password").await.clear().await.unwrap();
    b.type_into("#current-password", PASSWORD).await;
    b.press_enter("#current-password").await;
    b.text_where("#password-status", UI, |t| {
        t.starts_with("Your password is changed")
    })
    .await;
    // this browser stays signed in; the new password is the one that works
    b.shown("#workspace", UI).await;
    let old = app
        .post_json(
            "/api/v1/sessions",
            &serde_json::json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status(), 401);
    let new = app
        .post_json(
            "/api/v1/sessions",
            &serde_json::json!({"email": email, "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(new.status(), 200);
    b.close().await;
}
