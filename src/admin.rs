//! Operator commands that work on the database directly, from any machine
//! that reaches it: `videoproject jobs` lists jobs of every user, `jobs show
//! ID` shows one with its history, `--follow` watches it run; `user disable`
//! and `user enable` shut an account out and let it back in.

use std::fmt::Write as _;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::{self, jobs::JobRow};
use crate::domain::{Email, JobId};
use crate::jobs::JobState;

/// How often `--follow` looks at the job.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown state `{0}` (one of: uploading, queued, processing, done, failed, cancelled)")]
    State(String),
    #[error("no job {0}")]
    NoJob(String),
    #[error("no account {0}")]
    NoUser(String),
    #[error(transparent)]
    Db(#[from] db::DbError),
}

pub fn parse_state(raw: &str) -> Result<JobState, AdminError> {
    JobState::ALL
        .into_iter()
        .find(|s| s.as_str() == raw.trim())
        .ok_or_else(|| AdminError::State(raw.to_owned()))
}

fn percent(job: &JobRow) -> String {
    let p = if job.state == JobState::Done {
        1.0
    } else {
        job.progress
    };
    format!("{:.0}%", p * 100.0)
}

/// At most `max` characters of `s`, marked when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let kept: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

/// The newest `limit` jobs (in `state`, if given) as a table.
pub async fn list(pool: &Pool, state: Option<JobState>, limit: i64) -> Result<String, AdminError> {
    let jobs = db::jobs::list_all(pool, state, limit).await?;
    let mut out = format!(
        "{:<36}  {:<10}  {:>4}  {:>6}  {:>7}  {:<20}  {:<24}  {}\n",
        "ID", "STATE", "DONE", "FRAMES", "ATTEMPT", "CREATED", "OWNER", "FILE"
    );
    for (job, owner) in &jobs {
        let _ = writeln!(
            out,
            "{:<36}  {:<10}  {:>4}  {:>6}  {:>7}  {:<20}  {:<24}  {}",
            job.id,
            job.state.as_str(),
            percent(job),
            job.frames.map_or("-".into(), |f| f.to_string()),
            format!("{}/{}", job.attempts, job.max_attempts),
            job.created_at.format("%Y-%m-%d %H:%M:%S"),
            clip(owner, 24),
            clip(&job.filename, 40),
        );
    }
    if jobs.is_empty() {
        out.push_str("(no jobs)\n");
    }
    Ok(out)
}

/// One job: its fields, then every transition it went through.
pub async fn show(pool: &Pool, raw_id: &str) -> Result<String, AdminError> {
    let job = find(pool, raw_id).await?;
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "{name:<10} {value}");
    };
    field(&mut out, "id", job.id.to_string());
    field(&mut out, "owner", job.user_id.to_string());
    field(&mut out, "file", job.filename.clone());
    field(
        &mut out,
        "state",
        format!("{} ({})", job.state.as_str(), percent(&job)),
    );
    field(
        &mut out,
        "attempts",
        format!("{}/{}", job.attempts, job.max_attempts),
    );
    field(&mut out, "options", job.options.to_string());
    if let Some(size) = job.size_bytes {
        field(&mut out, "size", format!("{size} bytes"));
    }
    if let (Some(frames), Some(zip)) = (job.frames, job.zip_bytes) {
        field(
            &mut out,
            "result",
            format!("{frames} frames, {zip} bytes zipped"),
        );
    }
    if let Some(error) = &job.error {
        field(&mut out, "error", error.clone());
    }
    field(&mut out, "created", job.created_at.to_rfc3339());
    field(&mut out, "updated", job.updated_at.to_rfc3339());
    out.push_str("events:\n");
    for (from, to, node, attempt, detail) in db::jobs::list_events(pool, job.id).await? {
        let from = from.map_or("-", JobState::as_str);
        let _ = writeln!(
            out,
            "  {from:>10} -> {:<10}  attempt {attempt}  on {node}{}",
            to.as_str(),
            detail.map(|d| format!("  ({d})")).unwrap_or_default()
        );
    }
    Ok(out)
}

/// Prints a line each time the job's state or progress changes, until it
/// reaches a final state.
pub async fn follow(
    pool: &Pool,
    raw_id: &str,
    mut line: impl FnMut(&str),
) -> Result<(), AdminError> {
    let mut last = None;
    loop {
        let job = find(pool, raw_id).await?;
        let now = (job.state, percent(&job));
        if last.as_ref() != Some(&now) {
            let error = job
                .error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            line(&format!("{} {}{error}", now.0.as_str(), now.1));
            last = Some(now);
        }
        if job.state.is_terminal() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// Disables or enables the account with `email`.
pub async fn set_disabled(pool: &Pool, email: &str, disabled: bool) -> Result<(), AdminError> {
    let parsed = Email::parse(email).map_err(|_| AdminError::NoUser(email.to_owned()))?;
    if db::users::set_disabled(pool, &parsed, disabled).await? {
        Ok(())
    } else {
        Err(AdminError::NoUser(email.to_owned()))
    }
}

async fn find(pool: &Pool, raw_id: &str) -> Result<JobRow, AdminError> {
    let id = JobId::parse(raw_id.trim()).ok_or_else(|| AdminError::NoJob(raw_id.to_owned()))?;
    db::jobs::get(pool, id)
        .await?
        .ok_or_else(|| AdminError::NoJob(raw_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_clipping() {
        assert_eq!(parse_state("done").unwrap(), JobState::Done);
        assert!(parse_state("finished").is_err());
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a longer name", 6), "a lon…");
    }
}
