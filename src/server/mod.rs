//! `switchboard serve`: the chat hub on one port. Each accepted connection
//! is let in by the connection limits ([`Gate`](crate::limits::Gate)), or refused in words it
//! reads ([`refuse`]), then told apart by its first bytes ([`sniff`]) and
//! handed to its transport.

pub mod refuse;
pub mod sniff;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::error::Result;
use crate::hub::Hub;
use crate::limits::Slot;
use crate::net::accept::{self, Ended, Handled, Peer};
use crate::net::tls::Acceptor;
use crate::transport::http::{self, AppState, HttpConfig};
use crate::transport::line::{self, Admission};
use crate::transport::live::Live;
use refuse::Refuser;
use sniff::Kind;

/// The port `switchboard serve` listens on by default.
pub const DEFAULT_PORT: u16 = 8080;

/// How long a TLS client has to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a silent client is waited for before it is greeted as a line client.
pub const GREETING_SILENCE: Duration = Duration::from_millis(250);

/// How the chat server behaves.
#[derive(Clone)]
pub struct ServeOptions {
    /// The settings SIGHUP replaces: limits, timeouts, tokens.
    pub live: Arc<Live>,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Turns TLS on for every kind of client, when set.
    pub tls: Option<Acceptor>,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

/// Serves the chat hub on `listener` until `shutdown` is cancelled and every
/// connection has said goodbye.
pub async fn run(
    listener: TcpListener,
    hub: Hub,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let sessions = TaskTracker::new();
    let app = http::router(
        AppState {
            hub: hub.clone(),
            live: Arc::clone(&options.live),
            metrics: options.metrics,
            sessions: sessions.clone(),
            shutdown: shutdown.clone(),
        },
        &options.http,
    );
    let edges = Arc::new(Edges {
        hub: hub.clone(),
        live: options.live,
        tls: options.tls,
        app,
    });
    let gate = edges.live.gate();
    let refuser = Refuser::new(edges.tls.clone());
    let connection_shutdown = shutdown.clone();
    let stopping = shutdown.clone();
    let accepting = accept::serve(listener, shutdown, move |stream, peer| {
        match gate.admit(peer.addr.ip()) {
            Ok(slot) => {
                let edges = Arc::clone(&edges);
                let shutdown = connection_shutdown.clone();
                Handled::Served(Either::Left(async move {
                    edges.dispatch(stream, peer, slot, shutdown).await
                }))
            }
            Err(refused) => Handled::Refused(Either::Right(refuser.refuse(stream, peer, refused))),
        }
    });
    // Connections in the hub learn of the shutdown from it, through their queues.
    let kick_everyone = async {
        stopping.cancelled().await;
        hub.stop();
    };
    tokio::join!(accepting, kick_everyone);
    // WebSocket sessions outlive the HTTP exchange that upgraded them.
    sessions.close();
    if tokio::time::timeout(accept::SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} WebSocket sessions did not close in time",
            sessions.len()
        );
    }
}

/// What the transports need, shared by every connection.
struct Edges {
    hub: Hub,
    live: Arc<Live>,
    tls: Option<Acceptor>,
    app: Router,
}

impl Edges {
    /// Hands a connection to the transport its first bytes call for; its
    /// `slot` is held until it ends (by its WebSocket session, when it
    /// becomes one).
    ///
    /// The TLS and HTTP paths are boxed: a future is as big as its biggest
    /// path, and every idle line client would otherwise pay for theirs
    /// (measured: the future was 3,528 bytes with them inline).
    async fn dispatch(
        &self,
        stream: TcpStream,
        peer: Peer,
        slot: Slot,
        shutdown: CancellationToken,
    ) -> Result<Ended> {
        let connection = Connection {
            peer,
            slot,
            shutdown,
        };
        match sniff::sniff(&stream, GREETING_SILENCE).await {
            Kind::Tls => Box::pin(self.serve_tls(stream, connection)).await,
            kind => self.serve_as(kind, stream, false, connection).await,
        }
    }

    /// Completes a TLS handshake, then tells the client apart by its first
    /// decrypted bytes and serves it like a plain one.
    async fn serve_tls(&self, stream: TcpStream, connection: Connection) -> Result<Ended> {
        let peer = connection.peer;
        let Some(acceptor) = &self.tls else {
            tracing::debug!("{peer}: TLS ClientHello, but TLS is not enabled");
            refuse_tls(stream).await;
            return Ok(Ended::Closed);
        };
        let mut session = match timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(session)) => session,
            Ok(Err(err)) => {
                tracing::debug!("{peer}: TLS handshake failed: {err}");
                return Ok(Ended::Closed);
            }
            Err(_) => {
                tracing::debug!("{peer}: TLS handshake not done in time");
                return Ok(Ended::Closed);
            }
        };
        let (kind, first) = sniff::sniff_by_reading(&mut session, GREETING_SILENCE).await?;
        session.unread(first);
        self.serve_as(kind, session, true, connection).await
    }

    /// Serves a client whose kind is known; `tls` says whether it came over TLS.
    async fn serve_as<S>(
        &self,
        kind: Kind,
        mut stream: S,
        tls: bool,
        connection: Connection,
    ) -> Result<Ended>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            slot,
            shutdown,
        } = connection;
        match kind {
            Kind::Line => {
                // The settings in force are read inside the boxed admission
                // and where the session starts: a local copy would take room
                // in the future for the connection's whole life.
                let live = &self.live;
                let admission = Box::pin(async {
                    let access = live.access();
                    let admitted =
                        line::authenticate(&mut stream, &access, &live.line(), &shutdown).await?;
                    // A client that gave the token has said its first line.
                    Ok::<_, crate::error::Error>((admitted, access.client_token_required()))
                });
                let (Admission::In(input), spoken) = admission.await? else {
                    return Ok(Ended::Closed);
                };
                let hub = self.hub.clone();
                let serving = line::serve(stream, input, peer, tls, spoken, hub, &live.line());
                serving.await?;
                drop(slot);
                Ok(Ended::Closed)
            }
            Kind::Http => {
                let hub = self.hub.clone();
                Box::pin(http::serve(stream, peer, tls, hub, self.app.clone(), slot)).await
            }
            Kind::Tls => {
                tracing::debug!("{peer}: a TLS ClientHello where none belongs");
                Ok(Ended::Closed)
            }
        }
    }
}

/// What a connection brings to its transport besides its stream.
struct Connection {
    peer: Peer,
    slot: Slot,
    shutdown: CancellationToken,
}

/// A TLS alert record (RFC 8446 6): content type 21, record version TLS
/// 1.2 (what every record after the first ClientHello carries), length 2,
/// level fatal, description `handshake_failure` (40). Of the alerts a
/// server may send before any parameters are agreed, this one says "no
/// acceptable security parameters", which is the truth when there are none
/// at all; `protocol_version` would wrongly blame the client's TLS version.
/// curl prints `alert handshake failure`, `openssl s_client` the same.
const HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// The largest ClientHello read before answering a TLS client on a port
/// without TLS: one record's header and its largest body.
const MAX_HELLO: u64 = 5 + 16_384;

/// Answers a TLS ClientHello on a port without TLS with a fatal alert
/// (docs/PROTOCOL.md 5), so the client says what went wrong rather than
/// "connection reset". The hello is read first and the client's close
/// awaited (each bounded): closing with unread bytes would send a reset that
/// can overtake the alert.
async fn refuse_tls(mut stream: TcpStream) {
    let exchange = async {
        let mut header = [0; 5];
        stream.read_exact(&mut header).await?;
        let length = u64::from(u16::from_be_bytes([header[3], header[4]]));
        let mut hello = (&mut stream).take(length.min(MAX_HELLO));
        tokio::io::copy(&mut hello, &mut tokio::io::sink()).await?;
        stream.write_all(&HANDSHAKE_FAILURE_ALERT).await?;
        stream.shutdown().await?;
        let mut rest = (&mut stream).take(MAX_HELLO);
        tokio::io::copy(&mut rest, &mut tokio::io::sink()).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), exchange).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `function` returns, without calling it.
    fn returned_size<F, R>(_function: F) -> usize
    where
        F: FnOnce(&'static Edges, TcpStream, Peer, Slot, CancellationToken) -> R,
    {
        size_of::<R>()
    }

    /// Every idle line client pays for this future for its whole life. It
    /// was 3,528 bytes with the TLS and HTTP paths inline (5,212 bytes per
    /// idle line client, measured; 2,455 after boxing them and slimming the
    /// line session).
    #[test]
    fn an_idle_line_client_does_not_pay_for_the_other_paths() {
        let size = returned_size(|edges, stream, peer, slot, shutdown| {
            edges.dispatch(stream, peer, slot, shutdown)
        });
        assert!(size <= 896, "the connection future is {size} bytes");
    }
}
