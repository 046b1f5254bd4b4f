use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, repository, wait_listening};

/// A real SMTP server (aiosmtpd) writing each message into a maildir.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let python = std::env::var("VP_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repository().join(".venv-smtp/bin/python"));
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start aiosmtpd with {} ({e}); run scripts/test",
                    python.display()
                )
            });
        wait_listening(port, "aiosmtpd");
        Self {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far: headers, and the body decoded from
    /// quoted-printable.
    pub fn messages(&self) -> Vec<String> {
        self.raw_messages()
            .iter()
            .map(|m| decode_quoted_printable(&String::from_utf8_lossy(m)))
            .collect()
    }

    fn raw_messages(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect()
    }
}

pub(crate) fn decode_quoted_printable(message: &str) -> String {
    if !message.contains("quoted-printable") {
        return message.to_owned();
    }
    let joined = message.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Subjects of the emails about an account (its links), not about a
/// video, in each language.
pub const ACCOUNT_SUBJECTS: [&str; 4] = [
    "Confirm your email address",
    "Set a new password",
    "Confirme seu endereço de e-mail",
    "Defina uma nova senha",
];

impl SmtpServer {
    /// The messages about videos received so far (not the account emails
    /// every sign-up brings).
    pub fn about_videos(&self) -> Vec<String> {
        self.raw_messages()
            .iter()
            .filter(|raw| {
                Email::parse(raw)
                    .is_some_and(|m| !ACCOUNT_SUBJECTS.iter().any(|s| m.subject.starts_with(s)))
            })
            .map(|m| decode_quoted_printable(&String::from_utf8_lossy(m)))
            .collect()
    }

    /// Waits for the first message about a video to arrive; returns it.
    pub async fn first_message(&self, what: &str) -> String {
        eventually(what, Duration::from_secs(30), || async {
            self.about_videos().into_iter().next()
        })
        .await
    }

    /// Waits for a message containing `needle`; returns it.
    pub async fn message_with(&self, needle: &str) -> String {
        eventually(needle, Duration::from_secs(30), || async {
            self.messages().into_iter().find(|m| m.contains(needle))
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One received email, read as a mail client reads it.
#[derive(Debug)]
pub struct Email {
    /// The whole message as it came (headers and encoded parts).
    pub raw: String,
    pub subject: String,
    /// The text/plain part, decoded; empty when there is none.
    pub text: String,
    /// The text/html part, decoded; empty when there is none.
    pub html: String,
    /// Parts with a Content-ID (images an HTML part shows by `cid:`).
    pub inline: Vec<InlinePart>,
}

#[derive(Debug)]
pub struct InlinePart {
    pub content_id: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Email {
    pub fn parse(raw: &[u8]) -> Option<Self> {
        use mail_parser::{MessageParser, MimeHeaders, PartType};
        let message = MessageParser::default().parse(raw)?;
        let mut email = Email {
            raw: String::from_utf8_lossy(raw).into_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            text: String::new(),
            html: String::new(),
            inline: Vec::new(),
        };
        for part in &message.parts {
            match &part.body {
                PartType::Text(t) => email.text = t.to_string(),
                PartType::Html(h) => email.html = h.to_string(),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    if let Some(id) = part.content_id() {
                        let content_type = part.content_type().map_or(String::new(), |c| {
                            format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default())
                        });
                        email.inline.push(InlinePart {
                            content_id: id.to_owned(),
                            content_type,
                            bytes: b.to_vec(),
                        });
                    }
                }
                _ => {}
            }
        }
        Some(email)
    }
}

impl SmtpServer {
    /// Every message received so far, parsed.
    pub fn emails(&self) -> Vec<Email> {
        self.raw_messages()
            .iter()
            .filter_map(|raw| Email::parse(raw))
            .collect()
    }

    /// Waits for an email whose decoded subject contains `needle`.
    pub async fn email_about(&self, needle: &str) -> Email {
        eventually(needle, Duration::from_secs(30), || async {
            self.emails()
                .into_iter()
                .find(|m| m.subject.contains(needle))
        })
        .await
    }
}
