//! What each notification says: the email's text and, about a video, the
//! webhook's JSON. Composed here in full; the outbox (`db::outbox`) stores
//! them as they are.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::db::outbox::{NewNotification, NotificationKind, WebhookEvent};
use crate::domain::JobId;

/// What an account email's text becomes once it was sent or given up: the
/// link in it opens an account, and the outbox is no place to keep it.
pub const LINK_NOT_KEPT: &str = "(an account link; not kept once sent)";

pub fn job_failed(job: JobId, filename: &str, reason: &str) -> NewNotification {
    let kind = NotificationKind::JobFailed;
    NewNotification {
        kind,
        subject: format!("We could not extract frames from {filename}"),
        body: format!(
            "Hello,\n\nprocessing your video \"{filename}\" failed:\n\n    {reason}\n\n\
             Nothing else is needed from you; you can delete the video or upload it again.\n\n\
             The Video Project\n"
        ),
        webhook: Some(webhook_event(kind, job, filename, Some(reason))),
    }
}

pub fn job_done(job: JobId, filename: &str) -> NewNotification {
    let kind = NotificationKind::JobDone;
    NewNotification {
        kind,
        subject: format!("Your frames of {filename} are ready"),
        body: format!(
            "Hello,\n\nthe frames of your video \"{filename}\" are ready to download.\n\nThe Video Project\n"
        ),
        webhook: Some(webhook_event(kind, job, filename, None)),
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

/// Account emails are never webhook events.
fn account_email(kind: NotificationKind, subject: String, body: String) -> NewNotification {
    NewNotification {
        kind,
        subject,
        body,
        webhook: None,
    }
}

/// The `type` of a webhook event of `kind`.
fn event_type(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::JobFailed => "video.failed",
        NotificationKind::JobDone => "video.done",
        NotificationKind::VerifyEmail => "account.verify_email",
        NotificationKind::PasswordReset => "account.password_reset",
    }
}

/// The webhook event of `kind` about video `job`, under a new delivery id
/// (the outbox row's).
fn webhook_event(
    kind: NotificationKind,
    job: JobId,
    filename: &str,
    reason: Option<&str>,
) -> WebhookEvent {
    let id = Uuid::now_v7();
    let mut video = json!({
        "id": job.to_string(),
        "filename": filename,
        "url": format!("/api/v1/videos/{job}"),
    });
    match kind {
        NotificationKind::JobFailed => {
            video["state"] = json!("failed");
            video["error"] = json!(reason);
        }
        NotificationKind::JobDone => {
            video["state"] = json!("done");
            video["download_url"] = json!(format!("/api/v1/videos/{job}/frames.zip"));
        }
        NotificationKind::VerifyEmail | NotificationKind::PasswordReset => {}
    }
    let body = json!({
        "id": id.to_string(),
        "type": event_type(kind),
        "created_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "video": video,
    })
    .to_string();
    WebhookEvent {
        id,
        event_type: event_type(kind),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: &NewNotification) -> (Uuid, serde_json::Value) {
        let event = n.webhook.as_ref().expect("a video's event");
        (event.id, serde_json::from_str(&event.body).unwrap())
    }

    #[test]
    fn webhook_events_carry_the_video_and_a_stable_id() {
        let job = JobId::new();
        let (delivery, failed) = event(&job_failed(job, "a.mp4", "no video"));
        assert_eq!(failed["id"], delivery.to_string());
        assert_eq!(failed["type"], "video.failed");
        assert_eq!(failed["video"]["id"], job.to_string());
        assert_eq!(failed["video"]["state"], "failed");
        assert_eq!(failed["video"]["error"], "no video");
        assert!(failed["video"].get("download_url").is_none());

        let done = job_done(job, "a.mp4");
        assert_eq!(done.webhook.as_ref().unwrap().event_type, "video.done");
        let (_, done) = event(&done);
        assert_eq!(done["type"], "video.done");
        assert_eq!(done["video"]["filename"], "a.mp4");
        assert_eq!(
            done["video"]["download_url"],
            format!("/api/v1/videos/{job}/frames.zip")
        );
    }

    #[test]
    fn account_emails_are_no_webhook_events() {
        assert!(verify_email("https://x/verify", 3).webhook.is_none());
        assert!(password_reset("https://x/reset", 30).webhook.is_none());
    }
}
