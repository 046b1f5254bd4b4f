//! What changed, as PostgreSQL tells every node (`NOTIFY vp_changes`, sent
//! by triggers at commit: see `migrations/V5__change_feed.sql`), so a node
//! can answer repeated reads from memory and still never serve what changed
//! before the read began.
//!
//! Every change seen is numbered. A reader takes a [`Stamp`] before it
//! queries and keeps it with what it read; the copy is good while no change
//! of its kind came after the stamp. A change is delivered only once
//! committed, so one delivered before the stamp is in what the query read.
//! While the feed is down (and until it is listening again) no stamp is
//! given and nothing counts as unchanged: without notifications a node
//! cannot know.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::DbResult;
use crate::domain::UserId;

const CHANNEL: &str = "vp_changes";
/// Users are spread over this many counters: two users sharing one only
/// drop each other's copies a little more often.
const SLOTS: usize = 1024;
/// How often the feed's connection is asked whether it still answers: a
/// connection cut without a word would otherwise look like a quiet one.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How long a ping may take before the feed counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before connecting again after the feed went down.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// When a read began: compare with [`Changes::unchanged`] later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64);

/// What a copy depends on.
#[derive(Debug, Clone, Copy)]
pub enum Topic {
    /// One user's videos and their notifications.
    Owner(UserId),
    /// Revoked tokens and disabled users.
    Auth,
}

/// The numbered changes this node has heard of.
pub struct Changes {
    /// The number of the last change (or reconnection) seen.
    seq: AtomicU64,
    /// The number at which the feed last started listening; `u64::MAX`
    /// while it is down.
    live_since: AtomicU64,
    /// By slot: the number of the last change to a user hashed there.
    owners: Box<[AtomicU64]>,
    auth: AtomicU64,
    /// How many `auth` notifications the feed brought (not counting this
    /// node's own touches), and a bell rung at each.
    auth_heard: AtomicU64,
    bell: Notify,
    /// Rung at every change, for [`Changes::changed`].
    any: Notify,
}

impl Default for Changes {
    /// Down until [`listen`] brings it up: nothing is ever unchanged.
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            live_since: AtomicU64::new(u64::MAX),
            owners: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            auth: AtomicU64::new(0),
            auth_heard: AtomicU64::new(0),
            bell: Notify::new(),
            any: Notify::new(),
        }
    }
}

impl Changes {
    /// The stamp for a read starting now, or None while the feed is down.
    pub fn stamp(&self) -> Option<Stamp> {
        let at = self.seq.load(SeqCst);
        (self.live_since.load(SeqCst) <= at).then_some(Stamp(at))
    }

    /// Whether nothing of `topic` changed after `stamp` and the feed stayed up.
    pub fn unchanged(&self, topic: Topic, stamp: Stamp) -> bool {
        self.live_since.load(SeqCst) <= stamp.0 && self.counter(topic).load(SeqCst) <= stamp.0
    }

    /// Records a change: from the feed, or a write of this node's own so
    /// that its next read sees it without waiting for the notification.
    pub fn touch(&self, topic: Topic) {
        let at = self.seq.fetch_add(1, SeqCst) + 1;
        self.counter(topic).fetch_max(at, SeqCst);
        self.any.notify_waiters();
    }

    /// Waits until `topic` changed after `stamp`; while the feed is down
    /// (no stamp), waits `poll` instead, since nothing would be heard.
    pub async fn changed(&self, topic: Topic, stamp: Option<Stamp>, poll: Duration) {
        let Some(stamp) = stamp else {
            tokio::time::sleep(poll).await;
            return;
        };
        loop {
            // registered before the look, so a ring in between is not lost
            let ring = self.any.notified();
            if !self.unchanged(topic, stamp) {
                return;
            }
            ring.await;
        }
    }

    /// A mark to wait on with [`Changes::hear_auth_after`]; None while the
    /// feed is down (nothing would be heard).
    pub fn auth_mark(&self) -> Option<u64> {
        self.stamp().map(|_| self.auth_heard.load(SeqCst))
    }

    /// Waits, at most `patience`, until the feed brings an `auth` change
    /// after `mark`. PostgreSQL tells every listening node at once, so once
    /// this node heard its own revocation, the others have been told too.
    pub async fn hear_auth_after(&self, mark: u64, patience: Duration) -> bool {
        let heard = async {
            loop {
                // registered before the look, so a ring in between is not lost
                let bell = self.bell.notified();
                if self.auth_heard.load(SeqCst) > mark {
                    return;
                }
                bell.await;
            }
        };
        tokio::time::timeout(patience, heard).await.is_ok()
    }

    fn counter(&self, topic: Topic) -> &AtomicU64 {
        match topic {
            Topic::Owner(user) => {
                let slot = user.0.as_u64_pair().1 as usize % SLOTS;
                &self.owners[slot]
            }
            Topic::Auth => &self.auth,
        }
    }

    fn went_down(&self) {
        self.live_since.store(u64::MAX, SeqCst);
        self.any.notify_waiters();
    }

    /// Every stamp taken before this is stale: changes may have been missed.
    fn came_up(&self) {
        let at = self.seq.fetch_add(1, SeqCst) + 1;
        self.live_since.store(at, SeqCst);
        self.any.notify_waiters();
    }

    fn apply(&self, payload: &str) {
        match payload {
            "auth" => {
                self.touch(Topic::Auth);
                self.auth_heard.fetch_add(1, SeqCst);
                self.bell.notify_waiters();
            }
            _ => match payload.strip_prefix("u:").and_then(UserId::parse) {
                Some(user) => self.touch(Topic::Owner(user)),
                // unknown news: drop every copy rather than guess
                None => self.came_up(),
            },
        }
    }
}

/// Starts listening to `url`'s change feed for as long as the node runs,
/// connecting again whenever the connection is lost.
pub fn listen(url: &str) -> DbResult<Arc<Changes>> {
    let mut target = super::target(url)?;
    // named, so an operator sees what the long-lived connection is
    target.config.application_name("videoproject changes");
    let changes = Arc::new(Changes::default());
    let feed = changes.clone();
    tokio::spawn(async move {
        loop {
            match follow(&target, &feed).await {
                Ok(()) => tracing::warn!("change feed closed; reads go to the database meanwhile"),
                Err(e) => {
                    tracing::warn!(error = %e, "change feed down; reads go to the database meanwhile")
                }
            }
            feed.went_down();
            tokio::time::sleep(RETRY_AFTER).await;
        }
    });
    Ok(changes)
}

/// One connection's life: LISTEN, then apply each notification until the
/// connection ends or stops answering pings.
async fn follow(target: &super::tls::Target, changes: &Changes) -> DbResult<()> {
    let (client, mut connection) = target
        .config
        .connect(target.tls.clone())
        .await
        .map_err(|e| target.explain(e))?;
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    // The connection yields notifications only to whoever drives it.
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "change feed connection failed");
                    break;
                }
            }
        }
    });
    let _stop_driver = AbortOnDrop(driver);
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    changes.came_up();
    tracing::info!("change feed listening");
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(payload) => changes.apply(&payload),
                None => return Ok(()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, client.simple_query("")).await {
                    Ok(answer) => { answer?; }
                    Err(_) => return Ok(()),
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Changes {
        let changes = Changes::default();
        changes.came_up();
        changes
    }

    #[test]
    fn nothing_is_unchanged_while_the_feed_is_down() {
        let changes = Changes::default();
        assert_eq!(changes.stamp(), None);
        let changes = up();
        let stamp = changes.stamp().expect("up");
        changes.went_down();
        assert_eq!(changes.stamp(), None);
        assert!(!changes.unchanged(Topic::Auth, stamp));
        // back up: what was read before may have missed changes
        changes.came_up();
        assert!(!changes.unchanged(Topic::Auth, stamp));
        assert!(changes.unchanged(Topic::Auth, changes.stamp().unwrap()));
    }

    #[test]
    fn a_change_after_the_stamp_spoils_only_its_topic() {
        let changes = up();
        let (a, b) = (UserId::new(), UserId::new());
        let stamp = changes.stamp().unwrap();
        assert!(changes.unchanged(Topic::Owner(a), stamp));
        changes.apply(&format!("u:{a}"));
        assert!(!changes.unchanged(Topic::Owner(a), stamp));
        assert!(changes.unchanged(Topic::Auth, stamp));
        // b may share a's slot: then it is dropped too, which is only slower
        let shares =
            changes.counter(Topic::Owner(a)).as_ptr() == changes.counter(Topic::Owner(b)).as_ptr();
        assert_eq!(changes.unchanged(Topic::Owner(b), stamp), !shares);
        // a change heard before the stamp is in what the read sees
        assert!(changes.unchanged(Topic::Owner(a), changes.stamp().unwrap()));
        changes.apply("auth");
        assert!(!changes.unchanged(Topic::Auth, stamp));
    }

    #[tokio::test]
    async fn a_revocation_waits_to_hear_itself() {
        let changes = Arc::new(up());
        let mark = changes.auth_mark().expect("up");
        // this node's own touch is not the feed
        changes.touch(Topic::Auth);
        assert!(
            !changes
                .hear_auth_after(mark, Duration::from_millis(20))
                .await
        );
        let feed = changes.clone();
        let heard =
            tokio::spawn(async move { feed.hear_auth_after(mark, Duration::from_secs(10)).await });
        changes.apply("auth");
        assert!(heard.await.unwrap());
        assert_eq!(
            Changes::default().auth_mark(),
            None,
            "nothing to wait for while down"
        );
    }

    #[test]
    fn unknown_news_spoils_everything() {
        let changes = up();
        let stamp = changes.stamp().unwrap();
        changes.apply("something new");
        assert!(!changes.unchanged(Topic::Auth, stamp));
        assert!(!changes.unchanged(Topic::Owner(UserId::new()), stamp));
    }
}
