//! `switchboard serve`: the chat hub on one port. Each accepted connection
//! is let in by the connection limits ([`Gate`]), or refused in words it
//! reads ([`refuse`]), then told apart by its first bytes ([`sniff`]) and
//! handed to its transport.

pub mod refuse;
pub mod sniff;

use std::sync::Arc;
use std::time::Duration;

use std::io::Cursor;

use futures_util::future::Either;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Chain, Join, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Access;
use crate::error::Result;
use crate::hub::Hub;
use crate::limits::{Gate, Slot};
use crate::net::accept::{self, Ended, Peer};
use crate::transport::http::{self, AppState, HttpConfig};
use crate::transport::line::{self, Admission, LineConfig};
use crate::transport::ws::WsConfig;
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
    /// Line clients' limits and first room.
    pub line: LineConfig,
    /// WebSocket clients' limits and first room.
    pub ws: WsConfig,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Connections at once, per address and per second: the limits, which
    /// can be replaced while the server runs ([`Gate::set_limits`]).
    pub gate: Arc<Gate>,
    /// The tokens clients must present.
    pub access: Access,
    /// Turns TLS on for every kind of client, when set.
    pub tls: Option<TlsAcceptor>,
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
    let access = Arc::new(options.access);
    let app = http::router(
        AppState {
            hub: hub.clone(),
            ws: Arc::new(options.ws),
            metrics: options.metrics,
            sessions: sessions.clone(),
            access: Arc::clone(&access),
            shutdown: shutdown.clone(),
        },
        &options.http,
    );
    let edges = Arc::new(Edges {
        hub: hub.clone(),
        line: Arc::new(options.line),
        access,
        tls: options.tls,
        app,
    });
    let gate = options.gate;
    let refuser = Refuser::new(edges.tls.clone());
    let connection_shutdown = shutdown.clone();
    let stopping = shutdown.clone();
    let accepting = accept::serve(listener, shutdown, move |stream, peer| {
        match gate.admit(peer.addr.ip()) {
            Ok(slot) => {
                let edges = Arc::clone(&edges);
                let shutdown = connection_shutdown.clone();
                Either::Left(async move { edges.dispatch(stream, peer, slot, shutdown).await })
            }
            Err(refused) => Either::Right(refuser.refuse(stream, peer, refused)),
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
    line: Arc<LineConfig>,
    access: Arc<Access>,
    tls: Option<TlsAcceptor>,
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
        self.serve_as(kind, rewind(first, session), true, connection)
            .await
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
                let admission = Box::pin(line::authenticate(
                    &mut stream,
                    &self.access,
                    &self.line,
                    &shutdown,
                ));
                let Admission::In(input) = admission.await? else {
                    return Ok(Ended::Closed);
                };
                // A client that gave the token has said its first line.
                let spoken = self.access.client_token_required();
                let (hub, config) = (self.hub.clone(), Arc::clone(&self.line));
                line::serve(stream, input, peer, tls, spoken, hub, &config).await?;
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

/// A stream whose first bytes were read to tell the client apart: they are
/// read again first, then the rest.
type Rewound<S> = Join<Chain<Cursor<Vec<u8>>, ReadHalf<S>>, WriteHalf<S>>;

/// Puts `first` back in front of `stream`.
fn rewind<S: AsyncRead + AsyncWrite>(mut first: Vec<u8>, stream: S) -> Rewound<S> {
    first.shrink_to_fit();
    let (read, write) = tokio::io::split(stream);
    tokio::io::join(Cursor::new(first).chain(read), write)
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
