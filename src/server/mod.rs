//! `switchboard serve`: the chat hub on one port. Each accepted connection is
//! told apart by its first bytes ([`sniff`]) and handed to its transport.

pub mod sniff;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::hub::Hub;
use crate::net::accept::{self, Peer};
use crate::transport::line::{self, LineConfig};
use sniff::Kind;

/// The port `switchboard serve` listens on by default.
pub const DEFAULT_PORT: u16 = 8080;

/// How long a silent client is waited for before it is greeted as a line client.
pub const GREETING_SILENCE: Duration = Duration::from_millis(250);

/// How the chat server behaves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Line clients' limits and first room.
    pub line: LineConfig,
    /// The most connections served at once.
    pub max_connections: usize,
}

/// Serves the chat hub on `listener` until `shutdown` is cancelled and every
/// connection has said goodbye.
pub async fn run(
    listener: TcpListener,
    hub: Hub,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let line_config = Arc::new(options.line);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let max_connections = options.max_connections;
    let connection_shutdown = shutdown.clone();
    accept::serve(listener, shutdown, move |stream, peer| {
        let hub = hub.clone();
        let config = Arc::clone(&line_config);
        let shutdown = connection_shutdown.clone();
        let slot = Arc::clone(&slots).try_acquire_owned();
        async move {
            let Ok(_slot) = slot else {
                let refusal = format!("! server full ({max_connections} connections): try later\n");
                return say_and_close(stream, refusal.as_bytes()).await;
            };
            dispatch(stream, peer, hub, config, shutdown).await
        }
    })
    .await;
}

/// Hands a connection to the transport its first bytes call for.
async fn dispatch(
    stream: TcpStream,
    peer: Peer,
    hub: Hub,
    config: Arc<LineConfig>,
    shutdown: CancellationToken,
) -> Result<()> {
    match sniff::sniff(&stream, GREETING_SILENCE).await {
        Kind::Line => line::serve(stream, peer, hub, config, shutdown).await,
        Kind::Http => say_and_close(stream, not_yet_http().as_bytes()).await,
        Kind::Tls => {
            tracing::debug!("{peer}: TLS ClientHello, but TLS is not enabled");
            Ok(())
        }
    }
}

/// The answer to HTTP requests until the HTTP API is served on this port.
fn not_yet_http() -> String {
    let body =
        r#"{"error":{"code":"not_implemented","message":"HTTP and WebSocket are not served yet"}}"#;
    format!(
        "HTTP/1.1 501 Not Implemented\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
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
