//! Mutual TLS between nodes. With a certificate, its key and the cluster's
//! CA configured, a node accepts cluster connections only from peers that
//! present a certificate issued by that CA, and dials peers only when they
//! present one: the cookie alone no longer lets a process in.
//!
//! The CA is the cluster's own, so being issued by it is the identity; host
//! names are not checked (peers are dialled by address, and pod addresses
//! change).

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

use crate::settings::TlsFiles;
use crate::tls::{ChainOnly, read_certs};

/// The name a node asks for when it dials a peer; not checked (see above).
const PEER_NAME: &str = "videoproject-cluster";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cluster TLS: {0}")]
    Read(String),
    #[error("cluster TLS: {0}")]
    Config(String),
}

/// Both ends of the cluster's TLS, built once at start-up.
#[derive(Clone)]
pub struct ClusterTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterTls")
    }
}

impl ClusterTls {
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let certs = read_certs(&files.cert).map_err(TlsError::Read)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| TlsError::Read(format!("cannot read {}: {e}", files.key.display())))?;
        let roots = Arc::new(crate::tls::roots(&files.ca).map_err(TlsError::Read)?);
        let config = |e: rustls::Error| TlsError::Config(e.to_string());

        let clients = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = ServerConfig::builder()
            .with_client_cert_verifier(clients)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(config)?;

        let peers = ChainOnly::new(roots).map_err(TlsError::Config)?;
        let client = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(peers)
            .with_client_auth_cert(certs, key)
            .map_err(config)?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }

    pub fn peer_name() -> ServerName<'static> {
        ServerName::try_from(PEER_NAME).expect("a valid DNS name")
    }
}
