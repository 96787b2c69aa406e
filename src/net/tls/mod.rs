//! TLS for servers (a certificate and key loaded from PEM files, or a
//! self-signed certificate made at startup for development, replaceable
//! while the server runs) and for clients (which server certificates to
//! trust).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

pub mod server_stream;

pub use server_stream::ServerStream;

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

/// The certificate and key a TLS server presents, replaceable while it runs
/// (SIGHUP): each handshake takes the current pair.
#[derive(Debug)]
pub struct Certificate(ArcSwap<CertifiedKey>);

impl Certificate {
    /// Loads the pair `identity` names.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file that could not be read or the key that
    /// does not fit the certificate.
    pub fn load(identity: &Identity) -> Result<Self> {
        Ok(Self(ArcSwap::from_pointee(certified(identity)?)))
    }

    /// Loads the pair `identity` names again and presents it from the next
    /// handshake on; `false` when it is the pair presented already.
    ///
    /// # Errors
    /// As [`Certificate::load`]; the current pair then stays.
    pub fn reload(&self, identity: &Identity) -> Result<bool> {
        let fresh = certified(identity)?;
        if fresh.cert == self.0.load().cert {
            return Ok(false);
        }
        self.0.store(Arc::new(fresh));
        Ok(true)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Reads (or makes) the pair `identity` names and checks that the key fits
/// the certificate.
fn certified(identity: &Identity) -> Result<CertifiedKey> {
    let (chain, key) = match identity {
        Identity::Files { cert, key } => (read_chain(cert, "TLS certificate")?, read_key(key)?),
        Identity::SelfSigned => self_signed()?,
    };
    CertifiedKey::from_der(chain, key, &ring::default_provider()).map_err(|err| Error::Tls {
        context: "could not use the TLS certificate and key".into(),
        reason: err.to_string(),
    })
}

/// Builds the acceptor that turns accepted connections into TLS sessions,
/// presenting what `certificate` holds at each handshake.
///
/// # Errors
/// [`Error::Tls`] when the TLS library cannot be set up.
pub fn acceptor(certificate: Arc<Certificate>) -> Result<Acceptor> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls {
            context: "could not set up TLS".into(),
            reason: err.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    // HTTP/1.1 only: the same connection may become a WebSocket.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Acceptor(Arc::new(config)))
}

/// Turns accepted connections into TLS sessions ([`ServerStream`]).
#[derive(Clone)]
pub struct Acceptor(Arc<ServerConfig>);

impl Acceptor {
    /// Completes the server side of a TLS handshake on `io`.
    ///
    /// # Errors
    /// As [`server_stream::accept`].
    pub async fn accept<S>(&self, io: S) -> std::io::Result<ServerStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        server_stream::accept(Arc::clone(&self.0), io).await
    }
}

/// Which server certificates a TLS client accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Certificates issued by the Mozilla root authorities built into the
    /// binary (webpki-roots), as browsers trust them.
    #[default]
    BuiltInRoots,
    /// Only certificates issued by the CA certificates in this PEM file,
    /// instead of the built-in roots (curl's `--cacert`).
    CaFile(PathBuf),
    /// Any certificate, unverified (curl's `-k`): for development only. The
    /// handshake signatures are still checked against the certificate's key.
    Anything,
}

/// Builds the configuration a TLS client uses, trusting what `trust` says.
///
/// # Errors
/// [`Error::Tls`] naming a CA file that cannot be read or holds no usable
/// certificate.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls {
            context: "could not set up TLS".into(),
            reason: err.to_string(),
        })?;
    let builder = match trust {
        Trust::BuiltInRoots => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            builder.with_root_certificates(roots)
        }
        Trust::CaFile(path) => builder.with_root_certificates(read_roots(path)?),
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms))),
    };
    Ok(Arc::new(builder.with_no_client_auth()))
}

/// Reads the CA certificates a client is told to trust; every one must be usable.
fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path, "CA certificate")? {
        roots.add(cert).map_err(|err| Error::Tls {
            context: format!("could not use CA certificate {}", path.display()),
            reason: err.to_string(),
        })?;
    }
    Ok(roots)
}

/// The verifier behind [`Trust::Anything`]: every certificate passes, but
/// the server must still prove in the handshake that it holds the
/// certificate's private key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Reads a PEM certificate chain; `what` names it in errors (`TLS certificate`).
fn read_chain(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let failed = |reason: String| Error::Tls {
        context: format!("could not read {what} {}", path.display()),
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
        let certificate = Certificate::load(&Identity::SelfSigned).expect("made");
        assert!(acceptor(Arc::new(certificate)).is_ok());
    }

    #[test]
    fn a_reload_replaces_the_pair_only_when_it_changed() {
        let certificate = Certificate::load(&Identity::SelfSigned).expect("made");
        let first = certificate.0.load_full();
        assert!(certificate.reload(&Identity::SelfSigned).expect("made"));
        assert_ne!(certificate.0.load().cert, first.cert);
        let missing = Identity::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let current = certificate.0.load_full();
        assert!(certificate.reload(&missing).is_err());
        assert_eq!(certificate.0.load().cert, current.cert);
    }

    #[test]
    fn missing_files_are_named() {
        let err = Certificate::load(&Identity::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        })
        .expect_err("fails");
        assert_eq!(
            err.to_string(),
            "could not read TLS certificate /nonexistent/cert.pem: no such file or directory"
        );
    }

    #[test]
    fn client_configs_for_every_kind_of_trust() {
        assert!(client_config(&Trust::BuiltInRoots).is_ok());
        assert!(client_config(&Trust::Anything).is_ok());
        let err = client_config(&Trust::CaFile("/nonexistent/ca.pem".into())).expect_err("fails");
        assert_eq!(
            err.to_string(),
            "could not read CA certificate /nonexistent/ca.pem: no such file or directory"
        );
    }
}
