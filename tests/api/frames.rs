//! A done video's frames on screen: the frames list, a frame, a thumbnail,
//! the contact sheet, their links, and who may see them.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{NodeConfig, TestApp, error_code, fixture};

const PROCESSING: Duration = Duration::from_secs(120);

/// Every page of a video's frames, `limit` at a time, with the header:
/// the frames, the count the pages gave and how many pages there were.
async fn all_frames(app: &TestApp, token: &str, id: &str, limit: u32) -> (Vec<Value>, u64, u32) {
    let mut frames = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/videos/{id}/frames?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json(token, &path).await;
        let got = page["frames"].as_array().unwrap();
        assert!(got.len() <= limit as usize);
        frames.extend(got.iter().cloned());
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (frames, page["count"].as_u64().unwrap(), pages),
        }
    }
}

/// The bytes of `name` in the zip.
fn zip_entry(zip: &[u8], name: &str) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut bytes = Vec::new();
    archive
        .by_name(name)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Each frame listed in order, `every` seconds apart, of `size`.
fn assert_listed(frames: &[Value], every: f64, size: (u64, u64)) {
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["index"], i as u64);
        assert_eq!(f["t"].as_f64().unwrap(), i as f64 * every, "{f}");
        assert_eq!(
            (f["width"].as_u64(), f["height"].as_u64()),
            (Some(size.0), Some(size.1))
        );
    }
}

/// GET `path` of video `id` with the header.
async fn get_video_path(app: &TestApp, token: &str, id: &str, path: &str) -> reqwest::Response {
    app.get(token, &format!("/api/v1/videos/{id}/{path}"))
        .send()
        .await
        .unwrap()
}

async fn get_anonymous_ok(app: &TestApp, link: &str) -> reqwest::Response {
    let r = app.get_anonymous(link).await;
    assert_eq!(r.status(), 200, "{link}");
    r
}

#[tokio::test]
async fn frames_are_listed_served_with_their_thumbnails_and_a_contact_sheet() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    // 40 frames, one every half second
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("interval", "0.5")])
        .await;
    let video = app.wait_final(&token, &id, PROCESSING).await;
    assert_eq!(video["status"], "done", "{video}");
    assert_eq!(video["frames_url"], format!("/api/v1/videos/{id}/frames"));
    let sheet_url = video["contact_sheet_url"].as_str().unwrap().to_owned();
    assert!(sheet_url.starts_with(&format!("/api/v1/videos/{id}/contact-sheet?token=")));

    // the list: every frame once, in time order, paged to the end
    let (frames, count, pages) = all_frames(&app, &token, &id, 15).await;
    assert_eq!((count, pages), (40, 3), "40 frames in 3 pages of 15");
    assert_eq!(frames.len(), 40);
    assert_listed(&frames, 0.5, (160, 120));
    let first = app
        .get_json(&token, &format!("/api/v1/videos/{id}/frames"))
        .await;
    assert_eq!(first["frames"].as_array().unwrap().len(), 40, "default 50");
    assert_eq!(first["next_cursor"], Value::Null);

    // a frame: the zip's own bytes, a JPEG of the listed size, by its link
    let zip = app.download(&token, &id).await;
    let f = &frames[7];
    let r = get_anonymous_ok(&app, f["url"].as_str().unwrap()).await;
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
    assert_eq!(bytes[..], zip_entry(&zip, "frame_00007.jpg")[..]);
    let picture = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((picture.width(), picture.height()), (160, 120));
    // with the header as well, and a client that has it gets a 304
    let r = app
        .get(&token, &format!("/api/v1/videos/{id}/frames/7"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // a thumbnail: a small JPEG at most 320 px wide
    let r = get_anonymous_ok(&app, f["thumbnail_url"].as_str().unwrap()).await;
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let thumb = r.bytes().await.unwrap();
    assert!(thumb.len() < 16 * 1024, "{} bytes", thumb.len());
    let thumb = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg).unwrap();
    assert!(thumb.width() <= 320 && thumb.width() > 0);

    // the contact sheet: one image, wider than a thumbnail (a grid)
    let r = get_anonymous_ok(&app, &sheet_url).await;
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let sheet = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert!(sheet.width() > 320 && sheet.height() > 0);

    // out of range
    for path in ["frames/40", "frames/40/thumbnail", "frames/x"] {
        let r = get_video_path(&app, &token, &id, path).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    for query in ["limit=0", "limit=201", "cursor=41", "cursor=x", "other=1"] {
        let path = format!("/api/v1/videos/{id}/frames?{query}");
        app.get_invalid_input(&token, &path).await;
    }
}

#[tokio::test]
async fn links_open_their_own_video_only_and_others_videos_are_not_found() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let mine = app
        .upload_ok(&ann, &fixture("v20"), &[("count", "4")])
        .await;
    let other = app
        .upload_ok(&ann, &fixture("v20"), &[("count", "3")])
        .await;
    let video = app.wait_final(&ann, &mine, PROCESSING).await;
    assert_eq!(video["status"], "done");
    assert_eq!(
        app.wait_final(&ann, &other, PROCESSING).await["status"],
        "done"
    );

    let sheet_url = video["contact_sheet_url"].as_str().unwrap();
    let token = sheet_url.split_once("?token=").unwrap().1;
    // the frames link opens the list too, and the list's links keep working
    let list: Value =
        get_anonymous_ok(&app, &format!("/api/v1/videos/{mine}/frames?token={token}"))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(list["count"], 4);
    get_anonymous_ok(&app, list["frames"][3]["url"].as_str().unwrap()).await;

    // another video, the zip, the API: refused
    for path in [
        format!("/api/v1/videos/{other}/contact-sheet?token={token}"),
        format!("/api/v1/videos/{other}/frames/0?token={token}"),
        format!("/api/v1/videos/{other}/frames?token={token}"),
        format!("/api/v1/videos/{mine}/frames.zip?token={token}"),
    ] {
        assert_eq!(app.get_anonymous(&path).await.status(), 401, "{path}");
    }
    let r = app
        .get(token, &format!("/api/v1/videos/{mine}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the API");
    // the zip's link opens no frames
    let zip_link = video["download_url"].as_str().unwrap();
    let zip_token = zip_link.split_once("?token=").unwrap().1;
    let r = app
        .get_anonymous(&format!(
            "/api/v1/videos/{mine}/contact-sheet?token={zip_token}"
        ))
        .await;
    assert_eq!(r.status(), 401);
    // and without a header nothing opens
    let r = app
        .get_anonymous(&format!("/api/v1/videos/{mine}/frames"))
        .await;
    assert_eq!(r.status(), 401);

    // another user's video, or none: 404 on every call
    let unknown = "0193a5b0-0000-7000-8000-000000000000";
    for id in [mine.as_str(), unknown, "not-an-id"] {
        for path in ["frames", "frames/0", "frames/0/thumbnail", "contact-sheet"] {
            let r = get_video_path(&app, &bob, id, path).await;
            assert_eq!(r.status(), 404, "{id}/{path}");
            assert_eq!(error_code(r).await, "not_found");
        }
    }
}

#[tokio::test]
async fn frames_are_not_ready_before_the_video_is_done_and_png_frames_are_png() {
    let app = TestApp::spawn_with(NodeConfig::paced(), false).await;
    let token = app.user("ann@example.com").await;
    let slow = app
        .upload_ok(&token, &fixture("v60_big"), &[("interval", "0.04")])
        .await;
    for path in ["frames", "frames/0", "frames/0/thumbnail", "contact-sheet"] {
        let r = get_video_path(&app, &token, &slow, path).await;
        assert_eq!(r.status(), 409, "{path}");
        assert_eq!(error_code(r).await, "not_ready");
    }
    let video = app.video(&token, &slow).await;
    assert_eq!(video["contact_sheet_url"], Value::Null);
    assert_eq!(video["frames_url"], Value::Null);
    assert_eq!(app.delete_video(&token, &slow).await, 204);

    let id = app
        .upload_ok(
            &token,
            &fixture("v20"),
            &[("count", "3"), ("format", "png")],
        )
        .await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "done"
    );
    let list = app
        .get_json(&token, &format!("/api/v1/videos/{id}/frames"))
        .await;
    let r = get_anonymous_ok(&app, list["frames"][2]["url"].as_str().unwrap()).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    let frame = r.bytes().await.unwrap();
    assert_eq!(
        frame[..],
        zip_entry(&app.download(&token, &id).await, "frame_00002.png")[..]
    );
    image::load_from_memory_with_format(&frame, image::ImageFormat::Png).unwrap();
    let r = get_anonymous_ok(&app, list["frames"][2]["thumbnail_url"].as_str().unwrap()).await;
    let thumb =
        image::load_from_memory_with_format(&r.bytes().await.unwrap(), image::ImageFormat::Jpeg)
            .unwrap();
    assert_eq!(thumb.width(), 160, "never enlarged");
}

#[tokio::test]
async fn a_video_finished_before_frame_indexes_lists_its_frames_from_its_zip() {
    let app = TestApp::spawn().await;
    let token = app.user("ann@example.com").await;
    let id = app
        .upload_ok(&token, &fixture("v20"), &[("count", "5"), ("width", "100")])
        .await;
    assert_eq!(
        app.wait_final(&token, &id, PROCESSING).await["status"],
        "done"
    );
    // as a video of before: the zip alone
    let beside = |p: &std::path::PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        p.to_string_lossy().contains(&id) && name.starts_with("frames-") && !name.ends_with(".zip")
    };
    let removed: Vec<_> = app.media_files().into_iter().filter(beside).collect();
    assert_eq!(removed.len(), 3, "index, thumbnails, sheet: {removed:?}");
    for p in &removed {
        std::fs::remove_file(p).unwrap();
    }

    let list = app
        .get_json(&token, &format!("/api/v1/videos/{id}/frames"))
        .await;
    assert_eq!(list["count"], 5);
    let frames = list["frames"].as_array().unwrap();
    let zip = app.download(&token, &id).await;
    assert_listed(frames, 4.0, (100, 76));
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["thumbnail_url"], Value::Null);
        let r = get_anonymous_ok(&app, f["url"].as_str().unwrap()).await;
        let bytes = r.bytes().await.unwrap();
        assert_eq!(bytes[..], zip_entry(&zip, &format!("frame_{i:05}.jpg"))[..]);
        let picture = image::load_from_memory(&bytes).unwrap();
        assert_eq!((picture.width(), picture.height()), (100, 76), "as listed");
    }
    for path in ["frames/0/thumbnail", "contact-sheet"] {
        let r = get_video_path(&app, &token, &id, path).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    // the index made is kept for the next request
    let kept = app.media_files().into_iter().filter(beside).count();
    assert_eq!(kept, 1);
}
