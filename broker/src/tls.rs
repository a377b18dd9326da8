//! TLS server configuration from PEM files.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Builds the acceptor for the TLS listeners.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor> {
    let certs = read_certs(&config.cert_file)?;
    let key = read_key(&config.key_file)?;
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert_file and tls.key_file do not form a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("tls.cert_file: cannot open {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file: {} is not PEM", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "tls.cert_file: no certificate in {}",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("tls.key_file: cannot open {}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .with_context(|| format!("tls.key_file: {} is not PEM", path.display()))?
        .ok_or_else(|| anyhow!("tls.key_file: no private key in {}", path.display()))
}
