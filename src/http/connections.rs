//! The node's open HTTP connections, held to limits no client gets past:
//! a cap on all of them (below the process's file descriptors, so `accept`
//! never runs dry and `/healthz` always answers) and on those of one client
//! address; a deadline for the first request head; an idle deadline between
//! requests; and a deadline on a write the client does not read.
//!
//! A new connection over a cap takes the place of the quietest idle one
//! (of its own address first): a flood of idle sockets pushes out only
//! itself, while connections with a request under way are never cut. Only
//! when every connection is busy is the new one closed at once.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::settings::Network;

/// How often the deadlines are checked.
const SWEEP: Duration = Duration::from_millis(500);

/// The limits, from the settings.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max: usize,
    pub per_address: usize,
    /// From accept to the first request head.
    pub first_request: Duration,
    /// Between requests of a kept-alive connection.
    pub idle: Duration,
    /// A write the client does not take.
    pub write_stall: Duration,
    /// Proxies, whose many clients share their address: no per-address cap.
    pub proxies: Vec<Network>,
}

/// Milliseconds since the process's first look at the clock: atomics hold
/// them, so the I/O path takes no lock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What one connection has done lately; written by its I/O and its
/// requests, read by the sweeper.
#[derive(Debug)]
pub struct Activity {
    born_ms: u64,
    /// Last byte read or written.
    last_io_ms: AtomicU64,
    /// Since when a write waits for the client to read; 0: none waits.
    write_waiting_ms: AtomicU64,
    /// Requests whose answer head is not out yet.
    busy: AtomicU32,
    /// Requests seen.
    requests: AtomicU32,
}

impl Activity {
    fn new() -> Self {
        let now = now_ms();
        Self {
            born_ms: now,
            last_io_ms: AtomicU64::new(now),
            write_waiting_ms: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            requests: AtomicU32::new(0),
        }
    }

    /// A request started on this connection; it counts as busy until the
    /// returned guard is dropped (its answer head is out, or it was dropped).
    pub fn request(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    fn quiet_since(&self) -> u64 {
        self.last_io_ms.load(Ordering::Relaxed)
    }

    /// Whether the connection has outlived a deadline at `now`.
    fn overdue(&self, limits: &Limits, now: u64) -> Option<&'static str> {
        let ms = |d: Duration| d.as_millis() as u64;
        let waiting = self.write_waiting_ms.load(Ordering::Acquire);
        if waiting != 0 && now.saturating_sub(waiting) > ms(limits.write_stall) {
            return Some("write_stall");
        }
        if self.is_busy() {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            (now.saturating_sub(self.born_ms) > ms(limits.first_request)).then_some("first_request")
        } else {
            (now.saturating_sub(self.quiet_since()) > ms(limits.idle)).then_some("idle")
        }
    }
}

/// A request under way; see [`Activity::request`].
pub struct Busy(Arc<Activity>);

/// An answer whose body keeps its connection busy until it ends: a live
/// event stream or a long download is never taken for an idle connection
/// (one whose client stops reading is caught by the write deadline).
pub struct Held<B> {
    inner: B,
    busy: Option<Busy>,
}

impl<B> Held<B> {
    pub fn wrap(answer: warp::http::Response<B>, busy: Busy) -> warp::http::Response<Self> {
        answer.map(|inner| Self {
            inner,
            busy: Some(busy),
        })
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Entry {
    ip: IpAddr,
    activity: Arc<Activity>,
    close: CancellationToken,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&entry.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&entry.ip);
            }
        }
        Some(entry)
    }

    /// Closes the idle connection quiet for longest (the oldest among
    /// equals), of `ip` when given; false when every candidate is busy.
    fn evict_quietest(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .filter(|(_, e)| ip.is_none_or(|ip| e.ip == ip) && !e.activity.is_busy())
            .min_by_key(|(id, e)| (e.activity.quiet_since(), **id))
            .map(|(id, _)| *id);
        let Some(entry) = victim.and_then(|id| self.remove(id)) else {
            return false;
        };
        entry.close.cancel();
        metrics::counter!("vp_http_connections_closed_total", "reason" => "evicted").increment(1);
        true
    }
}

/// Every open connection of the node.
pub struct Connections {
    limits: Limits,
    registry: Mutex<Registry>,
}

/// A connection's place; it gives the place back when dropped.
pub struct Admission {
    id: u64,
    connections: Arc<Connections>,
    pub activity: Arc<Activity>,
    /// Cancelled when the connection must close now.
    pub close: CancellationToken,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.connections.registry.lock().unwrap().remove(self.id);
        self.connections.record();
    }
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            registry: Mutex::new(Registry::default()),
        })
    }

    /// A place for a new connection from `ip`, making room by closing an
    /// idle one if a cap is reached; None: every place is busy.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let mut registry = self.registry.lock().unwrap();
        let capped = !self.limits.proxies.iter().any(|p| p.contains(ip));
        if capped
            && registry.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_address
            && !registry.evict_quietest(Some(ip))
        {
            return self.refuse("per_address");
        }
        if registry.open.len() >= self.limits.max && !registry.evict_quietest(None) {
            return self.refuse("full");
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let activity = Arc::new(Activity::new());
        let close = CancellationToken::new();
        registry.open.insert(
            id,
            Entry {
                ip,
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        *registry.per_ip.entry(ip).or_default() += 1;
        drop(registry);
        self.record();
        Some(Admission {
            id,
            connections: self.clone(),
            activity,
            close,
        })
    }

    fn refuse(&self, reason: &'static str) -> Option<Admission> {
        metrics::counter!("vp_http_connections_refused_total", "reason" => reason).increment(1);
        None
    }

    fn record(&self) {
        let open = self.registry.lock().unwrap().open.len();
        metrics::gauge!("vp_http_connections").set(open as f64);
    }

    /// Closes every connection past a deadline; returns how many.
    pub fn sweep(&self) -> usize {
        let now = now_ms();
        let mut registry = self.registry.lock().unwrap();
        let overdue: Vec<(u64, &'static str)> = registry
            .open
            .iter()
            .filter_map(|(id, e)| Some((*id, e.activity.overdue(&self.limits, now)?)))
            .collect();
        for (id, reason) in &overdue {
            if let Some(entry) = registry.remove(*id) {
                entry.close.cancel();
                metrics::counter!("vp_http_connections_closed_total", "reason" => *reason)
                    .increment(1);
            }
        }
        overdue.len()
    }

    /// Sweeps every [`SWEEP`] until `stop` is cancelled.
    pub async fn sweep_until(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.sweep(); }
                () = stop.cancelled() => return,
            }
        }
    }
}

/// A socket that records its reads and writes in its [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.last_io_ms.store(now_ms(), Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn wrote<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let a = &self.activity;
        match &polled {
            Poll::Pending => {
                let _ = a.write_waiting_ms.compare_exchange(
                    0,
                    now_ms(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => {
                a.write_waiting_ms.store(0, Ordering::Release);
                a.last_io_ms.store(now_ms(), Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_address: usize) -> Limits {
        Limits {
            max,
            per_address,
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            write_stall: Duration::from_secs(60),
            proxies: vec![Network::try_from("10.0.0.0/8".to_owned()).unwrap()],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_new_connection_over_the_cap_pushes_out_the_quietest_idle_one() {
        let c = Connections::new(limits(2, 10));
        let a = c.admit(ip("192.0.2.1")).unwrap();
        let b = c.admit(ip("192.0.2.2")).unwrap();
        b.activity
            .last_io_ms
            .store(now_ms() + 10, Ordering::Relaxed);
        let _n = c.admit(ip("192.0.2.3")).unwrap();
        assert!(a.close.is_cancelled(), "the quietest goes");
        assert!(!b.close.is_cancelled());
    }

    #[test]
    fn busy_connections_are_never_pushed_out() {
        let c = Connections::new(limits(2, 10));
        let a = c.admit(ip("192.0.2.1")).unwrap();
        let b = c.admit(ip("192.0.2.2")).unwrap();
        let _ra = a.activity.request();
        let _rb = b.activity.request();
        assert!(c.admit(ip("192.0.2.3")).is_none());
        assert!(!a.close.is_cancelled() && !b.close.is_cancelled());
    }

    #[test]
    fn one_address_pushes_out_only_its_own() {
        let c = Connections::new(limits(10, 2));
        let other = c.admit(ip("192.0.2.9")).unwrap();
        let a1 = c.admit(ip("192.0.2.1")).unwrap();
        let _a2 = c.admit(ip("192.0.2.1")).unwrap();
        let _a3 = c.admit(ip("192.0.2.1")).unwrap();
        assert!(a1.close.is_cancelled());
        assert!(!other.close.is_cancelled());
        // a proxy's clients are not capped by its address
        let proxied: Vec<_> = (0..5).map(|_| c.admit(ip("10.1.2.3")).unwrap()).collect();
        assert!(proxied.iter().all(|p| !p.close.is_cancelled()));
    }

    #[test]
    fn deadlines_close_silent_and_idle_connections_but_not_busy_ones() {
        let l = limits(10, 10);
        let a = Activity::new();
        let t0 = a.born_ms;
        assert_eq!(a.overdue(&l, t0 + 5_000), None);
        assert_eq!(a.overdue(&l, t0 + 11_000), Some("first_request"));
        let a = Arc::new(Activity::new());
        let t0 = a.born_ms;
        let busy = a.request();
        assert_eq!(a.overdue(&l, t0 + 3_600_000), None, "a request under way");
        drop(busy);
        assert_eq!(a.overdue(&l, t0 + 30_000), None);
        assert_eq!(a.overdue(&l, t0 + 61_000), Some("idle"));
        a.write_waiting_ms.store(t0, Ordering::Release);
        let _busy = a.request();
        assert_eq!(a.overdue(&l, t0 + 61_000), Some("write_stall"));
    }

    #[test]
    fn a_dropped_admission_gives_its_place_back() {
        let c = Connections::new(limits(1, 1));
        let a = c.admit(ip("192.0.2.1")).unwrap();
        let busy = a.activity.request();
        assert!(c.admit(ip("192.0.2.1")).is_none());
        drop(busy);
        drop(a);
        assert!(c.admit(ip("192.0.2.1")).is_some());
    }
}
