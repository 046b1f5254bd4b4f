//! Sending one email: through SMTP (`VP_SMTP_URL`) or, with none configured,
//! into the log.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::db::outbox::Pending;

#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// No SMTP server configured: messages are written to the log.
    Log,
}

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("bad SMTP URL: {0}")]
    Url(String),
    #[error("bad sender address `{0}`")]
    From(String),
}

impl Mailer {
    /// Must run inside the tokio runtime (the SMTP pool spawns a task).
    pub fn new(smtp_url: Option<&str>, from: &str) -> Result<Self, MailerError> {
        let Some(url) = smtp_url else {
            return Ok(Mailer::Log);
        };
        let from: Mailbox = from
            .parse()
            .map_err(|_| MailerError::From(from.to_owned()))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailerError::Url(e.to_string()))?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        Ok(Mailer::Smtp { transport, from })
    }

    pub async fn send(&self, pending: &Pending) -> Result<(), String> {
        match self {
            Mailer::Log => {
                tracing::info!(to = %pending.recipient, subject = %pending.subject, body = %pending.body, "email (no SMTP configured)");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = pending
                    .recipient
                    .parse()
                    .map_err(|e| format!("bad recipient: {e}"))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&pending.subject)
                    // a stable id lets mail systems drop a duplicate if a crash
                    // between sending and marking sent makes us send twice
                    .message_id(Some(format!("<{}@videoproject>", pending.id)))
                    .header(ContentType::TEXT_PLAIN)
                    .body(pending.body.clone())
                    .map_err(|e| e.to_string())?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}
