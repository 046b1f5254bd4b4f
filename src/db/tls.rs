//! How a node reaches PostgreSQL: libpq's `sslmode` and `sslrootcert` in
//! `DATABASE_URL`, with rustls. tokio-postgres knows `disable`, `prefer`
//! and `require` only, and checks no certificate; the two verifying modes
//! and the root certificate are read here, and the URL it is given asks for
//! TLS (`require`) while the verifier built here does the checking:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | chain, if `sslrootcert` is given |
//! | `require` | always | chain, if `sslrootcert` is given |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert`, and the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates (for RDS, Amazon's
//! bundle), or `system` for the machine's trust store, which only
//! `verify-full` may use (and means when no mode is given).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{DbError, DbResult};
use crate::tls::{ChainOnly, Unverified};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = DbError;

    fn from_str(s: &str) -> DbResult<Self> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(DbError::Config(format!(
                    "sslmode={other} in DATABASE_URL: use disable, prefer, require, verify-ca or verify-full"
                )));
            }
        })
    }
}

/// A database to connect to, and the TLS to do it with.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
}

impl Target {
    pub fn parse(url: &str) -> DbResult<Self> {
        let (url, mode, rootcert) = split_tls(url)?;
        let config =
            tokio_postgres::Config::from_str(&url).map_err(|e| DbError::Config(e.to_string()))?;
        let tls = MakeRustlsConnect::new(client_config(mode, rootcert.as_deref())?);
        Ok(Self { config, tls, mode })
    }

    /// Opens one connection and drives it on its own task.
    pub async fn connect(&self) -> DbResult<tokio_postgres::Client> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.explain(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "database connection ended");
            }
        });
        Ok(client)
    }

    /// A connection error, with what to look at when it is TLS's.
    pub fn explain(&self, e: tokio_postgres::Error) -> DbError {
        let text = super::query_detail(&e);
        if text.contains("TLS") || text.contains("certificate") {
            return DbError::Tls(format!(
                "{text} (sslmode={}: check sslrootcert and the host name in DATABASE_URL)",
                self.mode.as_str()
            ));
        }
        e.into()
    }
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL; gives back the URL for
/// tokio-postgres (asking for TLS when a verifying mode was named). The
/// other parameters are kept byte for byte (tokio-postgres decodes `%20`,
/// not `+`). `sslrootcert=system` without a mode means `verify-full`, as in
/// libpq: the public CAs vouch for anyone's name, so only the name check
/// makes them mean something.
fn split_tls(url: &str) -> DbResult<(String, SslMode, Option<String>)> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // the key=value form: as tokio-postgres reads it
        return Ok((url.to_owned(), SslMode::Prefer, None));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = None;
    let mut rootcert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|e| DbError::Config(format!("{key} in DATABASE_URL: {e}")))
        };
        match key {
            "sslmode" => mode = Some(decoded()?.parse::<SslMode>()?),
            "sslrootcert" => rootcert = Some(decoded()?),
            _ => rest.push(pair),
        }
    }
    let mode = match (mode, rootcert.as_deref()) {
        (None, Some("system")) => SslMode::VerifyFull,
        (Some(mode), Some("system")) if mode != SslMode::VerifyFull => {
            return Err(DbError::Config(format!(
                "sslrootcert=system needs sslmode=verify-full (with sslmode={} any holder of a public certificate would pass)",
                mode.as_str()
            )));
        }
        (mode, _) => mode.unwrap_or(SslMode::Prefer),
    };
    rest.push(match mode {
        SslMode::Disable => "sslmode=disable",
        SslMode::Prefer => "sslmode=prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "sslmode=require",
    });
    Ok((format!("{base}?{}", rest.join("&")), mode, rootcert))
}

fn client_config(mode: SslMode, rootcert: Option<&str>) -> DbResult<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = |e: String| DbError::Config(format!("database TLS: {e}"));
    let roots = rootcert.map(load_roots).transpose().map_err(config)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(config(format!(
                "sslmode={} needs sslrootcert=<CA file> (or sslrootcert=system) in DATABASE_URL",
                mode.as_str()
            )));
        }
        (SslMode::VerifyFull, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| config(e.to_string()))?
        }
        // libpq checks the chain whenever it has a root certificate
        (_, Some(roots)) => ChainOnly::new(Arc::new(roots)).map_err(config)?,
        (_, None) => Unverified::new(&provider),
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn load_roots(rootcert: &str) -> Result<RootCertStore, String> {
    if rootcert != "system" {
        return crate::tls::roots(Path::new(rootcert));
    }
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("sslrootcert=system: the machine's trust store holds no certificate".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifying_modes_ask_tokio_postgres_for_tls_and_keep_the_rest() {
        let (url, mode, root) = split_tls(
            "postgres://u:p%40ss@db:5432/vp?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem",
        )
        .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root.as_deref(), Some("/etc/rds.pem"));
        assert_eq!(
            url,
            "postgres://u:p%40ss@db:5432/vp?application_name=x&sslmode=require"
        );
        let config = tokio_postgres::Config::from_str(&url).unwrap();
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );

        // the other parameters travel untouched
        let (url, _, _) =
            split_tls("postgres://u@db/vp?options=-c%20statement_timeout%3D5s&sslmode=require")
                .unwrap();
        assert_eq!(
            url,
            "postgres://u@db/vp?options=-c%20statement_timeout%3D5s&sslmode=require"
        );
        let config = tokio_postgres::Config::from_str(&url).unwrap();
        assert_eq!(config.get_options(), Some("-c statement_timeout=5s"));

        let (url, mode, root) = split_tls("postgres://u@db/vp").unwrap();
        assert_eq!((mode, root), (SslMode::Prefer, None));
        assert_eq!(url, "postgres://u@db/vp?sslmode=prefer");
        assert_eq!(
            split_tls("postgres://u@db/vp?sslmode=disable").unwrap().1,
            SslMode::Disable
        );
    }

    #[test]
    fn a_mode_that_cannot_hold_is_refused_with_what_to_change() {
        let e = Target::parse("postgres://u@db/vp?sslmode=verify-full")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs sslrootcert"), "{e}");
        let e = Target::parse("postgres://u@db/vp?sslmode=always")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslmode=always"), "{e}");
        // the public CAs vouch for names only: system roots need verify-full
        for weak in ["require", "verify-ca", "prefer"] {
            let e = Target::parse(&format!(
                "postgres://u@db/vp?sslmode={weak}&sslrootcert=system"
            ))
            .err()
            .unwrap()
            .to_string();
            assert!(e.contains("needs sslmode=verify-full"), "{weak}: {e}");
        }
        assert_eq!(
            split_tls("postgres://u@db/vp?sslrootcert=system")
                .unwrap()
                .1,
            SslMode::VerifyFull
        );
        let e = Target::parse("postgres://u@db/vp?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent.pem"), "{e}");
    }
}
