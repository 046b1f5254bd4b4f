//! What each notification says. An email is composed as its facts
//! ([`EmailContent`]), which the outbox stores as they are and the notifier
//! renders (`notify::render`) in the recipient's language when it sends it;
//! a webhook event, about a video, is its JSON in full (English, a contract
//! with machines).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::render;
use crate::db::outbox::{NewNotification, NotificationKind, WebhookEvent};
use crate::domain::{FailureCode, JobId, Locale};

/// What an account email's text becomes once it was sent or given up: the
/// link in it opens an account, and the outbox is no place to keep it.
pub const LINK_NOT_KEPT: &str = "(an account link; not kept once sent)";

/// What the database knows of a video when its outcome is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoFacts {
    pub id: JobId,
    pub filename: String,
    pub uploaded_at: DateTime<Utc>,
}

/// An email's facts, in no language yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmailContent {
    JobDone {
        video: VideoFacts,
        frames: u32,
        /// When the zip and the video are deleted.
        expires_at: DateTime<Utc>,
    },
    JobFailed {
        video: VideoFacts,
        code: FailureCode,
        /// The raw reason (ffmpeg's or ffprobe's words), shown as details.
        details: String,
    },
    VerifyEmail {
        link: String,
        valid_days: u64,
    },
    PasswordReset {
        link: String,
        valid_minutes: u64,
    },
}

/// A failed video's email (to its owner, always) and webhook event.
pub fn job_failed(video: &VideoFacts, code: FailureCode, reason: &str) -> NewNotification {
    let content = EmailContent::JobFailed {
        video: video.clone(),
        code,
        details: reason.to_owned(),
    };
    let webhook = webhook_event(NotificationKind::JobFailed, video, Some(reason));
    compose(NotificationKind::JobFailed, content, None, Some(webhook))
}

/// A video whose node went away on its every attempt.
pub fn job_interrupted(video: &VideoFacts, reason: &str) -> NewNotification {
    job_failed(video, FailureCode::Interrupted, reason)
}

/// A done video's email (sent to owners who asked for one) and webhook
/// event; `contact_sheet`, a JPEG, is shown inline in the email.
pub fn job_done(
    video: &VideoFacts,
    frames: u32,
    expires_at: DateTime<Utc>,
    contact_sheet: Option<Vec<u8>>,
) -> NewNotification {
    let content = EmailContent::JobDone {
        video: video.clone(),
        frames,
        expires_at,
    };
    let webhook = webhook_event(NotificationKind::JobDone, video, None);
    compose(
        NotificationKind::JobDone,
        content,
        contact_sheet,
        Some(webhook),
    )
}

/// The link that verifies a new account's address.
pub fn verify_email(link: &str, valid_days: u64) -> NewNotification {
    let content = EmailContent::VerifyEmail {
        link: link.to_owned(),
        valid_days,
    };
    // account emails are never webhook events
    compose(NotificationKind::VerifyEmail, content, None, None)
}

/// The link that sets a new password.
pub fn password_reset(link: &str, valid_minutes: u64) -> NewNotification {
    let content = EmailContent::PasswordReset {
        link: link.to_owned(),
        valid_minutes,
    };
    compose(NotificationKind::PasswordReset, content, None, None)
}

/// The row to queue: the facts, and an English plain-text rendering as
/// subject and body, which is what a node of the previous version sends
/// while a rolling deploy runs (its video links relative: it knows no
/// public address here).
fn compose(
    kind: NotificationKind,
    content: EmailContent,
    inline_image: Option<Vec<u8>>,
    webhook: Option<WebhookEvent>,
) -> NewNotification {
    let plain = render::render(&content, Locale::En, "", false);
    NewNotification {
        kind,
        subject: plain.subject,
        body: plain.text,
        content,
        inline_image,
        webhook,
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
fn webhook_event(kind: NotificationKind, video: &VideoFacts, reason: Option<&str>) -> WebhookEvent {
    let (id, job, filename) = (Uuid::now_v7(), video.id, &video.filename);
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

    fn video(job: JobId) -> VideoFacts {
        VideoFacts {
            id: job,
            filename: "a.mp4".into(),
            uploaded_at: Utc::now(),
        }
    }

    #[test]
    fn webhook_events_carry_the_video_and_a_stable_id() {
        let job = JobId::new();
        let (delivery, failed) =
            event(&job_failed(&video(job), FailureCode::NotAVideo, "no video"));
        assert_eq!(failed["id"], delivery.to_string());
        assert_eq!(failed["type"], "video.failed");
        assert_eq!(failed["video"]["id"], job.to_string());
        assert_eq!(failed["video"]["state"], "failed");
        assert_eq!(failed["video"]["error"], "no video");
        assert!(failed["video"].get("download_url").is_none());

        let done = job_done(&video(job), 3, Utc::now(), None);
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
    fn the_outbox_keeps_the_facts_and_an_english_fallback() {
        let failed = job_failed(
            &video(JobId::new()),
            FailureCode::Corrupt,
            "moov atom not found",
        );
        assert_eq!(failed.subject, "We could not extract frames from a.mp4");
        assert!(
            failed.body.contains("moov atom not found"),
            "{}",
            failed.body
        );
        let stored = serde_json::to_value(&failed.content).unwrap();
        assert_eq!(stored["kind"], "job_failed");
        assert_eq!(stored["code"], "corrupt");
        let back: EmailContent = serde_json::from_value(stored).unwrap();
        assert_eq!(back, failed.content);
    }

    #[test]
    fn account_emails_are_no_webhook_events() {
        assert!(verify_email("https://x/verify", 3).webhook.is_none());
        assert!(password_reset("https://x/reset", 30).webhook.is_none());
    }
}
