//! Pages of a user's videos with their notifications, kept in memory until
//! the change feed says something of that user's changed. A page open in a
//! few browsers, or a client polling the list, costs the database one read
//! per change instead of one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::DbResult;
use super::changes::{Changes, Stamp, Topic};
use super::jobs::{self, JobRow, ListFilter};
use super::outbox::{self, Delivery};
use crate::budgeted::Budgeted;
use crate::domain::{JobId, UserId};

/// How many rows all kept pages may hold together (a row is ~1 KB); each
/// page counts one more, so that empty pages are bounded too.
const MAX_ROWS: usize = 20_000;
/// A page is read again after this long even if no change was heard: a
/// bound on any staleness the feed could not see.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// Up to `limit` of a user's videos, in a list's order, after a cursor.
pub struct Page {
    pub rows: Vec<JobRow>,
    pub deliveries: HashMap<JobId, Vec<Delivery>>,
}

/// Which page of a user's: at most `limit` videos that pass `filter`,
/// after `cursor` (their created_at and id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub filter: ListFilter,
    pub cursor: Option<(DateTime<Utc>, JobId)>,
    pub limit: i64,
}

type Key = (UserId, PageKey);

struct Kept {
    page: Arc<Page>,
    read: Stamp,
    at: Instant,
}

pub struct Pages {
    changes: Arc<Changes>,
    kept: Mutex<Budgeted<Key, Kept>>,
}

impl Pages {
    pub fn new(changes: Arc<Changes>) -> Self {
        Self {
            changes,
            kept: Mutex::new(Budgeted::new(MAX_ROWS)),
        }
    }

    /// The page, from memory when nothing of the user's changed since it was read.
    pub async fn get(&self, pool: &Pool, user: UserId, which: PageKey) -> DbResult<Arc<Page>> {
        let key = (user, which);
        if let Some(page) = self.kept(&key) {
            return Ok(page);
        }
        // stamped before reading: a change heard later spoils this copy
        let read = self.changes.stamp();
        let which = &key.1;
        let rows =
            jobs::list_for_owner(pool, user, &which.filter, which.cursor, which.limit).await?;
        let page = Arc::new(with_deliveries(pool, rows).await?);
        if let Some(read) = read {
            self.keep(key, page.clone(), read);
        }
        Ok(page)
    }

    fn kept(&self, key: &Key) -> Option<Arc<Page>> {
        let kept = self.kept.lock().unwrap();
        let k = kept.get(key)?;
        self.fresh(&key.0, k).then(|| k.page.clone())
    }

    fn fresh(&self, user: &UserId, k: &Kept) -> bool {
        k.at.elapsed() < KEEP_FOR && self.changes.unchanged(Topic::Owner(*user), k.read)
    }

    fn keep(&self, key: Key, page: Arc<Page>, read: Stamp) {
        let mut kept = self.kept.lock().unwrap();
        // checked under the lock: a change heard since the read spoils it
        if !self.changes.unchanged(Topic::Owner(key.0), read) {
            return;
        }
        let weight = page.rows.len() + 1;
        let kept_page = Kept {
            page,
            read,
            at: Instant::now(),
        };
        kept.insert(key, kept_page, weight, |key, k| self.fresh(&key.0, k));
    }
}

/// `rows` with their notifications.
pub async fn with_deliveries(pool: &Pool, rows: Vec<JobRow>) -> DbResult<Page> {
    let ids: Vec<JobId> = rows.iter().map(|j| j.id).collect();
    let deliveries = outbox::deliveries_by_job(pool, &ids).await?;
    Ok(Page { rows, deliveries })
}
