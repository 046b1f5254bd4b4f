//! Acting on videos without uploading them again: their details, rename,
//! processing again from the stored upload, lists filtered and ordered,
//! several at once (delete, one archive of their zips), and the account's
//! password and sessions.

use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{NodeConfig, PASSWORD, TestApp, error_code, fixture, zip_contents};

const PROCESSING: Duration = Duration::from_secs(120);

async fn patch(app: &TestApp, token: &str, id: &str, body: &Value) -> reqwest::Response {
    app.http
        .patch(app.url(&format!("/api/v1/videos/{id}")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn reprocess(app: &TestApp, token: &str, id: &str, options: &Value) -> reqwest::Response {
    app.post(token, &format!("/api/v1/videos/{id}/reprocess"))
        .json(options)
        .send()
        .await
        .unwrap()
}

/// The new video of an accepted reprocess.
async fn reprocessed(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let video = r.json::<Value>().await.unwrap()["video"].clone();
    assert_eq!(
        location,
        format!("/api/v1/videos/{}", video["id"].as_str().unwrap())
    );
    video
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// The ids of a list answer.
fn ids(list: &Value) -> Vec<String> {
    list["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every id of the caller's list with `query`, page after page of `limit`.
async fn all_pages(app: &TestApp, token: &str, query: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/videos?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json(token, &path).await;
        let got = ids(&page);
        assert!(got.len() <= limit);
        seen.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn details_of_done_and_failed_videos_and_a_rename() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let done = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    let failed = app.upload_ok(&token, &fixture("corrupt"), &[]).await;

    let video = app.wait_final(&token, &done, PROCESSING).await;
    assert_eq!(video["status"], "done", "{video}");
    assert_eq!(video["name"], "v20.mp4", "the file's name until renamed");
    let media = &video["media"];
    assert!(
        (media["duration_secs"].as_f64().unwrap() - 20.0).abs() < 0.5,
        "{media}"
    );
    assert_eq!(
        (&media["width"], &media["height"]),
        (&json!(160), &json!(120))
    );
    assert_eq!(media["codec"], "h264");
    assert_eq!(video["queue_position"], Value::Null);
    assert_eq!(video["source_id"], Value::Null);
    assert_eq!(video["error_code"], Value::Null);
    let finished = time(&video["finished_at"]);
    assert!(finished >= time(&video["created_at"]));
    assert_eq!(
        time(&video["expires_at"]) - finished,
        chrono::Duration::days(7),
        "retention after it ended"
    );
    // lists show the same details
    let list = app.get_json(&token, "/api/v1/videos").await;
    let listed = list["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == done.as_str())
        .unwrap()
        .clone();
    for field in ["media", "name", "finished_at", "expires_at"] {
        assert_eq!(listed[field], video[field], "{field}");
    }

    let video = app.wait_final(&token, &failed, PROCESSING).await;
    assert_eq!(video["status"], "failed", "{video}");
    assert_eq!(video["error_code"], "corrupt", "{video}");
    assert!(
        video["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the words stay"
    );
    assert!(video["expires_at"].is_string(), "its upload goes too");
    assert_eq!(video["media"]["codec"], "h264", "it probed as a video");

    // rename: the display name only
    let r = patch(&app, &token, &done, &json!({"name": "  Holiday at sea "})).await;
    assert_eq!(r.status(), 200);
    let renamed = r.json::<Value>().await.unwrap()["video"].clone();
    assert_eq!(renamed["name"], "Holiday at sea");
    assert_eq!(renamed["filename"], "v20.mp4");
    assert_eq!(app.video(&token, &done).await["name"], "Holiday at sea");
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(256)}),
        json!({}),
        json!({"name": "a", "other": 1}),
    ] {
        let r = patch(&app, &token, &done, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        assert_eq!(error_code(r).await, "invalid_input");
    }
    let bob = app.user("bob@example.com").await;
    let r = patch(&app, &bob, &done, &json!({"name": "mine"})).await;
    assert_eq!(r.status(), 404);
    assert_eq!(app.video(&token, &done).await["name"], "Holiday at sea");
}

#[tokio::test]
async fn processing_again_makes_a_new_video_from_the_stored_upload() {
    let app = TestApp::spawn_with(NodeConfig::paced(), false).await;
    let token = app.user("ann@example.com").await;
    // a minute of video at one frame a second, read at 10x: seconds of work
    let original = app.upload_ok(&token, &fixture("v60"), &[]).await;
    // still queued or running: nothing to process again yet
    let r = reprocess(&app, &token, &original, &json!({})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "not_ready");
    assert_eq!(
        app.wait_final(&token, &original, PROCESSING).await["status"],
        "done"
    );
    let first_zip = app.download(&token, &original).await;

    // other options, parsed as the upload's fields are
    for (bad, field) in [
        (json!({"interval": "0.01"}), "interval"),
        (json!({"count": 3, "interval": 1}), "count"),
        (json!({"colour": "red"}), "colour"),
        (json!({"width": [1]}), "width"),
    ] {
        let r = reprocess(&app, &token, &original, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let bob = app.user("bob@example.com").await;
    let r = reprocess(&app, &bob, &original, &json!({})).await;
    assert_eq!(r.status(), 404);

    let again = reprocessed(
        reprocess(
            &app,
            &token,
            &original,
            &json!({"count": 5, "format": "png"}),
        )
        .await,
    )
    .await;
    let again_id = again["id"].as_str().unwrap().to_owned();
    assert_ne!(again_id, original);
    assert_eq!(again["source_id"], original.as_str());
    assert_eq!(again["filename"], "v60.mp4");
    assert_eq!(again["status"], "queued");
    assert_eq!(again["options"]["count"], 5);
    let done = app.wait_final(&token, &again_id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["frames"], 5);
    let (names, _) = zip_contents(&app.download(&token, &again_id).await);
    assert_eq!(names.len(), 6);
    assert!(names[..5].iter().all(|n| n.ends_with(".png")));
    // the original is as it was
    let before = app.video(&token, &original).await;
    assert_eq!(before["frames"], 60);
    assert_eq!(app.download(&token, &original).await, first_zip);

    // a retry with the same key is the same video
    let keyed = |key: &'static str| {
        app.post(&token, &format!("/api/v1/videos/{original}/reprocess"))
            .header("idempotency-key", key)
            .json(&json!({"count": 1}))
    };
    let one = reprocessed(keyed("again-1").send().await.unwrap()).await;
    let two = reprocessed(keyed("again-1").send().await.unwrap()).await;
    assert_eq!(one["id"], two["id"]);
    app.wait_final(&token, one["id"].as_str().unwrap(), PROCESSING)
        .await;

    // deleting the original breaks nothing made from it: each has its own copy
    assert_eq!(app.delete_video(&token, &original).await, 204);
    assert_eq!(app.video(&token, &again_id).await["source_id"], Value::Null);
    let third = reprocessed(reprocess(&app, &token, &again_id, &json!({"count": 3})).await).await;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let done = app.wait_final(&token, &third_id, PROCESSING).await;
    assert_eq!(
        (&done["status"], &done["frames"]),
        (&json!("done"), &json!(3)),
        "{done}"
    );

    // its upload gone (retention): 410
    let source = app
        .media_files()
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&third_id) && p.ends_with("source"))
        .expect("the stored upload");
    std::fs::remove_file(source).unwrap();
    let r = reprocess(&app, &token, &third_id, &json!({})).await;
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "expired");
    let list = app
        .get_json(&token, "/api/v1/videos?status=uploading,queued")
        .await;
    assert_eq!(
        ids(&list),
        Vec::<String>::new(),
        "nothing of the refusal stays"
    );
}

#[tokio::test]
async fn a_failed_video_is_processed_again() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let failed = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    assert_eq!(
        app.wait_final(&token, &failed, PROCESSING).await["status"],
        "failed"
    );
    let retry = reprocessed(reprocess(&app, &token, &failed, &json!({})).await).await;
    assert_eq!(retry["source_id"], failed.as_str());
    let id = retry["id"].as_str().unwrap();
    let again = app.wait_final(&token, id, PROCESSING).await;
    assert_eq!(
        again["status"], "failed",
        "the same bytes fail the same way"
    );
    assert_eq!(again["error_code"], "corrupt");
}

#[tokio::test]
async fn lists_filter_by_status_and_name_in_both_orders() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let mut done = Vec::new();
    for name in ["Alpha", "beta_1", "Gamma 100%", "delta", "ALPHABET"] {
        let id = app
            .upload_ok(&token, &fixture("v20"), &[("count", "1")])
            .await;
        let r = patch(&app, &token, &id, &json!({"name": name})).await;
        assert_eq!(r.status(), 200);
        done.push(id);
    }
    let failed = app.upload_ok(&token, &fixture("corrupt"), &[]).await;
    for id in done.iter().chain([&failed]) {
        app.wait_final(&token, id, PROCESSING).await;
    }
    let newest: Vec<String> = [failed.clone()]
        .into_iter()
        .chain(done.iter().rev().cloned())
        .collect();

    // both orders, page by page, every video once
    assert_eq!(all_pages(&app, &token, "", 2).await, newest);
    assert_eq!(all_pages(&app, &token, "order=newest", 4).await, newest);
    let oldest: Vec<String> = newest.iter().rev().cloned().collect();
    assert_eq!(all_pages(&app, &token, "order=oldest", 2).await, oldest);

    // by status
    assert_eq!(
        all_pages(&app, &token, "status=failed", 2).await,
        vec![failed.clone()]
    );
    assert_eq!(
        all_pages(&app, &token, "status=done,failed", 10).await,
        newest
    );
    assert_eq!(
        all_pages(&app, &token, "status=done&order=oldest", 2).await,
        done
    );
    assert!(all_pages(&app, &token, "status=queued", 2).await.is_empty());

    // by name: any case, LIKE's wildcards meaning themselves
    let named = |q: &str| {
        let q = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
        format!("q={q}&order=oldest")
    };
    assert_eq!(
        all_pages(&app, &token, &named("alp"), 1).await,
        vec![done[0].clone(), done[4].clone()]
    );
    assert_eq!(
        all_pages(&app, &token, &named("%"), 10).await,
        vec![done[2].clone()]
    );
    assert_eq!(
        all_pages(&app, &token, &named("_"), 10).await,
        vec![done[1].clone()]
    );
    assert_eq!(
        all_pages(&app, &token, &named("corrupt"), 10).await,
        vec![failed.clone()],
        "the file's name"
    );
    assert_eq!(
        all_pages(
            &app,
            &token,
            &format!("{}&status=failed", named("alpha")),
            10
        )
        .await,
        Vec::<String>::new()
    );

    for bad in [
        "status=finished",
        "order=sideways",
        &format!("q={}", "x".repeat(101)),
        "sort=name",
    ] {
        let path = format!("/api/v1/videos?{bad}");
        app.get_invalid_input(&token, &path).await;
    }
}

#[tokio::test]
async fn several_videos_are_deleted_or_downloaded_as_one_zip() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let mut mine = Vec::new();
    for count in ["1", "2", "3"] {
        mine.push(
            app.upload_ok(&token, &fixture("v20"), &[("count", count)])
                .await,
        );
    }
    let bob = app.user("bob@example.com").await;
    let theirs = app
        .upload_ok(&bob, &fixture("v20"), &[("count", "1")])
        .await;
    for id in &mine {
        assert_eq!(
            app.wait_final(&token, id, PROCESSING).await["status"],
            "done"
        );
    }
    assert_eq!(
        app.wait_final(&bob, &theirs, PROCESSING).await["status"],
        "done"
    );

    // one zip of zips, each under its video's name, made unique
    let r = app
        .post(&token, "/api/v1/videos/archive")
        .json(&json!({"ids": [mine[0], mine[1]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.get_anonymous(&url).await;
    assert_eq!(r.status(), 200, "the link needs no header");
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.headers().get("content-length").is_none(), "streamed");
    let archive = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive.to_vec())).unwrap();
    let mut entries = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.push((name, bytes));
    }
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["v20.mp4.zip", "v20.mp4 (2).zip"]);
    for ((_, bytes), id) in entries.iter().zip(&mine) {
        assert_eq!(
            bytes,
            &app.download(&token, id).await,
            "{id}'s zip as it is"
        );
    }
    // the link reads that selection only, and not without its token
    let other = url.replace(&mine[1], &mine[2]);
    assert_eq!(app.get_anonymous(&other).await.status(), 401);
    let bare = url.split("&token=").next().unwrap().to_owned();
    assert_eq!(app.get_anonymous(&bare).await.status(), 401);

    // another user's video is no part of a selection
    let r = app
        .post(&token, "/api/v1/videos/archive")
        .json(&json!({"ids": [mine[0], theirs]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for bad in [
        json!({"ids": []}),
        json!({"ids": ["nope"]}),
        json!({"ids": vec![mine[0].clone(); 101]}),
    ] {
        let r = app
            .post(&token, "/api/v1/videos/delete")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }

    // bulk delete: the caller's only, others' silently left
    let r = app
        .post(&token, "/api/v1/videos/delete")
        .json(&json!({"ids": [mine[0], theirs, mine[1]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["deleted"], json!([mine[0], mine[1]]));
    let left = app.get_json(&token, "/api/v1/videos").await;
    assert_eq!(ids(&left), vec![mine[2].clone()]);
    assert_eq!(app.video(&bob, &theirs).await["status"], "done");
    assert_eq!(
        app.get_anonymous(&url).await.status(),
        404,
        "nothing left of the selection"
    );
}

/// The status of `GET /me` with `token`.
async fn me(app: &TestApp, token: &str) -> reqwest::StatusCode {
    app.get(token, "/api/v1/me").send().await.unwrap().status()
}

async fn sign_in(app: &TestApp, password: &str) -> reqwest::Response {
    let body = json!({"email": "ann@example.com", "password": password});
    app.post_json("/api/v1/sessions", &body).await
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_sign_out_everywhere_ends_all() {
    let app = TestApp::spawn().await;
    let here = app.user("ann@example.com").await;
    let elsewhere = app.sign_in("ann@example.com").await;
    let change = |token: &str, current: &str, new: &str| {
        app.post(token, "/api/v1/me/password")
            .json(&json!({"current_password": current, "new_password": new}))
    };

    let r = change(&here, "not the password", "a new passphrase")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "invalid_credentials");
    let r = change(&here, PASSWORD, "short").send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(me(&app, &elsewhere).await, 200, "nothing changed yet");

    let r = change(&here, PASSWORD, "a new passphrase")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        me(&app, &here).await,
        200,
        "the session that changed it goes on"
    );
    assert_eq!(me(&app, &elsewhere).await, 401, "every other one ended");
    assert_eq!(
        sign_in(&app, PASSWORD).await.status(),
        401,
        "the old password"
    );
    let r = sign_in(&app, "a new passphrase").await;
    assert_eq!(r.status(), 200);
    let fresh = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(&app, &fresh).await, 200);

    // everywhere: this session and every other
    let r = app
        .delete(&fresh, "/api/v1/sessions?everywhere=maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .delete(&fresh, "/api/v1/sessions?everywhere=true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me(&app, &fresh).await, 401);
    assert_eq!(me(&app, &here).await, 401);
    assert_eq!(
        sign_in(&app, "a new passphrase").await.status(),
        200,
        "signing in again works"
    );
}
