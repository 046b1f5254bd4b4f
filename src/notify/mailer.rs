//! Sending one email: through SMTP (`VP_SMTP_URL`) or, with none configured,
//! into the log. An email with its facts goes as a plain-text and an HTML
//! part in the recipient's language (an inline image beside the HTML, as
//! `multipart/related`); a row a previous version wrote, as its plain text.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::render::{self, Rendered};
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

    /// Sends `pending`; the links of its text to the page start with `public_url`.
    pub async fn send(&self, pending: &Pending, public_url: &str) -> Result<(), String> {
        let rendered = pending.content.as_ref().map(|content| {
            render::render(
                content,
                pending.locale,
                public_url,
                pending.inline_image.is_some(),
            )
        });
        let subject = rendered.as_ref().map_or(&pending.subject, |r| &r.subject);
        match self {
            Mailer::Log => {
                let text = rendered.as_ref().map_or(&pending.body, |r| &r.text);
                tracing::info!(to = %pending.recipient, %subject, body = %text, "email (no SMTP configured)");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = pending
                    .recipient
                    .parse()
                    .map_err(|e| format!("bad recipient: {e}"))?;
                let builder = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject)
                    // a stable id lets mail systems drop a duplicate if a crash
                    // between sending and marking sent makes us send twice
                    .message_id(Some(format!("<{}@videoproject>", pending.id)));
                let message = match rendered {
                    Some(rendered) => {
                        builder.multipart(parts(rendered, pending.inline_image.clone()))
                    }
                    None => builder
                        .header(ContentType::TEXT_PLAIN)
                        .body(pending.body.clone()),
                }
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

/// The text and the HTML as alternatives; an image goes with the HTML,
/// which shows it by its `cid:`.
fn parts(rendered: Rendered, image: Option<Vec<u8>>) -> MultiPart {
    let text = SinglePart::plain(rendered.text);
    let html = SinglePart::html(rendered.html);
    let alternative = MultiPart::alternative().singlepart(text);
    match image {
        None => alternative.singlepart(html),
        Some(jpeg) => alternative.multipart(MultiPart::related().singlepart(html).singlepart(
            Attachment::new_inline(render::SHEET_CID.to_owned()).body(
                jpeg,
                ContentType::parse("image/jpeg").expect("a valid type"),
            ),
        )),
    }
}
