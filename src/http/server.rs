//! The listener: the routes served by hyper with connection settings of our
//! own. warp's `serve` keeps hyper's defaults, among them a read buffer that
//! grows to ~400 KiB per connection; at hundreds of concurrent uploads those
//! buffers were most of the node's memory. Every connection is admitted and
//! held to its deadlines by `connections`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::Instrument;
use warp::http::Request;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::body_end::{Tracked, track};
use super::connections::{Activity, Connections, Held, Limits, Watched};
use super::hygiene::{ClientAddr, Cors, secure};
use super::observe::Timing;
use super::{State, routes};

/// Largest read buffer per connection: enough for any request head we take
/// (hyper's minimum is 8 KiB) and for body reads that keep the disk busy.
const READ_BUFFER: usize = 64 * 1024;
/// A client gets this long to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error that is not the client's (out of file
/// descriptors): connections that finish free them.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// File descriptors kept for everything but HTTP connections: the database
/// pool, media files, ffmpeg's pipes, cluster links.
const DESCRIPTOR_RESERVE: usize = 512;

/// The connection limits from the settings, the cap kept below the file
/// descriptors this process may open (raised to the hard limit first).
fn limits(settings: &crate::settings::Settings) -> Limits {
    let t = &settings.tuning;
    let descriptors = raise_descriptor_limit();
    let max = descriptors
        .map(|n| n.saturating_sub(DESCRIPTOR_RESERVE).max(64))
        .unwrap_or(t.max_connections)
        .min(t.max_connections);
    Limits {
        max,
        per_address: t.max_connections_per_address,
        first_request: Duration::from_secs(t.first_request_secs),
        idle: Duration::from_secs(t.keep_alive_secs),
        write_stall: Duration::from_secs(t.write_stall_secs),
        proxies: t.trusted_proxies.clone(),
    }
}

/// Raises the soft limit on open files to the hard one; the limit in force.
fn raise_descriptor_limit() -> Option<usize> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let now = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    };
    // None: unlimited
    now.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Serves until `shutdown` completes, then stops accepting and waits for the
/// open connections to finish.
pub async fn serve(listener: TcpListener, state: State, shutdown: impl Future<Output = ()>) {
    let cors = Cors::new(&state.settings.cors_origins);
    let connections = Connections::new(limits(&state.settings));
    let sweeping = CancellationToken::new();
    tokio::spawn(connections.clone().sweep_until(sweeping.clone()));
    let _stop_sweeping = sweeping.drop_guard();
    let service = warp::service(routes(state));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(READ_BUFFER)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // over a cap with every place busy: closed at once
        let Some(admission) = connections.admit(peer.ip()) else {
            continue;
        };
        let connection = builder.serve_connection_with_upgrades(
            TokioIo::new(Watched::new(stream, admission.activity.clone())),
            TowerToHyperService::new(Guarded {
                inner: service.clone(),
                client: ClientAddr(peer),
                cors: cors.clone(),
                activity: admission.activity.clone(),
            }),
        );
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                // past a deadline, or pushed out by a new connection
                () = admission.close.cancelled() => {}
            }
            drop(admission);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one connection that surface at accept and concern only it.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The body type of warp's answers (warp does not name it).
type AnswerBody = <warp::reply::Response as HasBody>::Body;
trait HasBody {
    type Body;
}
impl<B> HasBody for warp::http::Response<B> {
    type Body = B;
}

/// The routes with what every request and answer gets around them: the
/// client's address in, security and CORS headers out (see `hygiene`),
/// `Connection: close` when the body was left unread (see `body_end`), and
/// the request's time to its answer (see `observe`).
#[derive(Clone)]
struct Guarded<S> {
    inner: S,
    client: ClientAddr,
    cors: Cors,
    activity: Arc<Activity>,
}

impl<S, B> tower_service::Service<Request<B>> for Guarded<S>
where
    B: http_body::Body + Unpin,
    S: tower_service::Service<
            Request<Tracked<B>>,
            Response = warp::reply::Response,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = warp::http::Response<Held<AnswerBody>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // busy until its answer's body has ended: never closed as idle
        let busy = self.activity.request();
        if let Some(mut answer) = self.cors.preflight(&request) {
            secure(answer.headers_mut());
            return Box::pin(std::future::ready(Ok(Held::wrap(answer, busy))));
        }
        let origin = self.cors.origin_of(&request);
        let timing = Timing::start(request.method(), request.uri().path(), request.headers());
        let span = timing.span().clone();
        request.extensions_mut().insert(self.client);
        let (parts, body) = request.into_parts();
        let (body, body_end) = track(body);
        let answer = self.inner.call(Request::from_parts(parts, body));
        Box::pin(
            async move {
                let mut answer = answer.await?;
                secure(answer.headers_mut());
                Cors::decorate(origin, answer.headers_mut());
                body_end.close_if_unread(answer.headers_mut());
                let status = answer.status();
                timing.answered(status, answer.headers_mut());
                Ok(Held::wrap(answer, busy))
            }
            .instrument(span),
        )
    }
}
