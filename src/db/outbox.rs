//! The notification outbox. Rows are written in the transaction that causes
//! them, one per channel (email, webhook), as `notify::message` composed
//! them (nothing here writes a message), and delivered by the notifier; a
//! claim lock keeps two nodes from sending the same row.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use postgres_types::Json;

use super::DbResult;
use crate::domain::{JobId, Locale, UserId};
use crate::notify::message::EmailContent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    JobFailed,
    JobDone,
    /// A link that verifies the address (email only).
    VerifyEmail,
    /// A link that sets a new password (email only).
    PasswordReset,
}

impl NotificationKind {
    fn as_str(self) -> &'static str {
        match self {
            NotificationKind::JobFailed => "job_failed",
            NotificationKind::JobDone => "job_done",
            NotificationKind::VerifyEmail => "verify_email",
            NotificationKind::PasswordReset => "password_reset",
        }
    }

    fn from_db(s: &str) -> Self {
        match s {
            "job_done" => NotificationKind::JobDone,
            "verify_email" => NotificationKind::VerifyEmail,
            "password_reset" => NotificationKind::PasswordReset,
            _ => NotificationKind::JobFailed,
        }
    }

    /// About a video: held to the daily cap of an unverified address.
    pub fn is_about_a_video(self) -> bool {
        matches!(
            self,
            NotificationKind::JobFailed | NotificationKind::JobDone
        )
    }
}

/// How a notification reaches its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    fn from_db(s: &str) -> Self {
        if s == "webhook" {
            Channel::Webhook
        } else {
            Channel::Email
        }
    }
}

/// A message to queue for a user, as `notify::message` composed it: an
/// email to their address and, about a video, the event for their webhook
/// (queued only when they set one).
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub kind: NotificationKind,
    /// An English plain-text rendering (what nodes of the previous version send).
    pub subject: String,
    pub body: String,
    /// The email's facts, rendered in the recipient's language when sent.
    pub content: EmailContent,
    /// An image the email shows inline (a done video's contact sheet).
    pub inline_image: Option<Vec<u8>>,
    pub webhook: Option<WebhookEvent>,
}

/// A webhook event, ready to send.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    /// The outbox row's id, which the event carries: it stays the same
    /// across retries, so a receiver can drop a repeat.
    pub id: Uuid,
    /// Its `type`, kept as the row's subject.
    pub event_type: &'static str,
    /// The JSON sent.
    pub body: String,
}

/// A message due for delivery, claimed by this node.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub channel: Channel,
    /// An email address or a webhook URL.
    pub recipient: String,
    /// The email subject, or the webhook event type.
    pub subject: String,
    /// The email text, or the webhook's JSON.
    pub body: String,
    pub attempts: i32,
    /// The owner's current webhook key (webhooks only).
    pub secret: Option<String>,
    /// The recipient's language now.
    pub locale: Locale,
    /// The email's facts; none in a row a previous version wrote (its
    /// subject and body are sent as they are) or once an account link's
    /// email was sent.
    pub content: Option<EmailContent>,
    pub inline_image: Option<Vec<u8>>,
}

/// Where a job's notification stands, for the video's API answer.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `job_failed` or `job_done`.
    pub kind: &'static str,
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// `pending`, `sent` or `gave_up`.
    pub status: &'static str,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Notifications not yet delivered nor given up, and the age in seconds of
/// the oldest of them (0 when there is none).
pub async fn pending_summary(pool: &Pool) -> DbResult<(i64, f64)> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
             FROM notifications WHERE sent_at IS NULL AND gave_up_at IS NULL",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The notifications of `jobs`, oldest first, by job.
pub async fn deliveries_by_job(
    pool: &Pool,
    jobs: &[JobId],
) -> DbResult<HashMap<JobId, Vec<Delivery>>> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.0).collect();
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT job_id, kind, attempts, last_error, sent_at IS NOT NULL, gave_up_at IS NOT NULL, channel
             FROM notifications WHERE job_id = ANY($1) ORDER BY created_at",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let status = match (r.get::<_, bool>(4), r.get::<_, bool>(5)) {
                (true, _) => "sent",
                (false, true) => "gave_up",
                (false, false) => "pending",
            };
            let delivery = Delivery {
                kind: NotificationKind::from_db(r.get(1)).as_str(),
                channel: Channel::from_db(r.get(6)).as_str(),
                status,
                attempts: r.get(2),
                last_error: r.get(3),
            };
            (JobId(r.get(0)), delivery)
        })
        .fold(HashMap::new(), |mut by_job, (job, delivery)| {
            by_job.entry(job).or_insert_with(Vec::new).push(delivery);
            by_job
        }))
}

/// Queues `mail` for `user`: the email (with `only_if_opted_in`, only when
/// the user asked for success emails) and, when the user has a webhook, its
/// event.
pub async fn insert_for_user(
    tx: &Transaction<'_>,
    user: UserId,
    job: JobId,
    mail: NewNotification,
    only_if_opted_in: bool,
) -> DbResult<()> {
    tx.execute(
        "INSERT INTO notifications
             (id, user_id, job_id, kind, channel, recipient, subject, body, content, inline_image)
         SELECT $1, u.id, $3, $4, 'email', u.email, $5, $6, $8, $9 FROM users u
         WHERE u.id = $2 AND (NOT $7 OR u.notify_on_success)",
        &[
            &Uuid::now_v7(),
            &user.0,
            &job.0,
            &mail.kind.as_str(),
            &mail.subject,
            &mail.body,
            &only_if_opted_in,
            &Json(&mail.content),
            &mail.inline_image,
        ],
    )
    .await?;
    let Some(event) = &mail.webhook else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO notifications (id, user_id, job_id, kind, channel, recipient, subject, body)
         SELECT $1, u.id, $3, $4, 'webhook', u.webhook_url, $5, $6 FROM users u
         WHERE u.id = $2 AND u.webhook_url IS NOT NULL",
        &[
            &event.id,
            &user.0,
            &job.0,
            &mail.kind.as_str(),
            &event.event_type,
            &event.body,
        ],
    )
    .await?;
    Ok(())
}

/// Queues an account email (a link) for `user`, unless the address got
/// `per_day` of that kind in the last day already (reset requests, which
/// anyone may make, cannot use up the verification emails); true when
/// queued. The user's row is locked meanwhile, so concurrent requests count
/// each other.
pub async fn insert_account_email(
    tx: &Transaction<'_>,
    user: UserId,
    mail: &NewNotification,
    per_day: u32,
) -> DbResult<bool> {
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user.0])
        .await?;
    let queued = tx
        .execute(
            "INSERT INTO notifications (id, user_id, kind, channel, recipient, subject, body, content)
             SELECT $1, u.id, $3, 'email', u.email, $4, $5, $7 FROM users u
             WHERE u.id = $2 AND (
                 SELECT count(*) FROM notifications n
                 WHERE n.user_id = u.id AND n.channel = 'email'
                   AND n.kind = $3
                   AND n.created_at > now() - interval '1 day') < $6",
            &[
                &Uuid::now_v7(),
                &user.0,
                &mail.kind.as_str(),
                &mail.subject,
                &mail.body,
                &i64::from(per_day),
                &Json(&mail.content),
            ],
        )
        .await?;
    Ok(queued == 1)
}

/// Whether a video's email may go to its address now: always once the
/// address is verified; before, at most `per_day` a day (none with
/// `per_day` 0). Counted are the emails sent in the last day and those
/// queued before this one that are being delivered right now.
pub async fn may_email_unverified(pool: &Pool, id: Uuid, per_day: u32) -> DbResult<bool> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT u.email_verified_at IS NOT NULL OR (
                 SELECT count(*) FROM notifications n
                 WHERE n.user_id = u.id AND n.channel = 'email' AND n.id <> m.id
                   AND n.kind IN ('job_failed', 'job_done')
                   AND (n.sent_at > now() - interval '1 day'
                        OR (n.id < m.id AND n.sent_at IS NULL AND n.gave_up_at IS NULL
                            AND n.locked_until > now()))) < $2
             FROM notifications m JOIN users u ON u.id = m.user_id WHERE m.id = $1",
            &[&id, &i64::from(per_day)],
        )
        .await?;
    // an email whose user is gone goes nowhere anyway
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Claims up to `limit` due messages for `hold` (another node skips them meanwhile).
pub async fn claim_due(pool: &Pool, limit: i64, hold: Duration) -> DbResult<Vec<Pending>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "UPDATE notifications SET locked_until = now() + make_interval(secs => $2), attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM notifications
                 WHERE sent_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
                   AND (locked_until IS NULL OR locked_until < now())
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, recipient, subject, body, attempts, channel,
                 (SELECT webhook_secret FROM users u WHERE u.id = notifications.user_id), kind,
                 (SELECT locale FROM users u WHERE u.id = notifications.user_id), content,
                 inline_image",
            &[&limit, &hold.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            id: r.get(0),
            recipient: r.get(1),
            subject: r.get(2),
            body: r.get(3),
            attempts: r.get(4),
            channel: Channel::from_db(r.get(5)),
            secret: r.get(6),
            kind: NotificationKind::from_db(r.get(7)),
            locale: r
                .get::<_, Option<&str>>(8)
                .map_or(Locale::En, Locale::from_db),
            // facts no version of ours can read are sent as the plain text beside them
            content: r
                .get::<_, Option<serde_json::Value>>(9)
                .and_then(|v| serde_json::from_value(v).ok()),
            inline_image: r.get(10),
        })
        .collect())
}

/// Records a delivery. An account email's text becomes `scrubbed` and its
/// facts go: the link in them opens an account, and the outbox is no place
/// to keep it. An inline image is needed no more.
pub async fn mark_sent(pool: &Pool, id: Uuid, scrubbed: &str) -> DbResult<()> {
    let conn = pool.get().await?;
    conn.execute(
        "UPDATE notifications SET sent_at = now(), locked_until = NULL, last_error = NULL,
             body = CASE WHEN kind IN ('verify_email', 'password_reset') THEN $2 ELSE body END,
             content = CASE WHEN kind IN ('verify_email', 'password_reset') THEN NULL ELSE content END,
             inline_image = NULL
         WHERE id = $1",
        &[&id, &scrubbed],
    )
    .await?;
    Ok(())
}

/// Records a failed delivery: try again after `delay`, or give up for good
/// (an account email's text then becomes `scrubbed`, as once sent).
pub async fn mark_failed(
    pool: &Pool,
    id: Uuid,
    error: &str,
    delay: Duration,
    give_up: bool,
    scrubbed: &str,
) -> DbResult<()> {
    let conn = pool.get().await?;
    conn.execute(
        "UPDATE notifications SET locked_until = NULL, last_error = $2,
             next_attempt_at = now() + make_interval(secs => $3),
             gave_up_at = CASE WHEN $4 THEN now() END,
             body = CASE WHEN $4 AND kind IN ('verify_email', 'password_reset') THEN $5 ELSE body END,
             content = CASE WHEN $4 AND kind IN ('verify_email', 'password_reset') THEN NULL ELSE content END,
             inline_image = CASE WHEN $4 THEN NULL ELSE inline_image END
         WHERE id = $1",
        &[&id, &error, &delay.as_secs_f64(), &give_up, &scrubbed],
    )
    .await?;
    Ok(())
}
