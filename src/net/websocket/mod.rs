//! Accepting WebSocket connections: the HTTP/1.1 upgrade through hyper, the
//! frames through tungstenite ([`socket`]).
//!
//! Unlike tungstenite's own `accept`, which drops a connection whose request
//! is not a valid upgrade, this answers every request as RFC 6455 §4.2 asks:
//! `426 Upgrade Required` for plain HTTP, `426` with `Sec-WebSocket-Version:
//! 13` for another protocol version, `400` for a malformed handshake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{Error, Result};

// Public only to the fuzz targets (fuzz/, with the `fuzzing` feature).
#[cfg(feature = "fuzzing")]
pub mod frames;
#[cfg(not(feature = "fuzzing"))]
mod frames;
mod scratch_read;
pub mod socket;

pub use socket::ServerSocket;

/// A server-side WebSocket over an upgraded HTTP connection.
pub type UpgradedSocket = ServerSocket<TokioIo<Upgraded>>;

/// How long the last bytes of a closing connection may take to go out.
const WRITE_OUT_TIMEOUT: Duration = Duration::from_secs(1);

/// tungstenite's read buffer per server connection: small, so 10,000 idle
/// WebSockets stay cheap (its default is 128 KiB each). It is filled from the
/// thread's scratch buffer ([`scratch_read`]), which takes all the socket has
/// in one read, so a bigger message costs copies, not system calls.
const READ_BUFFER: usize = 128;

/// How long a client gets to send its request head (docs/PROTOCOL.md 5.5: within 10 s).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head accepted, request line and headers together
/// (docs/PROTOCOL.md 5.5): a bigger one gets `431 Request Header Fields Too
/// Large` and the connection is closed. 16 KiB, as Node.js allows: a
/// browser's head to this server is under 2 KiB, and without a limit hyper
/// reads up to ~400 KiB of head into each connection's buffer, then serves
/// the request (found by the 100 KB header attack in tests/attacks.rs).
pub const MAX_HEAD: usize = 16 * 1024;

/// Serves HTTP/1.1 on one connection with `service`, allowing upgrades and
/// giving the client [`HEADER_TIMEOUT`] for each request head of at most
/// [`MAX_HEAD`] bytes.
///
/// # Errors
/// hyper's error when the exchange fails (malformed request, slow head, …).
pub async fn serve_http1<IO, S>(stream: IO, service: S) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
}

/// Why a request is not a WebSocket handshake we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not an upgrade request at all (plain HTTP): 426.
    NotAnUpgrade,
    /// An upgrade to a WebSocket version other than 13: 426 with our version.
    UnsupportedVersion,
    /// An upgrade request missing a valid `Sec-WebSocket-Key`: 400.
    BadKey,
}

impl Refusal {
    /// The status to answer with and why, for a body in the caller's format.
    pub fn status_and_reason(self) -> (StatusCode, &'static str) {
        match self {
            Self::NotAnUpgrade => (
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks WebSocket; connect with a WebSocket client",
            ),
            Self::UnsupportedVersion => (
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version; this server speaks version 13",
            ),
            Self::BadKey => (
                StatusCode::BAD_REQUEST,
                "missing or malformed Sec-WebSocket-Key",
            ),
        }
    }

    /// The headers that tell a client which upgrade this server speaks.
    pub fn advertise(headers: &mut HeaderMap) {
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }

    /// The plain-text HTTP response that tells the client what was wrong.
    fn response(self) -> Response<Full<Bytes>> {
        let (status, reason) = self.status_and_reason();
        let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Self::advertise(headers);
        response
    }
}

/// Checks a request head for a WebSocket upgrade and returns the
/// `Sec-WebSocket-Accept` value to answer with.
///
/// # Errors
/// The [`Refusal`] saying why the request cannot be upgraded.
pub fn check_upgrade(method: &Method, headers: &HeaderMap) -> Result<String, Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET
        || !has_token(header::CONNECTION, "upgrade")
        || !has_token(header::UPGRADE, "websocket")
    {
        return Err(Refusal::NotAnUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::UnsupportedVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| is_handshake_key(key))
        .ok_or(Refusal::BadKey)?;
    Ok(derive_accept_key(key))
}

/// Whether `key` is base64 of 16 bytes, as RFC 6455 requires.
fn is_handshake_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Serves HTTP on `stream` until a request upgrades to WebSocket, answering
/// every other request with the reason it was refused.
///
/// Returns `None` when the client went away without upgrading.
///
/// # Errors
/// [`Error::WebSocket`] when the HTTP exchange fails (a malformed request, a
/// request head slower than 10 s).
pub async fn accept(stream: TcpStream, config: WebSocketConfig) -> Result<Option<UpgradedSocket>> {
    let (upgraded_tx, upgraded_rx) = oneshot::channel::<OnUpgrade>();
    let upgraded_tx = Arc::new(Mutex::new(Some(upgraded_tx)));
    let service = service_fn(move |mut request: Request<Incoming>| {
        let upgraded_tx = Arc::clone(&upgraded_tx);
        async move {
            let response = match check_upgrade(request.method(), request.headers()) {
                Ok(accept_key) => {
                    let sender = upgraded_tx.lock().ok().and_then(|mut slot| slot.take());
                    if let Some(sender) = sender {
                        let _ = sender.send(hyper::upgrade::on(&mut request));
                    }
                    switching_protocols(&accept_key)
                }
                Err(refusal) => refusal.response(),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    serve_http1(stream, service)
        .await
        .map_err(|err| http_error(&err))?;
    let Ok(on_upgrade) = upgraded_rx.await else {
        return Ok(None);
    };
    let upgraded = on_upgrade.await.map_err(|err| http_error(&err))?;
    Ok(Some(server_socket(upgraded, config)))
}

/// A server's WebSocket settings: a [`READ_BUFFER`] of its own (tungstenite's
/// default is 128 KiB a connection), writes passed straight to the
/// [`ServerSocket`]'s batch, and messages and frames up to `max_message` bytes.
pub fn server_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// The WebSocket over a connection the `101` response has upgraded.
pub fn server_socket(upgraded: Upgraded, config: WebSocketConfig) -> UpgradedSocket {
    ServerSocket::new(TokioIo::new(upgraded), config)
}

/// Writes out what is still pending (the reply to a peer's close, say),
/// giving the peer at most [`WRITE_OUT_TIMEOUT`], then shuts the connection
/// down.
pub async fn write_out(ws: &mut UpgradedSocket) {
    let _ = tokio::time::timeout(WRITE_OUT_TIMEOUT, ws.shutdown()).await;
}

/// The `101 Switching Protocols` response completing a handshake whose
/// `Sec-WebSocket-Accept` is `accept_key` (from [`check_upgrade`]).
pub fn switching_protocols(accept_key: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Wraps a hyper error with what we were doing.
fn http_error(err: &hyper::Error) -> Error {
    Error::WebSocket {
        context: "websocket handshake".into(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers(version: &str, key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, version.parse().unwrap());
        headers.insert(header::SEC_WEBSOCKET_KEY, key.parse().unwrap());
        headers
    }

    #[test]
    fn accepts_the_rfc_example_handshake() {
        let headers = upgrade_headers("13", "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            check_upgrade(&Method::GET, &headers),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string())
        );
    }

    #[test]
    fn refuses_plain_http_other_versions_and_bad_keys() {
        let good = upgrade_headers("13", "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            check_upgrade(&Method::POST, &good),
            Err(Refusal::NotAnUpgrade)
        );
        assert_eq!(
            check_upgrade(&Method::GET, &HeaderMap::new()),
            Err(Refusal::NotAnUpgrade)
        );
        let old = upgrade_headers("8", "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            check_upgrade(&Method::GET, &old),
            Err(Refusal::UnsupportedVersion)
        );
        for key in [
            "",
            "short==",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25j!Q==",
        ] {
            let bad = upgrade_headers("13", key);
            assert_eq!(
                check_upgrade(&Method::GET, &bad),
                Err(Refusal::BadKey),
                "{key:?}"
            );
        }
    }
}
