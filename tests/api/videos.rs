use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::helpers::{NodeConfig, TestApp, error_code, eventually, fixture, zip_contents};

const PROCESSING: Duration = Duration::from_secs(120);

/// Option fields of an upload.
type Fields<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn upload_process_show_download_and_delete() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;

    let r = app.upload(&token, &fixture("v60"), &[]).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let video = &body["video"];
    let id = video["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/videos/{id}"));
    assert_eq!(video["filename"], "v60.mp4");
    assert_eq!(video["status"], "queued", "202 means stored and queued");
    assert_eq!(
        video["size_bytes"],
        std::fs::metadata(fixture("v60")).unwrap().len()
    );
    assert_eq!(video["options"]["interval"], 1.0);
    assert_eq!(video["download_url"], Value::Null);

    let done = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(
        done["frames"], 60,
        "a 60 s video at the default interval gives 60 images"
    );
    assert_eq!(done["error"], Value::Null);
    let url = done["download_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("/api/v1/videos/{id}/frames.zip?token=")),
        "{url}"
    );

    let zip = app.download(&token, &id).await;
    assert_eq!(done["zip_bytes"], zip.len());
    let (names, manifest) = zip_contents(&zip);
    assert_eq!(names.len(), 61);
    assert_eq!(names.last().unwrap(), "manifest.json");
    let mut sorted = names[..60].to_vec();
    sorted.sort();
    assert_eq!(sorted, names[..60], "images are named in time order");
    assert!(names[..60].iter().all(|n| n.ends_with(".jpg")));
    let stamps: Vec<f64> = manifest["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["timestamp"].as_f64().unwrap())
        .collect();
    assert_eq!(stamps, (0..60).map(f64::from).collect::<Vec<_>>());
    assert_eq!(manifest["source"]["video"]["width"], 160);

    // a byte range is exactly that slice of the file
    let r = app
        .get(&token, &url)
        .header("range", "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-1099/{}", zip.len())
    );
    assert_eq!(r.bytes().await.unwrap(), zip[100..1100]);
    let r = app
        .get(&token, &url)
        .header("range", format!("bytes={}-", zip.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    // delete: gone from the API, the disk and the database
    // the upload, the zip and beside it its frame index, thumbnails and contact sheet
    assert_eq!(app.media_files().len(), 5, "{:?}", app.media_files());
    let r = app.delete(&token, &location).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.get(&token, &location).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
    assert_eq!(
        app.delete(&token, &location).send().await.unwrap().status(),
        404
    );
    assert!(app.media_files().is_empty(), "{:?}", app.media_files());
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.count_rows("job_events").await, 0);
}

#[tokio::test]
async fn frame_options_give_exact_counts() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let cases: [(&str, Fields, usize, &str); 4] = [
        ("v20", &[("interval", "5")], 4, "jpg"),
        ("v60", &[("count", "7")], 7, "jpg"),
        ("v20", &[("interval", "1"), ("max_frames", "3")], 3, "jpg"),
        (
            "v20",
            &[("count", "2"), ("format", "png"), ("width", "80")],
            2,
            "png",
        ),
    ];
    let mut ids = Vec::new();
    for (file, fields, _, _) in &cases {
        ids.push(app.upload_ok(&token, &fixture(file), fields).await);
    }
    for ((file, fields, frames, ext), id) in cases.iter().zip(&ids) {
        let done = app.wait_final(&token, id, PROCESSING).await;
        assert_eq!(done["status"], "done", "{file} {fields:?}: {done}");
        assert_eq!(done["frames"], *frames, "{file} {fields:?}");
        let (names, manifest) = zip_contents(&app.download(&token, id).await);
        assert_eq!(names.len(), frames + 1, "{file} {fields:?}");
        assert!(names[..*frames].iter().all(|n| n.ends_with(ext)));
        assert_eq!(manifest["count"], *frames);
    }
    // count=7 over 60 s: t_k = k * 60 / 7
    let (_, manifest) = zip_contents(&app.download(&token, &ids[1]).await);
    let stamps: Vec<f64> = manifest["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["timestamp"].as_f64().unwrap())
        .collect();
    for (k, t) in stamps.iter().enumerate() {
        assert!((t - k as f64 * 60.0 / 7.0).abs() < 1e-6, "{stamps:?}");
    }
    // width=80 keeps the aspect ratio of 160x120
    let zip = app.download(&token, &ids[3]).await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut png = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_index(0).unwrap(), &mut png).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (80, 60));
}

#[tokio::test]
async fn refused_uploads_leave_nothing_behind() {
    let config = NodeConfig {
        max_upload_bytes: Some(std::fs::metadata(fixture("v20")).unwrap().len() - 1000),
        ..NodeConfig::default()
    };
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;

    let refusals: [(&str, Fields, u16, &str); 7] = [
        ("text", &[], 415, "unsupported_media"),
        // declared length over the limit: refused before reading
        ("v60", &[], 413, "too_large"),
        // within the declared slack, caught while streaming
        ("v20", &[], 413, "too_large"),
        ("v20", &[("interval", "0.01")], 422, "invalid_input"),
        (
            "v20",
            &[("count", "3"), ("interval", "2")],
            422,
            "invalid_input",
        ),
        ("v20", &[("format", "gif")], 422, "invalid_input"),
        ("v20", &[("colour", "red")], 422, "invalid_input"),
    ];
    for (file, fields, status, code) in refusals {
        let r = app.upload(&token, &fixture(file), fields).await;
        assert_eq!(r.status(), status, "{file} {fields:?}");
        assert_eq!(error_code(r).await, code, "{file} {fields:?}");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("vp_media_failures_total{stage=\"probe\",kind=\"not_a_video\"} 1"),
        "{metrics}"
    );
    // options in the query are checked too
    let r = app
        .post(&token, "/api/v1/videos?width=3")
        .multipart(reqwest::multipart::Form::new().text("count", "2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // not multipart, no file field
    let r = app
        .post(&token, "/api/v1/videos")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "invalid_multipart");
    let r = app
        .post(&token, "/api/v1/videos")
        .multipart(reqwest::multipart::Form::new().text("count", "2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // cleanup of a refused upload runs just after the answer
    eventually(
        "refused uploads to be cleaned up",
        Duration::from_secs(10),
        || async {
            (app.media_files().is_empty() && app.count_rows("jobs").await == 0).then_some(())
        },
    )
    .await;
    let list: Value = app.get_json(&token, "/api/v1/videos").await;
    assert_eq!(list["videos"], Value::Array(vec![]));
}

#[tokio::test]
async fn idempotency_key_gives_the_same_video() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let send = |key: &'static str| {
        let bytes = std::fs::read(fixture("v20")).unwrap();
        let form = reqwest::multipart::Form::new().part(
            "video",
            reqwest::multipart::Part::bytes(bytes).file_name("v20.mp4"),
        );
        app.post(&token, "/api/v1/videos")
            .header("idempotency-key", key)
            .multipart(form)
            .send()
    };
    let first: Value = send("upload-1").await.unwrap().json().await.unwrap();
    let r = send("upload-1").await.unwrap();
    assert_eq!(r.status(), 202);
    let second: Value = r.json().await.unwrap();
    assert_eq!(first["video"]["id"], second["video"]["id"]);
    let other: Value = send("upload-2").await.unwrap().json().await.unwrap();
    assert_ne!(first["video"]["id"], other["video"]["id"]);
    assert_eq!(app.count_rows("jobs").await, 2);
    let r = send("has space").await.unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn list_is_newest_first_with_cursor_pages() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            app.upload_ok(&token, &fixture("v20"), &[("count", "1")])
                .await,
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/v1/videos?limit=2".to_owned();
    loop {
        let page: Value = app.get_json(&token, &path).await;
        let videos = page["videos"].as_array().unwrap();
        assert!(videos.len() <= 2);
        seen.extend(videos.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/videos?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=nonsense",
        "colour=red",
    ] {
        let path = format!("/api/v1/videos?{bad}");
        app.get_invalid_input(&token, &path).await;
    }
}

#[tokio::test]
async fn live_events_progress_and_not_ready_download() {
    let app = TestApp::spawn_with(NodeConfig::paced(), false).await;
    let token = app.user("ann@example.com").await;
    // 1500 frames: long enough to watch
    let id = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    let r = app
        .get(&token, &format!("/api/v1/videos/{id}/frames.zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "not_ready");

    let r = app
        .get(&token, &format!("/api/v1/videos/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut events: Vec<Value> = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    events
                        .push(serde_json::from_str::<Value>(data.trim()).unwrap()["video"].clone());
                }
            }
        }
    };
    tokio::time::timeout(PROCESSING, read)
        .await
        .expect("the event stream ends after the final state");
    let last = events.last().expect("events");
    assert_eq!(last["status"], "done");
    assert_eq!(last["frames"], 1500);
    let progress: Vec<f64> = events
        .iter()
        .map(|e| e["progress"].as_f64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    assert!(
        progress.iter().any(|p| *p > 0.0 && *p < 1.0),
        "intermediate progress was reported: {progress:?}"
    );
}

#[tokio::test]
async fn finished_media_expires_after_retention() {
    let mut app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "2")])
        .await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "done"
    );
    // eight days pass (retention is 7)
    app.db
        .client()
        .await
        .execute(
            "UPDATE jobs SET finished_at = now() - interval '8 days'",
            &[],
        )
        .await
        .unwrap();
    app.restart();
    eventually("the zip to expire", Duration::from_secs(30), || async {
        let v = app.video(&token, &id).await;
        v["download_url"].is_null().then_some(())
    })
    .await;
    let r = app
        .get(&token, &format!("/api/v1/videos/{id}/frames.zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "expired");
    assert!(app.media_files().is_empty());
    assert_eq!(
        app.video(&token, &id).await["status"],
        "done",
        "the row stays"
    );
}

type BodySender = tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>;

/// Starts an upload that keeps streaming until the sender is dropped, and
/// waits until the node has admitted it.
async fn slow_upload(
    app: &TestApp,
    token: &str,
    idempotency_key: Option<&str>,
) -> (
    BodySender,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut request = app
        .post(token, "/api/v1/videos")
        .multipart(streamed_form(body));
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = tokio::spawn(request.send());
    tx.send(Ok(bytes::Bytes::from_static(b"not a video yet")))
        .await
        .unwrap();
    // admitted
    app.wait_metric("vp_uploads_in_flight 1").await;
    (tx, response)
}

/// An upload body that is produced as it is sent: `chunks` of 1 MiB.
fn generated_body(chunks: usize) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1024 * 1024]);
    let stream =
        futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    reqwest::Body::wrap_stream(stream)
}

fn streamed_form(body: reqwest::Body) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::stream(body).file_name("big.mp4");
    reqwest::multipart::Form::new().part("video", part)
}

/// An upload without a valid session is refused with a JSON 401 even while
/// its body is still streaming.
#[tokio::test]
async fn an_upload_with_a_bad_token_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .post(app.url("/api/v1/videos"))
        .bearer_auth("garbage")
        .multipart(streamed_form(generated_body(16)))
        .send()
        .await
        .expect("an answer, not a broken connection");
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "unauthorized");
}

#[tokio::test]
async fn uploads_stream_with_bounded_memory() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let before = app.node.peak_rss_kib();
    const MIB: usize = 1024;
    let r = app
        .post(&token, "/api/v1/videos")
        .multipart(streamed_form(generated_body(MIB)))
        .send()
        .await
        .unwrap();
    // all of it was read and stored before ffprobe refused it
    assert_eq!(r.status(), 415);
    let grown_mib = (app.node.peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 64,
        "a {MIB} MiB upload grew the node's peak memory by {grown_mib} MiB"
    );
    eventually(
        "the refused upload to be removed",
        Duration::from_secs(10),
        || async { app.media_files().is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_node_at_its_upload_limit_answers_503_with_retry_after() {
    let config = NodeConfig::tuned("max_concurrent_uploads = 1\n");
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;

    let (tx, slow) = slow_upload(&app, &token, None).await;
    let r = app.upload(&token, &fixture("v20"), &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(error_code(r).await, "unavailable");

    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap().status(), 415);
    // the place is free again
    app.upload_ok(&token, &fixture("v20"), &[("count", "1")])
        .await;
}

#[tokio::test]
async fn deleting_a_running_video_stops_it_and_leaves_nothing() {
    let app = TestApp::spawn_with(NodeConfig::paced(), false).await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    eventually("the job to be running", PROCESSING, || async {
        let v = app.video(&token, &id).await;
        (v["status"] == "processing" && v["progress"].as_f64().unwrap() > 0.0).then_some(())
    })
    .await;
    assert_eq!(app.delete_video(&token, &id).await, 204);
    assert_eq!(
        app.get(&token, &format!("/api/v1/videos/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    eventually(
        "the worker to stop and the files to go",
        Duration::from_secs(30),
        || async {
            let stopped = app
                .node
                .log_lines()
                .iter()
                .any(|l| l.contains("stopped: cancelled") && l.contains(&id));
            (stopped && app.media_files().is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(app.count_rows("jobs").await, 0);
    assert!(
        app.metrics()
            .await
            .contains("vp_jobs_finished_total{outcome=\"cancelled\"} 1")
    );
}

#[tokio::test]
async fn a_retry_while_the_first_upload_streams_is_a_conflict() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let (tx, first) = slow_upload(&app, &token, Some("k-1")).await;
    // the first attempt's row exists once its file part began
    eventually(
        "the first upload's row",
        Duration::from_secs(10),
        || async { (app.count_rows("jobs").await == 1).then_some(()) },
    )
    .await;
    let bytes = std::fs::read(fixture("v20")).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "video",
        reqwest::multipart::Part::bytes(bytes).file_name("v20.mp4"),
    );
    let r = app
        .post(&token, "/api/v1/videos")
        .header("idempotency-key", "k-1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "upload_in_progress");
    drop(tx);
    assert_eq!(first.await.unwrap().unwrap().status(), 415);
}

#[tokio::test]
async fn a_client_that_stops_sending_gets_408_and_leaves_nothing() {
    let config = NodeConfig::tuned("upload_idle_secs = 1\n");
    let app = TestApp::spawn_with(config, false).await;
    let token = app.user("ann@example.com").await;
    let (tx, stalled) = slow_upload(&app, &token, None).await;
    let r = tokio::time::timeout(Duration::from_secs(30), stalled)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(error_code(r).await, "request_timeout");
    drop(tx);
    eventually(
        "the stalled upload to be removed",
        Duration::from_secs(10),
        || async {
            (app.media_files().is_empty() && app.count_rows("jobs").await == 0).then_some(())
        },
    )
    .await;
    assert!(app.metrics().await.contains("vp_uploads_in_flight 0"));
}
