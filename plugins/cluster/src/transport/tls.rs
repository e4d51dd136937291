//! Mutual TLS for node-to-node connections: loading the PEM files, and the
//! client and server sides over a TCP stream.
//!
//! Both sides trust exactly one CA (the `ca_cert_path` file, which may hold
//! several certificates). The dialer verifies the acceptor's certificate
//! against the acceptor's IP address (node certificates carry IP SANs), and
//! presents its own certificate; the acceptor verifies it against the CA and,
//! with `require_client_cert`, refuses a dialer without one. Only the `ring`
//! provider is built, and it is passed explicitly rather than looked up as
//! a process default, so a host that links another rustls copy is unaffected.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::error::TransportError;
use super::TlsFiles;

/// A byte stream a connection runs over: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The loaded TLS configuration, both sides.
#[derive(Clone)]
pub(crate) struct TlsContext {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext").finish_non_exhaustive()
    }
}

fn tls_err(path: &Path, what: &str, cause: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(format!("{what} file {}: {cause}", path.display()))
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, what, e))?;
    if certs.is_empty() {
        return Err(tls_err(
            path,
            what,
            "holds no PEM \"CERTIFICATE\" block (expected at least one)",
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => tls_err(
            path,
            "private key",
            "holds no PEM private key block (expected PKCS#8, PKCS#1 or SEC1)",
        ),
        e => tls_err(path, "private key", e),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsContext {
    /// Loads the files and builds both sides.
    ///
    /// # Errors
    /// [`TransportError::Tls`] naming the file and what was wrong with it
    /// (unreadable, no PEM block, not a certificate the verifier accepts, a
    /// key that does not match the certificate).
    pub fn load(files: &TlsFiles) -> Result<Self, TransportError> {
        let chain = load_certs(&files.cert_path, "certificate")?;
        let key = load_key(&files.key_path)?;
        let ca = load_certs(&files.ca_cert_path, "CA certificate")?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|e| tls_err(&files.ca_cert_path, "CA certificate", e))?;
        }
        let roots = Arc::new(roots);
        let provider = provider();

        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        if !files.require_client_cert {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier
            .build()
            .map_err(|e| tls_err(&files.ca_cert_path, "CA certificate", e))?;
        let key_err = |e: rustls::Error| {
            TransportError::Tls(format!(
                "certificate file {} with private key file {}: {e}",
                files.cert_path.display(),
                files.key_path.display()
            ))
        };
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_err)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(key_err)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Runs the client side of the TLS handshake, verifying the peer's
    /// certificate against its IP address.
    pub async fn connect(&self, addr: SocketAddr, io: Box<dyn Io>) -> std::io::Result<Box<dyn Io>> {
        let name = ServerName::IpAddress(addr.ip().into());
        Ok(Box::new(self.connector.connect(name, io).await?))
    }

    /// Runs the server side of the TLS handshake.
    pub async fn accept(&self, io: Box<dyn Io>) -> std::io::Result<Box<dyn Io>> {
        Ok(Box::new(self.acceptor.accept(io).await?))
    }
}
