//! TLS for servers: a certificate and key loaded from PEM files, or a
//! self-signed certificate made at startup for development.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// Where a server's certificate comes from.
#[derive(Clone, Debug)]
pub enum Identity {
    /// A PEM certificate chain and its PEM private key.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A certificate for `localhost`, `127.0.0.1` and `::1`, made now and
    /// signed by itself: clients must be told to skip verification.
    SelfSigned,
}

/// Builds the acceptor that turns accepted connections into TLS sessions.
///
/// # Errors
/// [`Error::Tls`] naming the file that could not be read or the key that
/// does not fit the certificate.
pub fn acceptor(identity: &Identity) -> Result<TlsAcceptor> {
    let (chain, key) = match identity {
        Identity::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
        Identity::SelfSigned => self_signed()?,
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|err| Error::Tls {
            context: "could not use the TLS certificate and key".into(),
            reason: err.to_string(),
        })?;
    // HTTP/1.1 only: the same connection may become a WebSocket.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads a PEM certificate chain.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let failed = |reason: String| Error::Tls {
        context: format!("could not read TLS certificate {}", path.display()),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| failed(describe(err)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| failed(describe(err)))?;
    if chain.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    Ok(chain)
}

/// Reads a PEM private key.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| Error::Tls {
        context: format!("could not read TLS key {}", path.display()),
        reason: describe(err),
    })
}

/// Makes a certificate for the loopback names, signed by itself.
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let made = rcgen::generate_simple_self_signed(names).map_err(|err| Error::Tls {
        context: "could not make a self-signed certificate".into(),
        reason: err.to_string(),
    })?;
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    Ok((vec![made.cert.der().clone()], key.into()))
}

/// Words a PEM error without Rust's debug formatting.
fn describe(err: rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as Pem;
    match err {
        Pem::Io(io) => crate::error::describe_io(&io),
        Pem::NoItemsFound => "no PEM item of the right kind in the file".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_identity_makes_an_acceptor() {
        assert!(acceptor(&Identity::SelfSigned).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let err = acceptor(&Identity::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        })
        .err()
        .expect("fails");
        assert_eq!(
            err.to_string(),
            "could not read TLS certificate /nonexistent/cert.pem: no such file or directory"
        );
    }
}
