//! An upload's body, read so that no client can stall a node or swell its
//! memory: every read has an idle deadline, the body as a whole must keep a
//! minimum average rate (so its overall deadline follows from its size), and
//! everything that is not file data — the preamble, each part's headers, an
//! option field — may pull only a few KiB from the socket. The multipart
//! parser (multer) buffers a part's headers until they end; the budget here
//! is what stops a header that never ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};

use crate::http::ApiError;

/// What the body may pull from the socket while a part's headers (and the
/// boundary before them) are read.
const HEADER_BUDGET: u64 = 16 * 1024;
/// Longest option field value.
pub(super) const FIELD_LIMIT: u64 = 1024;
/// The multipart framing and option fields on top of the file itself.
pub(super) const MULTIPART_SLACK: u64 = 64 * 1024;

/// The request body as it comes from warp.
pub(super) type RawBody = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// Turns warp's body stream into [`RawBody`].
pub(super) fn raw_body(
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Send + 'static,
) -> RawBody {
    Box::pin(body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining()))))
}

/// How fast an upload's body must come.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// No single read waits longer.
    pub idle: Duration,
    /// Bytes per second the body must average once `grace` has passed.
    pub min_rate: u64,
    pub grace: Duration,
}

/// The clock of one body: when it started and how far it may lag.
#[derive(Debug, Clone, Copy)]
struct Clock {
    pace: Pace,
    started: Instant,
}

/// Why a read was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    /// Nothing came for `idle`.
    Idle,
    /// Behind the minimum rate.
    Slow,
}

impl Clock {
    fn start(pace: Pace) -> Self {
        Self {
            pace,
            started: Instant::now(),
        }
    }

    /// How long the next read may wait, having received `received` bytes:
    /// until the idle deadline or until the body falls behind the minimum
    /// average rate, whichever comes first.
    fn next_wait(&self, received: u64) -> (Duration, Late) {
        wait_at(self.pace, received, self.started.elapsed())
    }

    /// Runs `read` within the next wait; a late read is a 408.
    async fn within<T>(&self, received: u64, read: impl Future<Output = T>) -> Result<T, ApiError> {
        let (wait, late) = self.next_wait(received);
        tokio::time::timeout(wait, read)
            .await
            .map_err(|_| self.late(late))
    }

    fn late(&self, late: Late) -> ApiError {
        metrics::counter!("vp_uploads_total", "result" => "timed_out").increment(1);
        match late {
            Late::Idle => ApiError::RequestTimeout,
            Late::Slow => ApiError::TooSlow {
                min_rate: self.pace.min_rate,
            },
        }
    }
}

/// The pure rule behind [`Clock::next_wait`].
fn wait_at(pace: Pace, received: u64, elapsed: Duration) -> (Duration, Late) {
    let allowed = pace.grace + Duration::from_secs_f64(received as f64 / pace.min_rate as f64);
    let behind = allowed.saturating_sub(elapsed);
    if behind < pace.idle {
        (behind, Late::Slow)
    } else {
        (pace.idle, Late::Idle)
    }
}

/// Shared between the metered stream and its reader.
#[derive(Default)]
struct Meter {
    /// Bytes the stream may still yield in the current phase.
    allowance: AtomicU64,
    /// Bytes yielded so far.
    received: AtomicU64,
    /// The stream failed because a phase went over its allowance.
    overrun: AtomicBool,
    /// A read failed or was late: the rest of the body is not read.
    failed: AtomicBool,
}

impl Meter {
    fn allow(&self, bytes: u64) {
        self.allowance.store(bytes, Ordering::Release);
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }
}

/// The body stream, counting what it yields against the [`Meter`].
struct Metered {
    inner: RawBody,
    meter: Arc<Meter>,
}

#[derive(Debug, thiserror::Error)]
#[error("a part's headers or an option field went over their budget")]
struct OverBudget;

impl Stream for Metered {
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let chunk = match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => chunk,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let len = chunk.len() as u64;
        let meter = &self.meter;
        meter.received.fetch_add(len, Ordering::AcqRel);
        // A phase may go over its allowance by the one chunk that crosses
        // it (a client's first chunk often holds headers and data alike);
        // the next pull is refused.
        let left = meter.allowance.load(Ordering::Acquire);
        if left == 0 {
            meter.overrun.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(OverBudget))));
        }
        meter
            .allowance
            .store(left.saturating_sub(len), Ordering::Release);
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// One part of the form: the file, or an option field.
pub(super) struct Part {
    inner: multer::Field<'static>,
}

impl Part {
    pub fn name(&self) -> &str {
        self.inner.name().unwrap_or_default()
    }

    pub fn filename(&self) -> Option<&str> {
        self.inner.file_name()
    }
}

/// The multipart form of one upload.
pub(super) struct Form {
    parts: multer::Multipart<'static>,
    meter: Arc<Meter>,
    clock: Clock,
    file_field: &'static str,
    file_limit: u64,
}

impl Form {
    /// Reads `body` as a form with `boundary`, whose file field `file_field`
    /// may hold at most `file_limit` bytes.
    pub fn new(
        body: RawBody,
        boundary: &str,
        file_field: &'static str,
        file_limit: u64,
        pace: Pace,
    ) -> Self {
        let meter = Arc::new(Meter::default());
        let metered = Metered {
            inner: body,
            meter: meter.clone(),
        };
        let limits = multer::SizeLimit::new()
            .whole_stream(file_limit.saturating_add(MULTIPART_SLACK))
            .per_field(FIELD_LIMIT)
            .for_field(file_field, file_limit);
        let constraints = multer::Constraints::new().size_limit(limits);
        Self {
            parts: multer::Multipart::with_constraints(metered, boundary, constraints),
            meter,
            clock: Clock::start(pace),
            file_field,
            file_limit,
        }
    }

    /// The next part, once its headers are in; None at the form's end.
    pub async fn next_part(&mut self) -> Result<Option<Part>, ApiError> {
        self.meter.allow(HEADER_BUDGET);
        let received = self.meter.received();
        let next = self.clock.within(received, self.parts.next_field()).await;
        let Some(field) = self.failing(next)? else {
            return Ok(None);
        };
        if field.name().is_none() {
            return Err(ApiError::InvalidMultipart(
                "every part of the form needs a name".into(),
            ));
        }
        let part = Part { inner: field };
        // what the part's data may pull: the file its limit (multer holds
        // it to that too), an option field its own few bytes
        self.meter.allow(if part.name() == self.file_field {
            u64::MAX
        } else {
            FIELD_LIMIT + HEADER_BUDGET
        });
        Ok(Some(part))
    }

    /// The next chunk of `part`'s data; None at its end.
    pub async fn chunk(&self, part: &mut Part) -> Result<Option<Bytes>, ApiError> {
        let received = self.meter.received();
        let chunk = self.clock.within(received, part.inner.chunk()).await;
        self.failing(chunk)
    }

    /// A read's outcome; a late or failed read marks the form failed.
    fn failing<T>(&self, read: Result<Result<T, multer::Error>, ApiError>) -> Result<T, ApiError> {
        let outcome = read.and_then(|r| r.map_err(|e| self.error(e)));
        if outcome.is_err() {
            self.meter.failed.store(true, Ordering::Release);
        }
        outcome
    }

    /// An option field's value, as text.
    pub async fn text(&self, mut part: Part) -> Result<String, ApiError> {
        let mut value = Vec::new();
        while let Some(chunk) = self.chunk(&mut part).await? {
            value.extend_from_slice(&chunk);
        }
        String::from_utf8(value).map_err(|_| ApiError::InvalidField {
            field: part.name().to_owned(),
            message: format!("field `{}` is not UTF-8", part.name()),
        })
    }

    /// Reads and drops the rest of the form, up to `budget` more bytes,
    /// within the same deadlines; gives up quietly at the first problem, and
    /// at once after a failed or late read (the parser may hold a partial
    /// header, and a stuck client is not waited for twice).
    pub async fn drain(&mut self, budget: u64) {
        if self.meter.failed.load(Ordering::Acquire) {
            return;
        }
        let until = self.meter.received().saturating_add(budget);
        while let Ok(Some(mut part)) = self.next_part().await {
            while let Ok(Some(_)) = self.chunk(&mut part).await {
                if self.meter.received() >= until {
                    return;
                }
            }
            if self.meter.received() >= until {
                return;
            }
        }
    }

    fn error(&self, e: multer::Error) -> ApiError {
        use multer::Error as E;
        match e {
            E::FieldSizeExceeded { field_name, .. }
                if field_name.as_deref() == Some(self.file_field) =>
            {
                metrics::counter!("vp_uploads_total", "result" => "too_large").increment(1);
                ApiError::TooLarge {
                    limit: self.file_limit,
                }
            }
            E::StreamSizeExceeded { .. } => ApiError::TooLarge {
                limit: self.file_limit,
            },
            E::FieldSizeExceeded { field_name, .. } => {
                let field = field_name.unwrap_or_default();
                ApiError::InvalidField {
                    message: format!("field `{field}` is longer than {FIELD_LIMIT} bytes"),
                    field,
                }
            }
            _ if self.meter.overrun.load(Ordering::Acquire) => ApiError::InvalidMultipart(format!(
                "a part's headers are longer than {HEADER_BUDGET} bytes"
            )),
            e => ApiError::InvalidMultipart(format!("the multipart body is malformed: {e}")),
        }
    }
}

/// Reads and drops up to `budget` bytes of a body that is refused unread,
/// without parsing it, within `pace`.
pub(super) async fn drain_raw(mut body: RawBody, budget: u64, pace: Pace) {
    let clock = Clock::start(pace);
    let mut received = 0u64;
    while received < budget {
        match clock.within(received, body.next()).await {
            Ok(Some(Ok(chunk))) => received += chunk.len() as u64,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        idle: Duration::from_secs(30),
        min_rate: 1000,
        grace: Duration::from_secs(10),
    };

    #[test]
    fn a_body_on_pace_waits_the_idle_deadline() {
        assert_eq!(
            wait_at(PACE, 50_000, Duration::ZERO),
            (Duration::from_secs(30), Late::Idle)
        );
        // nothing yet: the grace is the limit
        assert_eq!(
            wait_at(PACE, 0, Duration::ZERO),
            (Duration::from_secs(10), Late::Slow)
        );
        // 100 s ahead of the rate: still only the idle deadline
        assert_eq!(
            wait_at(PACE, 100_000, Duration::from_secs(10)),
            (Duration::from_secs(30), Late::Idle)
        );
    }

    #[test]
    fn a_body_near_its_rate_waits_only_until_it_falls_behind() {
        // allowed 10 s + 5 s; 12 s gone: 3 s left
        assert_eq!(
            wait_at(PACE, 5_000, Duration::from_secs(12)),
            (Duration::from_secs(3), Late::Slow)
        );
        // behind already
        assert_eq!(
            wait_at(PACE, 5_000, Duration::from_secs(20)),
            (Duration::ZERO, Late::Slow)
        );
    }

    fn body(chunks: Vec<&'static [u8]>) -> RawBody {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    fn form(chunks: Vec<&'static [u8]>) -> Form {
        Form::new(body(chunks), "B", "video", 1 << 20, PACE)
    }

    #[tokio::test]
    async fn reads_fields_and_the_file() {
        let mut f = form(vec![
            b"--B\r\nContent-Disposition: form-data; name=\"interval\"\r\n\r\n2\r\n",
            b"--B\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\n",
            b"0123456789\r\n--B--\r\n",
        ]);
        let p = f.next_part().await.unwrap().unwrap();
        assert_eq!(p.name(), "interval");
        assert_eq!(f.text(p).await.unwrap(), "2");
        let mut p = f.next_part().await.unwrap().unwrap();
        assert_eq!((p.name(), p.filename()), ("video", Some("a.mp4")));
        let mut data = Vec::new();
        while let Some(c) = f.chunk(&mut p).await.unwrap() {
            data.extend_from_slice(&c);
        }
        assert_eq!(data, b"0123456789");
        // the parser hands out one part at a time
        drop(p);
        assert!(f.next_part().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_header_that_never_ends_is_cut_at_its_budget() {
        let filler: &'static [u8] = Box::leak(vec![b'A'; 4096].into_boxed_slice());
        let mut chunks = vec![&b"--B\r\nX-Filler: "[..]];
        chunks.extend(std::iter::repeat_n(filler, 1000));
        let mut f = form(chunks);
        let e = f.next_part().await.err().unwrap();
        assert!(matches!(e, ApiError::InvalidMultipart(ref m) if m.contains("headers")));
        // it stopped within the budget and two chunks (the one that
        // crossed it and the one refused), not at 4 MB
        assert!(
            f.meter.received() <= HEADER_BUDGET + 2 * 4096,
            "{}",
            f.meter.received()
        );
    }

    #[tokio::test]
    async fn an_option_field_is_held_to_its_limit() {
        let long: &'static [u8] = Box::leak(vec![b'1'; 4000].into_boxed_slice());
        let mut f = form(vec![
            b"--B\r\nContent-Disposition: form-data; name=\"interval\"\r\n\r\n",
            long,
            b"\r\n--B--\r\n",
        ]);
        let p = f.next_part().await.unwrap().unwrap();
        let e = f.text(p).await.err().unwrap();
        assert!(matches!(e, ApiError::InvalidField { ref field, .. } if field == "interval"));
    }

    // the clock paused: it moves only when everything waits for it
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_is_a_408_and_is_not_drained() {
        let stuck: RawBody = Box::pin(
            futures::stream::iter([Ok(Bytes::from_static(b"--B\r\n"))])
                .chain(futures::stream::pending()),
        );
        let pace = Pace {
            idle: Duration::from_millis(100),
            ..PACE
        };
        let mut f = Form::new(stuck, "B", "video", 1 << 20, pace);
        let e = f.next_part().await.err().unwrap();
        assert!(matches!(e, ApiError::RequestTimeout), "{e:?}");
        // a stuck client is not waited for twice: the drain waits for no
        // deadline, so the paused clock does not move
        let started = tokio::time::Instant::now();
        f.drain(1 << 20).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
