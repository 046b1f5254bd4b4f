//! Email verification and password reset: the links arrive at a real SMTP
//! server, and are opened the way the page opens them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{NodeConfig, PASSWORD, TestApp, error_code, eventually, fixture};

const PROCESSING: Duration = Duration::from_secs(120);
const PUBLIC_URL: &str = "https://videos.test";

async fn node(tuning: &str) -> TestApp {
    let config = NodeConfig {
        env: vec![("VP_PUBLIC_URL".into(), format!("{PUBLIC_URL}/"))],
        ..NodeConfig::tuned(tuning)
    };
    TestApp::spawn_with(config, true).await
}

/// The secret of the `#what=` link in `mail`, which must start with the public URL.
fn link_secret(mail: &str, what: &str) -> String {
    secret_after(mail, &format!("{PUBLIC_URL}/#{what}="))
}

/// The 64 hex characters after `prefix` in `mail`.
pub fn secret_after(mail: &str, prefix: &str) -> String {
    let at = mail
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {mail}"));
    let secret: String = mail[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(secret.len(), 64, "{mail}");
    secret
}

/// Waits for every notification of video `id` to be settled; returns them.
async fn settled_notifications(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    eventually(
        "the video's notifications settled",
        Duration::from_secs(30),
        || async {
            let list = app.video(token, id).await["notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (!list.is_empty() && list.iter().all(|n| n["status"] != "pending")).then_some(list)
        },
    )
    .await
}

async fn failed_video(app: &TestApp, token: &str) -> String {
    let id = app.upload_ok(token, &fixture("corrupt"), &[]).await;
    assert_eq!(
        app.wait_final(token, &id, PROCESSING).await["status"],
        "failed"
    );
    id
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.get_json(token, "/api/v1/me").await
}

#[tokio::test]
async fn a_new_address_gets_a_few_emails_until_the_link_sent_at_sign_up_verifies_it() {
    let app = node("unverified_emails_per_day = 1").await;
    let smtp = app.smtp.as_ref().unwrap();
    let token = app.unverified_user("ann@example.com").await;
    assert_eq!(me(&app, &token).await["email_verified"], false);

    let mail = smtp
        .message_with("Subject: Confirm your email address")
        .await;
    assert!(mail.contains("To: ann@example.com"), "{mail}");
    let secret = link_secret(&mail, "verify");

    // unverified: the first email about a video goes, the next is withheld
    // and says why where the owner sees it
    let first = failed_video(&app, &token).await;
    assert_eq!(
        settled_notifications(&app, &token, &first).await[0]["status"],
        "sent"
    );
    let second = failed_video(&app, &token).await;
    let withheld = settled_notifications(&app, &token, &second).await[0].clone();
    assert_eq!(withheld["status"], "gave_up", "{withheld}");
    assert!(
        withheld["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not verified") && e.contains("at most 1")),
        "{withheld}"
    );
    assert_eq!(smtp.about_videos().len(), 1);

    // a link that is not ours opens nothing
    for bad in [
        json!({"token": "0".repeat(64)}),
        json!({"token": "short"}),
        json!({}),
    ] {
        let r = app.post_json("/api/v1/email-verifications", &bad).await;
        assert_eq!(r.status(), 410, "{bad}");
        assert_eq!(error_code(r).await, "link_expired");
    }
    let r = app
        .post_json("/api/v1/email-verifications", &json!({"token": secret}))
        .await;
    assert_eq!(r.status(), 200);
    let opened: Value = r.json().await.unwrap();
    assert_eq!(
        opened,
        json!({"email": "ann@example.com", "email_verified": true})
    );
    // once
    let r = app
        .post_json("/api/v1/email-verifications", &json!({"token": secret}))
        .await;
    assert_eq!(r.status(), 410);
    assert_eq!(me(&app, &token).await["email_verified"], true);

    // verified: every email goes again
    let third = failed_video(&app, &token).await;
    assert_eq!(
        settled_notifications(&app, &token, &third).await[0]["status"],
        "sent"
    );
    assert_eq!(smtp.about_videos().len(), 2);
    let r = app
        .post(&token, "/api/v1/me/verification-email")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "already_verified");
}

#[tokio::test]
async fn with_verification_required_no_email_about_a_video_goes_to_an_unverified_address() {
    let app = node("require_verified_email = true\naccount_emails_per_day = 2").await;
    let smtp = app.smtp.as_ref().unwrap();
    let token = app.unverified_user("bob@example.com").await;
    let id = failed_video(&app, &token).await;
    let withheld = settled_notifications(&app, &token, &id).await[0].clone();
    assert_eq!(withheld["status"], "gave_up", "{withheld}");
    assert!(
        withheld["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not verified")),
        "{withheld}"
    );
    assert!(smtp.about_videos().is_empty());

    // the sign-up's link was one of the two account emails of the day; a
    // second may be asked for, a third is refused
    let resend = || async {
        app.post(&token, "/api/v1/me/verification-email")
            .send()
            .await
            .unwrap()
    };
    let r = resend().await;
    assert_eq!(r.status(), 202);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(sent["sent_to"], "bob@example.com");
    let r = resend().await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "too_many_emails");
    let links = eventually("both links delivered", Duration::from_secs(30), || async {
        let links: Vec<String> = smtp
            .messages()
            .iter()
            .filter(|m| m.contains("Subject: Confirm your email address"))
            .map(|m| link_secret(m, "verify"))
            .collect();
        (links.len() == 2).then_some(links)
    })
    .await;
    assert_ne!(links[0], links[1]);
    // either link verifies; the other is used up with it
    let r = app
        .post_json("/api/v1/email-verifications", &json!({"token": links[0]}))
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post_json("/api/v1/email-verifications", &json!({"token": links[1]}))
        .await;
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn a_forgotten_password_is_replaced_through_a_single_use_link_that_ends_every_session() {
    let app = node("").await;
    let smtp = app.smtp.as_ref().unwrap();
    let token = app.user("ann@example.com").await;
    let other_device = app.sign_in("ann@example.com").await;

    // the answer is the same whether an account has the address or not
    let app = &app;
    let ask = |email: &'static str| async move {
        app.post_json("/api/v1/password-resets", &json!({"email": email}))
            .await
    };
    let (unknown, known) = (
        ask("nobody@example.com").await,
        ask("ann@example.com").await,
    );
    assert_eq!(unknown.status(), 202);
    assert_eq!(known.status(), 202);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        known.json::<Value>().await.unwrap()
    );
    let r = ask("not an address").await;
    assert_eq!(r.status(), 422);
    let queued_for_nobody: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM notifications WHERE recipient = 'nobody@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued_for_nobody, 0);

    let mail = smtp.message_with("Subject: Set a new password").await;
    assert!(mail.contains("To: ann@example.com"), "{mail}");
    let secret = link_secret(&mail, "reset");
    // once sent, the outbox keeps nothing that opens the account
    let kept: String = eventually(
        "the reset email marked sent",
        Duration::from_secs(10),
        || async {
            let row = app
                .db
                .client()
                .await
                .query_opt(
                    "SELECT body FROM notifications WHERE kind = 'password_reset' AND sent_at IS NOT NULL",
                    &[],
                )
                .await
                .unwrap();
            row.map(|r| r.get(0))
        },
    )
    .await;
    assert!(!kept.contains(&secret), "{kept}");
    let confirm = |password: &'static str| {
        let body = json!({"token": &secret, "password": password});
        async move {
            app.post_json("/api/v1/password-resets/confirm", &body)
                .await
        }
    };

    // a refused password uses nothing up
    let r = confirm("short").await;
    assert_eq!(r.status(), 422);
    assert_eq!(me(app, &token).await["email"], "ann@example.com");

    let r = confirm("a new passphrase").await;
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["email"], "ann@example.com");
    // every session ended, on this node, at once
    for old in [&token, &other_device] {
        let r = app.get(old, "/api/v1/me").send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 401, "the old password is gone");
    let r = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ann@example.com", "password": "a new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let fresh = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(app, &fresh).await["email"], "ann@example.com");

    // once
    let r = confirm("yet another one").await;
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "link_expired");
}

#[tokio::test]
async fn a_reset_link_past_its_lifetime_opens_nothing() {
    let app = node("reset_link_secs = 0").await;
    let smtp = app.smtp.as_ref().unwrap();
    app.user("ann@example.com").await;
    let r = app
        .post_json(
            "/api/v1/password-resets",
            &json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let mail = smtp.message_with("Subject: Set a new password").await;
    let r = app
        .post_json(
            "/api/v1/password-resets/confirm",
            &json!({"token": link_secret(&mail, "reset"), "password": "a new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "link_expired");
    let r = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200, "the password is unchanged");
}
