//! What each notification says: the email's text and the webhook's JSON.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::db::outbox::{NewNotification, NotificationKind};
use crate::domain::JobId;

pub fn job_failed(filename: &str, reason: &str) -> NewNotification {
    NewNotification {
        kind: NotificationKind::JobFailed,
        subject: format!("We could not extract frames from {filename}"),
        body: format!(
            "Hello,\n\nprocessing your video \"{filename}\" failed:\n\n    {reason}\n\n\
             Nothing else is needed from you; you can delete the video or upload it again.\n\n\
             The Video Project\n"
        ),
        filename: filename.to_owned(),
        reason: Some(reason.to_owned()),
    }
}

pub fn job_done(filename: &str) -> NewNotification {
    NewNotification {
        kind: NotificationKind::JobDone,
        subject: format!("Your frames of {filename} are ready"),
        body: format!(
            "Hello,\n\nthe frames of your video \"{filename}\" are ready to download.\n\nThe Video Project\n"
        ),
        filename: filename.to_owned(),
        reason: None,
    }
}

/// The webhook event for `n`. `delivery` is the outbox row's id: it stays
/// the same across retries, so a receiver can drop a repeat.
pub fn webhook_event(delivery: Uuid, job: JobId, n: &NewNotification) -> String {
    let mut video = json!({
        "id": job.to_string(),
        "filename": n.filename,
        "url": format!("/api/v1/videos/{job}"),
    });
    match n.kind {
        NotificationKind::JobFailed => {
            video["state"] = json!("failed");
            video["error"] = json!(n.reason);
        }
        NotificationKind::JobDone => {
            video["state"] = json!("done");
            video["download_url"] = json!(format!("/api/v1/videos/{job}/frames.zip"));
        }
    }
    json!({
        "id": delivery.to_string(),
        "type": n.kind.event_type(),
        "created_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "video": video,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_events_carry_the_video_and_a_stable_id() {
        let (delivery, job) = (Uuid::now_v7(), JobId::new());
        let failed: serde_json::Value = serde_json::from_str(&webhook_event(
            delivery,
            job,
            &job_failed("a.mp4", "no video"),
        ))
        .unwrap();
        assert_eq!(failed["id"], delivery.to_string());
        assert_eq!(failed["type"], "video.failed");
        assert_eq!(failed["video"]["id"], job.to_string());
        assert_eq!(failed["video"]["state"], "failed");
        assert_eq!(failed["video"]["error"], "no video");
        assert!(failed["video"].get("download_url").is_none());

        let done: serde_json::Value =
            serde_json::from_str(&webhook_event(delivery, job, &job_done("a.mp4"))).unwrap();
        assert_eq!(done["type"], "video.done");
        assert_eq!(done["video"]["filename"], "a.mp4");
        assert_eq!(
            done["video"]["download_url"],
            format!("/api/v1/videos/{job}/frames.zip")
        );
    }
}
