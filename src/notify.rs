//! Telling users what happened. Emails and webhook events are composed by
//! `message` and queued in the outbox (`db::outbox`) by the transaction that
//! causes them; the [`Notifier`] actor delivers them with retries and
//! back-off. Messages to the actor are only wake-ups: a lost one delays a
//! message until the next tick, no more.

pub mod mailer;
pub mod message;
pub mod render;
pub mod webhook;

use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use tracing::Instrument;

use crate::db::{self, outbox::Channel, outbox::Pending};
use crate::supervisor::Handle;
pub use mailer::Mailer;
pub use webhook::WebhookSender;

/// Hints the notifier that the outbox has mail; harmless if lost.
impl Handle<NotifierMsg> {
    pub fn wake(&self) {
        self.hint(NotifierMsg::Wake);
    }
}

/// How often the outbox is polled when nobody wakes the notifier.
const TICK: Duration = Duration::from_secs(5);
/// A claimed message is held this long before another node may retry it.
const CLAIM_HOLD: Duration = Duration::from_secs(120);
const BATCH: i64 = 20;
/// Deliveries of a batch in flight at once: a slow receiver does not hold
/// up everyone else's messages.
const PARALLEL: usize = 8;

pub struct Notifier;

#[derive(RactorMessage)]
pub enum NotifierMsg {
    /// Something was queued: deliver now.
    Wake,
}

#[derive(Clone)]
pub struct NotifierArgs {
    pub pool: Pool,
    pub mailer: Mailer,
    pub webhooks: WebhookSender,
    pub max_attempts: u32,
    /// Emails about videos an address not yet verified receives a day (0: none).
    pub unverified_per_day: u32,
    /// The page's address, where the emails' links to videos point.
    pub public_url: String,
}

pub struct NotifierState {
    args: NotifierArgs,
}

impl Actor for Notifier {
    type Msg = NotifierMsg;
    type State = NotifierState;
    type Arguments = NotifierArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NotifierArgs,
    ) -> Result<NotifierState, ActorProcessingErr> {
        myself.send_interval(TICK, || NotifierMsg::Wake);
        myself.cast(NotifierMsg::Wake)?;
        Ok(NotifierState { args })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: NotifierMsg,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NotifierMsg::Wake => {
                if let Err(e) = deliver_due(&state.args).await {
                    // the database may be briefly away; the next tick retries
                    tracing::warn!(error = %e, "outbox delivery pass failed");
                }
            }
        }
        Ok(())
    }
}

/// Delivers every due message, a batch at a time: what the notifier does
/// at each wake-up, callable on demand.
pub async fn deliver_due(args: &NotifierArgs) -> Result<(), db::DbError> {
    loop {
        let batch = db::outbox::claim_due(&args.pool, BATCH, CLAIM_HOLD).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let outcomes: Vec<Result<(), db::DbError>> = futures::stream::iter(batch)
            .map(|pending| deliver(args, pending))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        outcomes.into_iter().collect::<Result<(), _>>()?;
    }
}

/// One attempt at one message, and its outcome written back.
async fn deliver(args: &NotifierArgs, pending: Pending) -> Result<(), db::DbError> {
    let channel = pending.channel.as_str();
    let span =
        tracing::info_span!("notification", id = %pending.id, channel, attempt = pending.attempts);
    attempt(args, pending, channel).instrument(span).await
}

async fn attempt(
    args: &NotifierArgs,
    pending: Pending,
    channel: &'static str,
) -> Result<(), db::DbError> {
    if pending.channel == Channel::Email
        && pending.kind.is_about_a_video()
        && !db::outbox::may_email_unverified(&args.pool, pending.id, args.unverified_per_day)
            .await?
    {
        let why = withheld(args.unverified_per_day);
        db::outbox::mark_failed(
            &args.pool,
            pending.id,
            &why,
            Duration::ZERO,
            true,
            message::LINK_NOT_KEPT,
        )
        .await?;
        metrics::counter!("vp_notifications_total", "channel" => channel, "result" => "withheld")
            .increment(1);
        tracing::info!("email withheld: the address is not verified");
        return Ok(());
    }
    let sent = match pending.channel {
        Channel::Email => args.mailer.send(&pending, &args.public_url).await,
        Channel::Webhook => args.webhooks.send(&pending).await,
    };
    match sent {
        Ok(()) => {
            db::outbox::mark_sent(&args.pool, pending.id, message::LINK_NOT_KEPT).await?;
            metrics::counter!("vp_notifications_total", "channel" => channel, "result" => "sent")
                .increment(1);
            tracing::info!("notification sent");
        }
        Err(e) => {
            let give_up = pending.attempts as u32 >= args.max_attempts;
            let delay = backoff(pending.attempts as u32);
            db::outbox::mark_failed(
                &args.pool,
                pending.id,
                &e,
                delay,
                give_up,
                message::LINK_NOT_KEPT,
            )
            .await?;
            let result = if give_up { "gave_up" } else { "retry" };
            metrics::counter!("vp_notifications_total", "channel" => channel, "result" => result)
                .increment(1);
            tracing::warn!(error = %e, give_up, retry_in = ?delay, "notification not delivered");
        }
    }
    Ok(())
}

/// Why an email about a video was not sent (shown with the video).
fn withheld(per_day: u32) -> String {
    if per_day == 0 {
        "not sent: the address is not verified yet; open the link we emailed at sign-up".into()
    } else {
        format!(
            "not sent: the address is not verified yet, and until it is it gets at most \
             {per_day} emails about videos a day; open the link we emailed at sign-up"
        )
    }
}

/// 5 s, 10 s, 20 s, … capped at one hour.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    Duration::from_secs(secs.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delivery pass run on demand, against PostgreSQL and a real SMTP
    /// server: no timer, no actor.
    #[tokio::test]
    async fn a_delivery_pass_sends_each_due_email_once() {
        let database = crate::db::testing::database().await;
        let smtp = videoproject_test_support::SmtpServer::start();
        let links = crate::accounts::LinkPolicy {
            public_url: "http://videos.test".into(),
            verify_for: Duration::from_secs(3600),
            reset_for: Duration::from_secs(1800),
            per_day: 5,
        };
        crate::accounts::register(
            &database.pool,
            "ann@example.com",
            "correct horse battery",
            crate::domain::Locale::En,
            Some(&links),
        )
        .await
        .unwrap();
        let args = NotifierArgs {
            pool: database.pool.clone(),
            mailer: Mailer::new(Some(&smtp.url()), "videoproject@localhost").unwrap(),
            webhooks: WebhookSender::new(false).unwrap(),
            max_attempts: 3,
            unverified_per_day: 3,
            public_url: "http://videos.test".into(),
        };

        deliver_due(&args).await.unwrap();
        let sent = smtp.message_with("#verify=").await;
        assert!(sent.contains("ann@example.com"), "{sent}");
        assert!(sent.contains("http://videos.test/#verify="), "{sent}");
        // nothing is due any more: a second pass sends nothing
        deliver_due(&args).await.unwrap();
        assert_eq!(smtp.messages().len(), 1);
        let (waiting, _) = db::outbox::pending_summary(&database.pool).await.unwrap();
        assert_eq!(waiting, 0);
    }

    /// The emails about a video, rendered in the language of their
    /// recipient when sent, with the contact sheet the caller handed down.
    #[tokio::test]
    async fn video_emails_speak_the_recipient_s_language_and_carry_the_sheet() {
        use crate::domain::{FailureCode, JobId, Locale};
        use message::VideoFacts;

        let database = crate::db::testing::database().await;
        let smtp = videoproject_test_support::SmtpServer::start();
        let pool = &database.pool;
        let user = crate::accounts::register(
            pool,
            "bia@example.com",
            "correct horse battery",
            Locale::PtBr,
            None,
        )
        .await
        .unwrap();
        let args = NotifierArgs {
            pool: pool.clone(),
            mailer: Mailer::new(Some(&smtp.url()), "videoproject@localhost").unwrap(),
            webhooks: WebhookSender::new(false).unwrap(),
            max_attempts: 3,
            unverified_per_day: 3,
            public_url: "https://videos.test".into(),
        };
        let queue = |mail: crate::db::outbox::NewNotification, job: JobId| async move {
            let mut conn = pool.get().await.unwrap();
            let tx = conn.transaction().await.unwrap();
            db::outbox::insert_for_user(&tx, user.id, job, mail, false)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        };
        let uploaded_at =
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 2, 14, 5, 0).unwrap();
        let sheet: Vec<u8> = [0xFF, 0xD8, 0xFF, 0xE0]
            .into_iter()
            .chain(0..=255u8)
            .collect();
        let done = VideoFacts {
            id: JobId::new(),
            filename: "férias.mp4".into(),
            uploaded_at,
        };
        let expires = uploaded_at + chrono::Duration::days(7);
        queue(
            message::job_done(&done, 1234, expires, Some(sheet.clone())),
            done.id,
        )
        .await;
        deliver_due(&args).await.unwrap();

        let mail = smtp
            .email_about("Os quadros de férias.mp4 estão prontos")
            .await;
        let link = format!("https://videos.test/#/videos/{}", done.id);
        // minijinja escapes `/` in HTML text as `&#x2f;`, which reads as `/`
        let html = mail.html.replace("&#x2f;", "/");
        for part in [&mail.text, &html] {
            for want in [
                "1.234 quadros extraídos",
                "Enviado em 02/12/2026 14:05",
                "até 09/12/2026 14:05",
                "UTC",
                &link,
            ] {
                assert!(part.contains(want), "{want:?} in {part}");
            }
        }
        assert!(
            mail.raw.contains("multipart/alternative") && mail.raw.contains("multipart/related"),
            "{}",
            mail.raw
        );
        assert!(
            mail.html
                .contains(&format!("src=\"cid:{}\"", render::SHEET_CID)),
            "{}",
            mail.html
        );
        assert_eq!(mail.inline.len(), 1);
        assert_eq!(
            mail.inline[0].content_id.trim_matches(['<', '>']),
            render::SHEET_CID
        );
        assert_eq!(mail.inline[0].content_type, "image/jpeg");
        assert_eq!(mail.inline[0].bytes, sheet);
        // the image is not kept once sent
        let conn = pool.get().await.unwrap();
        let kept: i64 = conn
            .query_one(
                "SELECT count(*) FROM notifications WHERE inline_image IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 0);

        // the owner switches to English; a hostile file name fails
        db::users::update_preferences(
            pool,
            user.id,
            db::users::Preferences {
                locale: Some(Locale::En),
                ..Default::default()
            },
            "unused",
        )
        .await
        .unwrap();
        let hostile = "<script>alert(1)</script>.mp4";
        let failed = VideoFacts {
            id: JobId::new(),
            filename: hostile.into(),
            uploaded_at,
        };
        queue(
            message::job_failed(&failed, FailureCode::Corrupt, "moov atom not found"),
            failed.id,
        )
        .await;
        deliver_due(&args).await.unwrap();
        let mail = smtp.email_about("We could not extract frames from").await;
        assert_eq!(
            mail.subject,
            format!("We could not extract frames from {hostile}")
        );
        assert!(mail.text.contains(hostile), "{}", mail.text);
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(
            mail.html
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;.mp4"),
            "{}",
            mail.html
        );
        let html = mail.html.replace("&#x2f;", "/");
        for part in [&mail.text, &html] {
            assert!(part.contains("The file is damaged"), "{part}");
            assert!(part.contains("moov atom not found"), "{part}");
            assert!(part.contains("Uploaded Dec 2, 2026, 2:05 PM"), "{part}");
            assert!(
                part.contains(&format!("https://videos.test/#/videos/{}", failed.id)),
                "{part}"
            );
        }
        assert!(mail.inline.is_empty());
        assert!(!mail.raw.contains("multipart/related"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }
}
