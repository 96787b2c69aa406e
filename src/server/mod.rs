//! `switchboard serve`: the chat hub on one port. Each accepted connection is
//! told apart by its first bytes ([`sniff`]) and handed to its transport.

pub mod auth;
pub mod sniff;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::error::Result;
use crate::hub::Hub;
use crate::net::accept::{self, Peer};
use crate::transport::http::{self, AppState, HttpConfig};
use crate::transport::line::{self, Admission, LineConfig};
use crate::transport::ws::WsConfig;
use auth::Access;
use sniff::Kind;

/// The port `switchboard serve` listens on by default.
pub const DEFAULT_PORT: u16 = 8080;

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
    /// The most connections served at once.
    pub max_connections: usize,
    /// The tokens clients must present.
    pub access: Access,
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
            ws: Arc::new(options.ws),
            shutdown: shutdown.clone(),
            metrics: options.metrics,
            sessions: sessions.clone(),
            access: Arc::new(options.access.clone()),
        },
        &options.http,
    );
    let edges = Arc::new(Edges {
        hub,
        line: Arc::new(options.line),
        access: options.access,
        app,
    });
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let max_connections = options.max_connections;
    let connection_shutdown = shutdown.clone();
    accept::serve(listener, shutdown, move |stream, peer| {
        let edges = Arc::clone(&edges);
        let shutdown = connection_shutdown.clone();
        let slot = Arc::clone(&slots).try_acquire_owned();
        async move {
            let Ok(_slot) = slot else {
                let refusal = format!("! server full ({max_connections} connections): try later\n");
                return say_and_close(stream, refusal.as_bytes()).await;
            };
            edges.dispatch(stream, peer, shutdown).await
        }
    })
    .await;
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
    access: Access,
    app: Router,
}

impl Edges {
    /// Hands a connection to the transport its first bytes call for.
    async fn dispatch(
        &self,
        mut stream: TcpStream,
        peer: Peer,
        shutdown: CancellationToken,
    ) -> Result<()> {
        match sniff::sniff(&stream, GREETING_SILENCE).await {
            Kind::Line => {
                let Admission::In(input) =
                    line::authenticate(&mut stream, &self.access, &self.line, &shutdown).await?
                else {
                    return Ok(());
                };
                line::serve(
                    stream,
                    input,
                    peer,
                    self.hub.clone(),
                    Arc::clone(&self.line),
                    shutdown,
                )
                .await
            }
            Kind::Http => http::serve(stream, peer, self.app.clone()).await,
            Kind::Tls => {
                tracing::debug!("{peer}: TLS ClientHello, but TLS is not enabled");
                Ok(())
            }
        }
    }
}

/// Writes `bytes` and closes, giving a slow peer one second.
async fn say_and_close(mut stream: TcpStream, bytes: &[u8]) -> Result<()> {
    let farewell = async {
        stream.write_all(bytes).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), farewell).await;
    Ok(())
}
