//! Languages: an account's locale from sign-up (its `locale`, else the
//! browser's `Accept-Language`), shown and changed through /me, and the
//! emails about its videos in it, read from the real SMTP server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{NodeConfig, PASSWORD, TestApp, eventually, fixture};

const PROCESSING: Duration = Duration::from_secs(120);

/// Signs up `email` with `body` extras and an `Accept-Language`; the answer.
async fn sign_up(
    app: &TestApp,
    email: &str,
    extra: Value,
    accept_language: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({"email": email, "password": PASSWORD});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut request = reqwest::Client::new()
        .post(app.url("/api/v1/users"))
        .json(&body);
    if let Some(header) = accept_language {
        request = request.header("accept-language", header);
    }
    request.send().await.unwrap()
}

async fn locale_of(app: &TestApp, email: &str) -> Value {
    let token = app.sign_in(email).await;
    app.get_json(&token, "/api/v1/me").await["locale"].clone()
}

#[tokio::test]
async fn the_locale_comes_from_sign_up_and_changes_with_patch_me() {
    let app = TestApp::spawn_with(NodeConfig::default(), true).await;
    let cases = [
        (
            "browser@example.com",
            json!({}),
            Some("fr;q=0.9, pt-BR;q=0.8"),
            "pt-BR",
        ),
        ("portugal@example.com", json!({}), Some("pt-PT"), "pt-BR"),
        (
            "asked@example.com",
            json!({"locale": "en"}),
            Some("pt-BR"),
            "en",
        ),
        (
            "chosen@example.com",
            json!({"locale": "pt-BR"}),
            None,
            "pt-BR",
        ),
        ("none@example.com", json!({}), None, "en"),
        (
            "other@example.com",
            json!({}),
            Some("de-DE, fr;q=0.5"),
            "en",
        ),
    ];
    for (email, extra, header, want) in cases {
        let r = sign_up(&app, email, extra, header).await;
        assert_eq!(r.status(), 201, "{email}");
        assert_eq!(locale_of(&app, email).await, want, "{email}");
    }
    for bad in ["fr", "pt", "pt-br", ""] {
        let r = sign_up(&app, "bad@example.com", json!({"locale": bad}), None).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_input");
    }

    // the verification link arrives in the language of the sign-up
    let smtp = app.smtp.as_ref().unwrap();
    let mail = eventually(
        "browser's verification email",
        Duration::from_secs(30),
        || async {
            smtp.emails()
                .into_iter()
                .find(|m| m.raw.contains("To: browser@example.com"))
        },
    )
    .await;
    assert_eq!(
        mail.subject,
        "Confirme seu endereço de e-mail no The Video Project"
    );
    assert!(
        mail.text.contains("abra este link em até 7 dias"),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("/#verify="), "{}", mail.text);
    assert!(
        mail.html.contains("Confirmar meu endereço"),
        "{}",
        mail.html
    );

    // changed with PATCH /me; other languages are refused
    let token = app.sign_in("browser@example.com").await;
    for bad in [json!({"locale": "es"}), json!({"locale": 1})] {
        let r = app.patch_me(&token, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    let me = app.patch_me_ok(&token, &json!({"locale": "en"})).await;
    assert_eq!(me["locale"], "en");
    assert_eq!(locale_of(&app, "browser@example.com").await, "en");
    // other preferences leave it as it is
    let me = app
        .patch_me_ok(&token, &json!({"notify_on_success": true}))
        .await;
    assert_eq!(me["locale"], "en");

    // the page's words, both files with the same keys
    let mut keys = Vec::new();
    for tag in ["en", "pt-BR"] {
        let r = app
            .get_anonymous(&format!("/assets/locales/{tag}.json"))
            .await;
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let words: serde_json::Map<String, Value> = r.json().await.unwrap();
        assert!(words.contains_key("error.not_found"), "{tag}");
        keys.push(words.keys().cloned().collect::<Vec<_>>());
    }
    assert_eq!(keys[0], keys[1]);
}

#[tokio::test]
async fn video_emails_follow_the_account_s_language() {
    let app = TestApp::spawn_with(NodeConfig::default(), true).await;
    let email = "bia@example.com";
    assert_eq!(
        sign_up(&app, email, json!({}), Some("pt-BR"))
            .await
            .status(),
        201
    );
    let token = app.sign_in(email).await;
    app.patch_me_ok(&token, &json!({"notify_on_success": true}))
        .await;
    let smtp = app.smtp.as_ref().unwrap();

    // a hostile name (the API keeps no directory part, so no `/` in it)
    let hostile = "<img src=x onerror=alert(1)>.mp4";
    let bytes = tokio::fs::read(fixture("corrupt")).await.unwrap();
    let form = reqwest::multipart::Form::new().part(
        "video",
        reqwest::multipart::Part::bytes(bytes).file_name(hostile),
    );
    let r = app
        .post(&token, "/api/v1/videos")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["video"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["filename"], hostile);
    let details = failed["error"].as_str().unwrap();

    let mail = smtp
        .email_about("Não conseguimos extrair os quadros de")
        .await;
    assert_eq!(
        mail.subject,
        format!("Não conseguimos extrair os quadros de {hostile}")
    );
    let link = app.url(&format!("/#/videos/{id}"));
    assert!(
        mail.text.contains(hostile),
        "verbatim in the text: {}",
        mail.text
    );
    assert!(!mail.html.contains("<img src=x"), "{}", mail.html);
    assert!(
        mail.html.contains("&lt;img src=x onerror=alert(1)&gt;.mp4"),
        "{}",
        mail.html
    );
    let html = mail.html.replace("&#x2f;", "/");
    for part in [&mail.text, &html] {
        assert!(part.contains(&link), "{link} in {part}");
        assert!(part.contains("Enviado em "), "{part}");
        assert!(part.contains("Horários em UTC"), "{part}");
        assert!(part.contains("Detalhes"), "{part}");
    }
    // the raw reason as details (escaped in the HTML, like the name)
    assert!(mail.text.contains(details), "{}", mail.text);
    assert!(html.contains("<summary>Detalhes</summary>"), "{html}");

    // in English once the account says so, a done video too
    app.patch_me_ok(&token, &json!({"locale": "en"})).await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "4")])
        .await;
    let done = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    let mail = smtp.email_about("Your frames of v20.mp4 are ready").await;
    let link = app.url(&format!("/#/videos/{id}"));
    let html = mail.html.replace("&#x2f;", "/");
    for part in [&mail.text, &html] {
        assert!(part.contains("4 frames extracted"), "{part}");
        assert!(part.contains(&link), "{link} in {part}");
        assert!(part.contains("Uploaded "), "{part}");
        assert!(part.contains("are kept until "), "{part}");
    }
    // the contact sheet inline: one JPEG, and the HTML shows it
    assert_eq!(mail.inline.len(), 1, "one inline image");
    let sheet = &mail.inline[0];
    assert_eq!(sheet.content_type, "image/jpeg");
    assert!(sheet.bytes.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(
        mail.html.contains(&format!("cid:{}", sheet.content_id)),
        "{}",
        mail.html
    );
    assert_eq!(smtp.about_videos().len(), 2);
}
