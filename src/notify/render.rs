//! An email's facts in words: the subject, a plain-text and an HTML part,
//! in the recipient's language, from the templates in `templates/email/`
//! (one per kind and part, built into the binary). The HTML is
//! auto-escaped: a file name is whatever the uploader typed.

use std::sync::LazyLock;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, State};

use super::message::EmailContent;
use crate::domain::Locale;
use crate::i18n;

/// The `Content-ID` of the contact sheet shown inline in a done email.
pub const SHEET_CID: &str = "contact-sheet@videoproject";

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../templates/email/", $name)))),*]
    };
}

const TEMPLATES: [(&str, &str); 10] = templates!(
    "layout.html",
    "button.html",
    "job_done.txt",
    "job_done.html",
    "job_failed.txt",
    "job_failed.html",
    "verify_email.txt",
    "verify_email.html",
    "password_reset.txt",
    "password_reset.html",
);

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // escaping by the name's ending (minijinja's default): `.html` is
    // escaped, `.txt` is not; said here so it cannot change unseen
    env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
    for (name, source) in TEMPLATES {
        // the templates are ours and tested: a broken one fails the tests
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "email template does not parse");
        }
    }
    env.add_function("t", translate);
    env
});

/// `t("key", name=…, count=…)` in a template: the words of `key` in the
/// language of the context's `locale`.
fn translate(state: &State, key: &str, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let locale = state
        .lookup("locale")
        .and_then(|v| v.as_str().map(Locale::from_db))
        .unwrap_or_default();
    let count: Option<i64> = kwargs.get("count")?;
    let mut args = Vec::new();
    for name in kwargs.args().filter(|n| *n != "count") {
        args.push((name, kwargs.get::<Value>(name)?.to_string()));
    }
    kwargs.assert_all_used()?;
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(i18n::translate(locale, key, count, &args))
}

/// `content` in `locale`; links to the page start with `public_url`.
/// `with_sheet`: the contact sheet goes with the email, as [`SHEET_CID`].
pub fn render(
    content: &EmailContent,
    locale: Locale,
    public_url: &str,
    with_sheet: bool,
) -> Rendered {
    let (kind, subject_name, context) = match content {
        EmailContent::JobDone {
            video,
            frames,
            expires_at,
        } => (
            "job_done",
            Some(&video.filename),
            minijinja::context! {
                filename => &video.filename,
                uploaded => i18n::datetime(locale, video.uploaded_at),
                frames => frames,
                expires => i18n::datetime(locale, *expires_at),
                link => trusted_link(video_link(public_url, video)),
                sheet => with_sheet.then_some(SHEET_CID),
            },
        ),
        EmailContent::JobFailed {
            video,
            code,
            details,
        } => (
            "job_failed",
            Some(&video.filename),
            minijinja::context! {
                filename => &video.filename,
                uploaded => i18n::datetime(locale, video.uploaded_at),
                reason => i18n::lookup(locale, &format!("error.{}", code.as_str())),
                details => details,
                link => trusted_link(video_link(public_url, video)),
            },
        ),
        EmailContent::VerifyEmail { link, valid_days } => (
            "verify_email",
            None,
            minijinja::context! { link => trusted_link(link.clone()), days => valid_days },
        ),
        EmailContent::PasswordReset {
            link,
            valid_minutes,
        } => (
            "password_reset",
            None,
            minijinja::context! { link => trusted_link(link.clone()), minutes => valid_minutes },
        ),
    };
    let name_arg: Vec<(&str, &str)> = subject_name
        .map(|n| ("name", n.as_str()))
        .into_iter()
        .collect();
    let subject = i18n::translate(locale, &format!("email.{kind}.subject"), None, &name_arg);
    let context = minijinja::context! { locale => locale.as_str(), subject => &subject, ..context };
    Rendered {
        text: part(&format!("{kind}.txt"), &context),
        html: part(&format!("{kind}.html"), &context),
        subject,
    }
}

/// Where the page shows the video.
fn video_link(public_url: &str, video: &super::message::VideoFacts) -> String {
    format!("{public_url}/#/videos/{}", video.id)
}

/// A link of ours, not escaped again: the page's configured address (a
/// URL checked when the settings load, which percent-encodes `"`, `<` and
/// `>`) followed by an id or a hex secret. Escaped, its slashes would read
/// `&#x2f;`, which mail clients show as typed.
fn trusted_link(link: String) -> Value {
    Value::from_safe_string(link)
}

fn part(name: &str, context: &Value) -> String {
    ENV.get_template(name)
        .and_then(|t| t.render(context))
        .unwrap_or_else(|e| {
            // the templates are ours and their tests render each; should one
            // still fail, the email says less rather than nothing
            tracing::error!(template = name, error = %e, "email template failed");
            String::new()
        })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::{FailureCode, JobId};
    use crate::notify::message::VideoFacts;

    fn video(name: &str) -> VideoFacts {
        VideoFacts {
            id: JobId::new(),
            filename: name.into(),
            uploaded_at: Utc.with_ymd_and_hms(2026, 12, 2, 14, 5, 0).unwrap(),
        }
    }

    fn every_kind() -> Vec<EmailContent> {
        vec![
            EmailContent::JobDone {
                video: video("a.mp4"),
                frames: 1234,
                expires_at: Utc.with_ymd_and_hms(2026, 12, 9, 14, 5, 0).unwrap(),
            },
            EmailContent::JobFailed {
                video: video("a.mp4"),
                code: FailureCode::Corrupt,
                details: "moov atom not found".into(),
            },
            EmailContent::VerifyEmail {
                link: "https://v.example/#verify=S".into(),
                valid_days: 7,
            },
            EmailContent::PasswordReset {
                link: "https://v.example/#reset=S".into(),
                valid_minutes: 30,
            },
        ]
    }

    #[test]
    fn every_kind_renders_in_every_language_without_a_missing_word() {
        for content in every_kind() {
            for locale in Locale::ALL {
                let r = render(&content, locale, "https://v.example", true);
                for (part, text) in [
                    ("subject", &r.subject),
                    ("text", &r.text),
                    ("html", &r.html),
                ] {
                    assert!(text.len() > 20, "{locale} {part}: {text}");
                    // a key left as itself, or a placeholder left unfilled
                    assert!(!text.contains("email."), "{locale} {part}: {text}");
                    assert!(
                        !text.contains("{name}")
                            && !text.contains("{count}")
                            && !text.contains("{time}"),
                        "{locale} {part}: {text}"
                    );
                }
                assert!(r.html.starts_with("<!DOCTYPE html>"), "{}", r.html);
                assert!(r.html.contains(&format!("lang=\"{locale}\"")));
            }
        }
    }

    #[test]
    fn a_done_email_has_the_facts_in_the_language() {
        let done = &every_kind()[0];
        let EmailContent::JobDone { video, .. } = done else {
            unreachable!()
        };
        let link = format!("https://v.example/#/videos/{}", video.id);
        let en = render(done, Locale::En, "https://v.example", true);
        assert_eq!(en.subject, "Your frames of a.mp4 are ready");
        for want in [
            "1,234 frames extracted",
            "Dec 2, 2026, 2:05 PM",
            "Dec 9, 2026, 2:05 PM",
            "UTC",
            &link,
        ] {
            assert!(en.text.contains(want), "{want} in {}", en.text);
            assert!(en.html.contains(want), "{want} in {}", en.html);
        }
        assert!(en.html.contains(&format!("src=\"cid:{SHEET_CID}\"")));
        let pt = render(done, Locale::PtBr, "https://v.example", false);
        assert_eq!(pt.subject, "Os quadros de a.mp4 estão prontos");
        for want in [
            "1.234 quadros extraídos",
            "02/12/2026 14:05",
            "09/12/2026 14:05",
            &link,
        ] {
            assert!(pt.text.contains(want), "{want} in {}", pt.text);
        }
        assert!(!pt.html.contains("cid:"), "no sheet, no image");
    }

    #[test]
    fn a_failed_email_says_why_in_words_and_keeps_the_details() {
        let failed = &every_kind()[1];
        let pt = render(failed, Locale::PtBr, "https://v.example", false);
        assert!(pt.text.contains("O arquivo está danificado"), "{}", pt.text);
        assert!(
            pt.text.contains("Detalhes: moov atom not found"),
            "{}",
            pt.text
        );
        assert!(
            pt.html.contains("<summary>Detalhes</summary>"),
            "{}",
            pt.html
        );
        let en = render(failed, Locale::En, "https://v.example", false);
        assert!(en.text.contains("The file is damaged"), "{}", en.text);
        assert!(en.html.contains("moov atom not found"));
    }

    #[test]
    fn a_file_name_is_escaped_in_html_and_verbatim_in_text() {
        let hostile = "<script>alert(1)</script>.mp4";
        let content = EmailContent::JobFailed {
            video: video(hostile),
            code: FailureCode::NotAVideo,
            details: "<b>x</b>".into(),
        };
        let r = render(&content, Locale::En, "https://v.example", false);
        assert!(r.text.contains(hostile), "{}", r.text);
        assert!(r.subject.contains(hostile));
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(
            r.html
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;.mp4"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<b>x</b>"));
    }
}
