//! The second notification channel: signed webhook POSTs from the outbox.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{NodeConfig, TestApp, WebhookReceiver, eventually, fixture};

const PROCESSING: Duration = Duration::from_secs(60);

/// The HMAC-SHA256 the receiver expects: over `"{timestamp}.{body}"`.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn header<'a>(r: &'a crate::helpers::Received, name: &str) -> &'a str {
    r.headers[name].to_str().unwrap()
}

/// The webhook deliveries in a video's answer once none is pending.
async fn settled_webhooks(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    eventually(
        "the webhook delivery to be recorded as sent",
        Duration::from_secs(60),
        || async {
            let video = app.video(token, id).await;
            let hooks: Vec<Value> = video["notifications"]
                .as_array()?
                .iter()
                .filter(|n| n["channel"] == "webhook")
                .cloned()
                .collect();
            (!hooks.is_empty() && hooks.iter().all(|n| n["status"] == "sent")).then_some(hooks)
        },
    )
    .await
}

/// The video's webhook notification once an attempt has failed.
async fn failed_webhook_attempt(app: &TestApp, token: &str, id: &str) -> Value {
    eventually(
        "a failed webhook attempt",
        Duration::from_secs(30),
        || async {
            let video = app.video(token, id).await;
            video["notifications"]
                .as_array()?
                .iter()
                .find(|n| n["channel"] == "webhook" && n["last_error"].is_string())
                .cloned()
        },
    )
    .await
}

/// A node whose webhooks may reach this machine, where the receivers run.
fn local_webhooks() -> NodeConfig {
    NodeConfig::tuned("webhook_private_networks = true\n")
}

#[tokio::test]
async fn webhook_events_are_signed_retried_and_delivered_once() {
    // the receiver fails the first request it gets, whichever event it is
    let hook = WebhookReceiver::start(1).await;
    let app = TestApp::spawn_with(local_webhooks(), false).await;
    let token = app.user("ann@example.com").await;
    let me = app
        .patch_me_ok(&token, &json!({"webhook_url": hook.url()}))
        .await;
    let secret = me["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{me}");

    let failed = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    let done = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    assert_eq!(
        app.wait_final(&token, &failed, PROCESSING).await["status"],
        "failed"
    );
    assert_eq!(
        app.wait_final(&token, &done, PROCESSING).await["status"],
        "done"
    );

    let mut attempts = BTreeMap::new();
    for (id, event) in [(&failed, "video.failed"), (&done, "video.done")] {
        let hooks = settled_webhooks(&app, &token, id).await;
        assert_eq!(hooks.len(), 1, "one webhook per event: {hooks:?}");
        assert_eq!(
            hooks[0]["kind"],
            if event == "video.failed" {
                "job_failed"
            } else {
                "job_done"
            }
        );
        attempts.insert(event, hooks[0]["attempts"].as_i64().unwrap());
    }

    let received = hook.received();
    // every attempt reached the receiver, and nothing else did
    assert_eq!(
        received.len() as i64,
        attempts.values().sum::<i64>(),
        "{received:?}"
    );
    assert_eq!(received[0].answered, 500);
    let mut accepted = BTreeMap::new();
    for r in &received {
        assert_eq!(
            header(r, "x-vp-signature"),
            expected_signature(&secret, header(r, "x-vp-timestamp"), &r.body),
            "signed with the user's key"
        );
        assert_eq!(header(r, "content-type"), "application/json");
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(event["type"], header(r, "x-vp-event"));
        assert_eq!(event["id"], header(r, "x-vp-delivery"));
        if r.answered == 200 {
            let previous = accepted.insert(event["type"].as_str().unwrap().to_owned(), event);
            assert!(previous.is_none(), "an event was delivered twice");
        }
    }
    // the failed first request was retried under the same delivery id
    let retried = &received[0];
    assert_eq!(
        attempts[header(retried, "x-vp-event")],
        2,
        "the event the receiver refused took two attempts"
    );
    assert_eq!(
        accepted[header(retried, "x-vp-event")]["id"],
        header(retried, "x-vp-delivery")
    );

    let event = &accepted["video.failed"];
    assert_eq!(event["video"]["id"], failed.as_str());
    assert_eq!(event["video"]["state"], "failed");
    assert!(
        event["video"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{event}"
    );
    let event = &accepted["video.done"];
    assert_eq!(event["video"]["id"], done.as_str());
    assert_eq!(event["video"]["filename"], "v20.mp4");
    assert_eq!(
        event["video"]["download_url"],
        format!("/api/v1/videos/{done}/frames.zip")
    );
}

#[tokio::test]
async fn an_unreachable_webhook_is_retried_with_its_reason_shown() {
    // nothing listens on this port
    let url = format!("http://127.0.0.1:{}/hook", crate::helpers::free_port());
    let app = TestApp::spawn_with(local_webhooks(), false).await;
    let token = app.user("ann@example.com").await;
    app.patch_me_ok(&token, &json!({"webhook_url": url})).await;
    let id = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "failed"
    );
    let waiting = failed_webhook_attempt(&app, &token, &id).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    assert!(
        waiting["last_error"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{waiting}"
    );
    // the email went out all the same
    let email = app.video(&token, &id).await["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["channel"] == "email")
        .cloned()
        .unwrap();
    assert_eq!(email["kind"], "job_failed");
}

#[tokio::test]
async fn by_default_a_webhook_cannot_reach_the_node_s_own_network() {
    let hook = WebhookReceiver::start(0).await;
    let app = TestApp::spawn().await;
    // loopback is allowed as a URL but refused at delivery (it is the
    // node's own pod), by address and by a name that resolves to it
    // a name that resolves only inside fails as one that does not resolve
    // at all: the error does not tell which names exist inside
    let by_name = hook.url().replace("127.0.0.1", "localhost");
    let nowhere = "https://no-such-host.invalid/hook".to_owned();
    for (email, url, said) in [
        ("ann@example.com", hook.url(), "internal".to_owned()),
        (
            "bob@example.com",
            by_name,
            "localhost has no public address a webhook may reach".to_owned(),
        ),
        (
            "cat@example.com",
            nowhere,
            "no-such-host.invalid has no public address a webhook may reach".to_owned(),
        ),
    ] {
        let token = app.user(email).await;
        app.patch_me_ok(&token, &json!({"webhook_url": url})).await;
        let id = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
        app.wait_final(&token, &id, PROCESSING).await;
        let refused = failed_webhook_attempt(&app, &token, &id).await;
        let reason = refused["last_error"].as_str().unwrap();
        assert!(reason.contains(&said), "{url}: {refused}");
    }
    assert!(hook.received().is_empty(), "the receiver was called");
}
