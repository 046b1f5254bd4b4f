//! Accepting peers under TLS. ractor_cluster runs each TLS handshake inside
//! its accept loop, with no deadline: one socket that opens the cluster port
//! and stalls its handshake would keep every other peer out. With TLS on,
//! this node accepts on the cluster port itself: each handshake runs beside
//! the others, within a deadline, a bounded number at once, and a finished
//! one is handed to the node server as an external stream. (ractor's own
//! listener then sits on a loopback port, still behind TLS, unused.)

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; sockets past it are closed unread.
const MAX_HANDSHAKES: usize = 64;

/// The accept loop; it stops when this is dropped.
pub struct AcceptLoop(tokio::task::JoinHandle<()>);

impl AcceptLoop {
    /// Stops accepting and waits until the port is free again.
    pub async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes the cluster port (before anything else starts: a port that is
/// taken must fail the start, leaving nothing running).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Hands every peer of `listener` whose TLS handshake completes within
/// `deadline` to `server`.
pub fn start(
    listener: TcpListener,
    tls: TlsAcceptor,
    server: ActorRef<NodeServerMessage>,
    deadline: Duration,
) -> AcceptLoop {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    AcceptLoop(tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // out of file descriptors, most likely: let some close
                    tracing::warn!(error = %e, "cluster port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused("busy");
                continue;
            };
            let (tls, server) = (tls.clone(), server.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                match tokio::time::timeout(deadline, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let peer = Peer {
                            stream,
                            peer,
                            local,
                        };
                        let _ = server.cast(NodeServerMessage::ConnectionOpenedExternal {
                            stream: Box::new(peer),
                            is_server: true,
                        });
                    }
                    Ok(Err(e)) => {
                        refused("tls");
                        tracing::warn!(%peer, error = %e, "cluster port: TLS handshake refused");
                    }
                    Err(_) => {
                        refused("timeout");
                        tracing::warn!(%peer, "cluster port: TLS handshake not done in time; closed");
                    }
                }
            });
        }
    }))
}

fn refused(reason: &'static str) {
    metrics::counter!("vp_cluster_handshakes_refused_total", "reason" => reason).increment(1);
}

/// A peer's TLS stream, as ractor_cluster takes it.
struct Peer {
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

impl ClusterBidiStream for Peer {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self.stream);
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.to_string())
    }

    fn local_label(&self) -> Option<String> {
        self.local.map(|l| l.to_string())
    }
}
