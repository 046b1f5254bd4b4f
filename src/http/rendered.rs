//! List answers already rendered, per caller and page: a client polling
//! its list gets the same bytes again while the page is unchanged and the
//! download links in it are young enough to be handed out again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::budgeted::Budgeted;
use crate::db::pages::{Page, PageKey};

/// How many bytes of answers are kept.
const BUDGET: usize = 32 << 20;

/// Whose answer: the session (its links are in it), or the user when the
/// caller has no session.
pub type Caller = Arc<[u8]>;

struct Kept {
    /// The page it was rendered from: another page means a change.
    page: Arc<Page>,
    body: Bytes,
    at: Instant,
}

pub struct Rendered {
    kept: Mutex<Budgeted<(Caller, PageKey), Kept>>,
    /// How long an answer's links may be handed out again.
    links_fresh_for: Duration,
}

impl Rendered {
    pub fn new(links_fresh_for: Duration) -> Self {
        Self {
            kept: Mutex::new(Budgeted::new(BUDGET)),
            links_fresh_for,
        }
    }

    /// The answer for `caller` and `page`, rendered again only when the page
    /// changed or its links aged.
    pub fn get_or_render(
        &self,
        caller: Caller,
        key: PageKey,
        page: &Arc<Page>,
        render: impl FnOnce() -> Result<Bytes, serde_json::Error>,
    ) -> Result<Bytes, serde_json::Error> {
        let fresh = |k: &Kept| k.at.elapsed() < self.links_fresh_for;
        let key = (caller, key);
        if let Some(k) = self.kept.lock().unwrap().get(&key)
            && Arc::ptr_eq(&k.page, page)
            && fresh(k)
        {
            return Ok(k.body.clone());
        }
        let body = render()?;
        let kept = Kept {
            page: page.clone(),
            body: body.clone(),
            at: Instant::now(),
        };
        self.kept
            .lock()
            .unwrap()
            .insert(key, kept, body.len(), |_, k| fresh(k));
        Ok(body)
    }
}
