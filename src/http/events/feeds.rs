//! One feed per user for all of that user's live event streams on this
//! node. The feed wakes when PostgreSQL's change feed says the user's videos
//! changed (never on a timer while the change feed is up), reads the changes
//! once, and hands them to every stream: a thousand streams of one user cost
//! the database what one does. It also checks its streams' tokens again when
//! a revocation or a disabled account is heard of, and every few seconds for
//! expiry (from the node's verified-token cache, so without a query), and
//! closes the streams whose token no longer holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::{Credentials, SharedAuthenticator};
use crate::db::{
    self,
    changes::{Changes, Topic},
    jobs::JobRow,
};
use crate::domain::{JobId, UserId};

/// How far each look at a user's videos reaches back before the newest
/// change it saw: a change is stamped with its transaction's start, so one
/// that commits late can carry an earlier time than one already seen. A new
/// stream is also given what its feed sent this long ago.
const OVERLAP: Duration = Duration::from_secs(5);
/// Most changes read in one query.
const BATCH: i64 = 100;
/// How often the videos are looked at while the change feed is down.
const POLL_WHILE_DOWN: Duration = Duration::from_secs(1);
/// How often the streams' tokens are checked for expiry.
const RECHECK: Duration = Duration::from_secs(1);
/// Changes a stream may fall behind by before it is closed (its client
/// reconnects and lists again).
const BACKLOG: usize = 256;

/// What a feed tells its streams.
#[derive(Debug, Clone)]
pub enum Update {
    Changed(Arc<JobRow>),
    /// A watched video is gone (deleted).
    Gone(JobId),
}

/// Too many streams for one user on this node.
#[derive(Debug, Clone, Copy)]
pub struct TooMany {
    pub limit: usize,
}

/// The feeds of this node, by user.
pub struct Feeds {
    pool: Pool,
    changes: Arc<Changes>,
    authenticator: SharedAuthenticator,
    per_user: usize,
    users: Mutex<HashMap<UserId, Weak<Feed>>>,
    /// Cancelled when the node drains: every stream ends (its client
    /// reconnects, to another node), so none holds the drain up.
    draining: CancellationToken,
}

struct Feed {
    user: UserId,
    inner: Mutex<FeedInner>,
    /// Ends the feed's task.
    stop: CancellationToken,
}

struct FeedInner {
    tx: broadcast::Sender<Update>,
    /// What was sent lately, for streams that join.
    recent: VecDeque<(Instant, Update)>,
    streams: HashMap<u64, Member>,
    next_id: u64,
}

struct Member {
    credentials: Credentials,
    video: Option<JobId>,
    close: CancellationToken,
}

/// One stream's place in its user's feed; leaves it when dropped.
pub struct Subscription {
    feed: Arc<Feed>,
    id: u64,
    /// What the feed sent shortly before the stream joined.
    pub replay: Vec<Update>,
    pub updates: broadcast::Receiver<Update>,
    /// Cancelled when the stream's token no longer holds.
    pub closed: CancellationToken,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.feed.inner.lock().unwrap();
        inner.streams.remove(&self.id);
        if inner.streams.is_empty() {
            self.feed.stop.cancel();
        }
    }
}

impl Feeds {
    pub fn new(
        pool: Pool,
        changes: Arc<Changes>,
        authenticator: SharedAuthenticator,
        per_user: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            changes,
            authenticator,
            per_user,
            users: Mutex::new(HashMap::new()),
            draining: CancellationToken::new(),
        })
    }

    /// Ends every stream, now and from now on: the node is going away.
    pub fn close_all(&self) {
        self.draining.cancel();
    }

    /// A place in `user`'s feed for a stream that presented `credentials`,
    /// watching one `video` or all of them.
    pub fn subscribe(
        self: &Arc<Self>,
        user: UserId,
        credentials: Credentials,
        video: Option<JobId>,
    ) -> Result<Subscription, TooMany> {
        // a feed whose last stream left is stopping: a new one is started
        loop {
            let feed = self.feed_of(user);
            if let Some(joined) = self.join(&feed, &credentials, video) {
                return joined;
            }
        }
    }

    /// A place in `feed`, checked under its lock (where streams join and
    /// leave); None when the feed is stopping.
    fn join(
        &self,
        feed: &Arc<Feed>,
        credentials: &Credentials,
        video: Option<JobId>,
    ) -> Option<Result<Subscription, TooMany>> {
        let mut inner = feed.inner.lock().unwrap();
        if feed.stop.is_cancelled() {
            return None;
        }
        if inner.streams.len() >= self.per_user {
            metrics::counter!("vp_event_streams_refused_total").increment(1);
            return Some(Err(TooMany {
                limit: self.per_user,
            }));
        }
        let id = inner.next_id;
        inner.next_id += 1;
        // a stream of a draining node ends as it starts
        let close = self.draining.child_token();
        inner.streams.insert(
            id,
            Member {
                credentials: credentials.clone(),
                video,
                close: close.clone(),
            },
        );
        let cutoff = Instant::now().checked_sub(OVERLAP);
        let replay = inner
            .recent
            .iter()
            .filter(|(at, _)| cutoff.is_none_or(|c| *at >= c))
            .map(|(_, u)| u.clone())
            .collect();
        let updates = inner.tx.subscribe();
        drop(inner);
        Some(Ok(Subscription {
            feed: feed.clone(),
            id,
            replay,
            updates,
            closed: close,
        }))
    }

    /// `user`'s running feed, or a new one.
    fn feed_of(self: &Arc<Self>, user: UserId) -> Arc<Feed> {
        let mut users = self.users.lock().unwrap();
        users.retain(|_, f| f.upgrade().is_some_and(|f| !f.stop.is_cancelled()));
        if let Some(feed) = users.get(&user).and_then(Weak::upgrade) {
            return feed;
        }
        let feed = self.start(user);
        users.insert(user, Arc::downgrade(&feed));
        feed
    }

    fn start(self: &Arc<Self>, user: UserId) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let feed = Arc::new(Feed {
            user,
            inner: Mutex::new(FeedInner {
                tx,
                recent: VecDeque::new(),
                streams: HashMap::new(),
                next_id: 0,
            }),
            stop: CancellationToken::new(),
        });
        let feeds = self.clone();
        let running = feed.clone();
        tokio::spawn(async move {
            let stop = running.stop.clone();
            tokio::select! {
                () = feeds.run(&running) => {}
                () = stop.cancelled() => {}
            }
        });
        feed
    }

    /// The feed's life: read changes when told of them, check tokens when a
    /// revocation is heard of and every [`RECHECK`].
    async fn run(&self, feed: &Feed) {
        metrics::gauge!("vp_event_feeds").increment(1.0);
        let _gone = scopeguard(|| metrics::gauge!("vp_event_feeds").decrement(1.0));
        let mut window = Window::default();
        let mut watched = HashSet::new();
        let mut auth_mark = self.changes.auth_mark();
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stamp = self.changes.stamp();
            if let Err(e) = self.look(feed, &mut window, &mut watched).await {
                tracing::warn!(user_id = %feed.user, error = %e, "event feed lookup failed");
            }
            let auth_heard = async {
                match auth_mark {
                    Some(mark) => {
                        self.changes.hear_auth_after(mark, Duration::MAX).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.changes.changed(Topic::Owner(feed.user), stamp, POLL_WHILE_DOWN) => {}
                () = auth_heard => {
                    auth_mark = self.changes.auth_mark();
                    self.recheck(feed).await;
                }
                _ = recheck.tick() => self.recheck(feed).await,
            }
        }
    }

    /// Reads what changed since the last look and sends it on.
    async fn look(
        &self,
        feed: &Feed,
        window: &mut Window,
        watched: &mut HashSet<JobId>,
    ) -> Result<(), db::DbError> {
        loop {
            let rows =
                db::jobs::changed_for_owner(&self.pool, feed.user, window.after, OVERLAP, BATCH)
                    .await?;
            let more = rows.len() as i64 == BATCH;
            for row in window.take_fresh(rows, more) {
                feed.send(Update::Changed(Arc::new(row)));
            }
            if !more {
                break;
            }
        }
        // watched videos that are gone end their streams
        *watched = feed.watched();
        if !watched.is_empty() {
            let ids: Vec<JobId> = watched.iter().copied().collect();
            let existing = db::jobs::existing_for_owner(&self.pool, feed.user, &ids).await?;
            for id in ids.iter().filter(|id| !existing.contains(id)) {
                feed.send(Update::Gone(*id));
            }
        }
        Ok(())
    }

    /// Checks every stream's token again; closes those that fail.
    async fn recheck(&self, feed: &Feed) {
        let members: Vec<(Credentials, CancellationToken)> = {
            let inner = feed.inner.lock().unwrap();
            inner
                .streams
                .values()
                .map(|m| (m.credentials.clone(), m.close.clone()))
                .collect()
        };
        // one check per distinct token
        let mut verdicts: HashMap<String, bool> = HashMap::new();
        for (credentials, close) in members {
            let Credentials::Bearer(token) = &credentials else {
                continue;
            };
            let holds = match verdicts.get(token) {
                Some(v) => *v,
                None => {
                    let v = match self.authenticator.authenticate(&credentials).await {
                        Ok(p) => p.user_id == feed.user,
                        // overloaded or the database away: the token may be fine
                        Err(crate::auth::AuthError::Busy | crate::auth::AuthError::Db(_)) => true,
                        Err(_) => false,
                    };
                    verdicts.insert(token.clone(), v);
                    v
                }
            };
            if !holds {
                metrics::counter!("vp_event_streams_closed_total", "reason" => "token")
                    .increment(1);
                close.cancel();
            }
        }
    }
}

impl Feed {
    fn send(&self, update: Update) {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        if let Some(cutoff) = now.checked_sub(OVERLAP) {
            while inner.recent.front().is_some_and(|(at, _)| *at < cutoff) {
                inner.recent.pop_front();
            }
        }
        inner.recent.push_back((now, update.clone()));
        // no receiver is not an error: the streams may all have gone
        let _ = inner.tx.send(update);
    }

    fn watched(&self) -> HashSet<JobId> {
        let inner = self.inner.lock().unwrap();
        inner.streams.values().filter_map(|m| m.video).collect()
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// What a feed has sent, so each change goes out once although consecutive
/// looks overlap.
#[derive(Default)]
struct Window {
    /// The change time last sent per video, within the overlap.
    sent: HashMap<JobId, DateTime<Utc>>,
    /// Where the next query starts; None: the last [`OVERLAP`] by the
    /// database's clock (the first look, and after a quiet spell).
    after: Option<(DateTime<Utc>, JobId)>,
}

impl Window {
    /// Keeps the rows not sent yet and moves the window on.
    fn take_fresh(&mut self, rows: Vec<JobRow>, more: bool) -> Vec<JobRow> {
        let last = rows.last().map(|j| (j.updated_at, j.id));
        let fresh: Vec<JobRow> = rows
            .into_iter()
            .filter(|job| self.sent.get(&job.id) != Some(&job.updated_at))
            .collect();
        for job in &fresh {
            self.sent.insert(job.id, job.updated_at);
        }
        if more {
            self.after = last;
            return fresh;
        }
        // the next look reaches back OVERLAP before the newest change seen
        let overlap = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
        let newest = self.sent.values().max().copied();
        self.after = newest.map(|t| (t - overlap, JobId(uuid::Uuid::nil())));
        if let Some((floor, _)) = self.after {
            self.sent.retain(|_, at| *at >= floor);
        }
        fresh
    }
}
