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

/// The link that verifies a new account's address.
pub fn verify_email(link: &str, valid_days: u64) -> NewNotification {
    account_email(
        NotificationKind::VerifyEmail,
        "Confirm your email address for The Video Project".into(),
        format!(
            "Hello,\n\nan account of The Video Project was made with this address. \
             To confirm it is yours, open this link within {valid_days} days:\n\n    {link}\n\n\
             Until then we send at most a few emails about your videos a day.\n\
             If you did not sign up, ignore this email: nothing more will come.\n\n\
             The Video Project\n"
        ),
    )
}

/// The link that sets a new password.
pub fn password_reset(link: &str, valid_minutes: u64) -> NewNotification {
    account_email(
        NotificationKind::PasswordReset,
        "Set a new password for The Video Project".into(),
        format!(
            "Hello,\n\nsomeone asked to set a new password for the account of this address. \
             To choose one, open this link within {valid_minutes} minutes; it works once:\n\n    {link}\n\n\
             Setting it signs out every device signed in to the account.\n\
             If you did not ask, ignore this email: your password stays as it is.\n\n\
             The Video Project\n"
        ),
    )
}

fn account_email(kind: NotificationKind, subject: String, body: String) -> NewNotification {
    NewNotification {
        kind,
        subject,
        body,
        filename: String::new(),
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
        // account emails are never webhook events
        NotificationKind::VerifyEmail | NotificationKind::PasswordReset => {}
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
