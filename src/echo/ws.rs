//! The echo server's WebSocket connections: every text or binary message comes
//! back as a message of the same kind, so WebSocket clients and test suites
//! (Autobahn) have a peer. Pings are answered by tungstenite itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

use crate::echo::reply::ReplyStyle;
use crate::echo::{DEFAULT_MAX_WS_MESSAGE, EchoOptions};
use crate::error::{Error, Result};
use crate::net::websocket::{self, UpgradedSocket};

/// How long the goodbye close frame may take on shutdown.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Performs the WebSocket handshake (answering plain HTTP requests with an
/// error status) and echoes messages until the peer closes,
/// the first reply is sent (with `close_after_reply`), or `shutdown` is cancelled.
///
/// # Errors
/// [`Error::WebSocket`] for a failed HTTP exchange or a protocol violation.
pub async fn serve_connection(
    stream: TcpStream,
    options: Arc<EchoOptions>,
    shutdown: CancellationToken,
) -> Result<()> {
    let max_message = options.web_socket.unwrap_or(DEFAULT_MAX_WS_MESSAGE);
    let config = websocket::server_config(max_message);
    let mut ws = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        accepted = websocket::accept(stream, config) => match accepted? {
            Some(ws) => ws,
            None => return Ok(()),
        },
    };
    let outcome = echo_messages(&mut ws, &options, &shutdown).await;
    websocket::write_out(&mut ws).await;
    outcome
}

/// Echoes messages until the peer closes, the first reply is sent (with
/// `close_after_reply`), or `shutdown` is cancelled.
async fn echo_messages(
    ws: &mut UpgradedSocket,
    options: &EchoOptions,
    shutdown: &CancellationToken,
) -> Result<()> {
    let style = &options.style;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return say_goodbye(ws).await,
            message = ws.next() => message,
        };
        let reply = match message {
            None => return Ok(()),
            Some(Err(err)) => return Err(protocol_error("websocket", err)),
            Some(Ok(Message::Text(text))) if style.prefix.is_empty() => Message::Text(text),
            Some(Ok(Message::Text(text))) => {
                Message::text(format!("{}{}", style.prefix, text.as_str()))
            }
            Some(Ok(Message::Binary(data))) if style.prefix.is_empty() => Message::Binary(data),
            Some(Ok(Message::Binary(data))) => Message::Binary(prefixed(style, &data)),
            Some(Ok(_)) => continue,
        };
        ws.send(reply)
            .await
            .map_err(|e| protocol_error("websocket", e))?;
        if options.close_after_reply {
            return ws
                .close(None)
                .await
                .map_err(|e| protocol_error("websocket", e));
        }
    }
}

/// `prefix + payload` as one buffer.
fn prefixed(style: &ReplyStyle, payload: &[u8]) -> Bytes {
    let mut reply = Vec::with_capacity(style.prefix.len() + payload.len());
    reply.extend_from_slice(style.prefix.as_bytes());
    reply.extend_from_slice(payload);
    Bytes::from(reply)
}

/// Sends a "going away" close frame, waiting at most [`GOODBYE_TIMEOUT`].
async fn say_goodbye(ws: &mut UpgradedSocket) -> Result<()> {
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    };
    // A peer too slow to take the goodbye is not worth waiting for.
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, ws.close(Some(frame))).await;
    Ok(())
}

/// Wraps a tungstenite error with what we were doing.
fn protocol_error(context: &str, err: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::WebSocket {
        context: context.into(),
        reason: err.to_string(),
    }
}
