//! WebSocket clients at `/ws` (docs/PROTOCOL.md 5.2): the JSON protocol,
//! one object per text message, with the join in the query string
//! (`/ws?nick=alice&room=lobby&since=41`). This module frames and writes
//! ([`WsWire`]); the connection's life is
//! [`crate::transport::connection`]'s. The server pings every 30 s; message
//! size, invalid UTF-8 and the rest of RFC 6455 are tungstenite's (close
//! 1009, 1007, …).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};

use crate::error::{Error, Result};
use crate::hub::event::{ErrorCode, Event, Format, Outgoing};
use crate::hub::session::{Command, Limits, Request, Session};
use crate::hub::{ConnectionInfo, Hub, Traffic, Transport};
use crate::limits::Slot;
use crate::model::names::RoomName;
use crate::net::accept::Peer;
use crate::net::websocket::{self, UpgradedSocket};
use crate::protocol;
use crate::transport::connection::{Connection, Goodbye, Greeting, Lifecycle, Received, Wire};

/// How long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How WebSocket connections behave.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// The largest message accepted, in bytes.
    pub max_message: usize,
    /// Rate and size limits.
    pub limits: Limits,
    /// The room joined when the query names none.
    pub default_room: RoomName,
    /// Idle timeout, pings and what `/metrics` counts of WebSocket clients.
    pub lifecycle: Arc<Lifecycle>,
}

/// The join a WebSocket client can ask for in its URL.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct JoinQuery {
    /// The nick to take.
    pub nick: Option<String>,
    /// The room to join (the default room when absent).
    pub room: Option<String>,
    /// Replay stored messages after this id first.
    pub since: Option<u64>,
}

/// Serves one WebSocket client until it closes, goes idle, or is kicked by
/// the hub (too slow, or the server stops). `tls` says whether it came over
/// TLS. Its welcome carries the nick its URL asks for (docs/PROTOCOL.md 5.2).
///
/// Registers the client before returning the future, so the future holds
/// only what the connection needs while it lives (every idle client pays
/// for its future's size).
///
/// The future holds the connection's `slot` under the limits, and logs
/// the connection's end (with the error, if any, that ended it).
pub fn serve(
    socket: UpgradedSocket,
    peer: Peer,
    tls: bool,
    hub: Hub,
    config: &WsConfig,
    join: JoinQuery,
    slot: Slot,
) -> impl Future<Output = ()> + Send + use<> {
    let info = ConnectionInfo::now(peer.fd, peer.addr, Transport::Ws, tls);
    let session = Session::open(hub, info, config.limits, true);
    let connection = Connection::new(
        WsWire { socket },
        session,
        Format::Json,
        Arc::clone(&config.lifecycle),
        true,
    );
    let greeting = greeting(join, &config.default_room);
    connection.run(greeting).map(move |outcome| {
        match outcome {
            Ok(()) => tracing::info!("disconnected {peer}"),
            Err(err) => tracing::info!("disconnected {peer}: {err}"),
        }
        drop(slot);
    })
}

/// The nick and join the URL asked for.
fn greeting(join: JoinQuery, default_room: &RoomName) -> Greeting {
    let room = join
        .room
        .unwrap_or_else(|| default_room.as_str().to_string());
    let request = Request {
        command: Command::Join {
            room,
            since: join.since,
        },
        reference: None,
    };
    Greeting {
        nick: join.nick,
        requests: vec![request],
    }
}

/// A WebSocket client's socket: text messages in, JSON text messages out.
pub struct WsWire {
    socket: UpgradedSocket,
}

impl Wire for WsWire {
    /// Polled by hand rather than written as an `async fn`: this future lives
    /// in every idle client's, and as a closure over two references it is
    /// a fraction of the size.
    fn receive(&mut self, traffic: &Traffic) -> impl Future<Output = Received> + Send {
        poll_fn(move |cx| {
            let next = ready!(self.socket.poll_next(cx));
            Poll::Ready(self.received(next, traffic))
        })
    }

    async fn send(&mut self, events: &[Arc<Outgoing>], _format: Format) -> Result<usize> {
        let sent = feed_all(&mut self.socket, events)
            .await
            .map_err(|err| ws_error(&err))?;
        self.socket.flush().await.map_err(|err| ws_error(&err))?;
        Ok(sent)
    }

    async fn ping(&mut self) -> Result<()> {
        self.socket
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(|err| ws_error(&err))
    }

    async fn close(&mut self, last: &[Arc<Outgoing>], _format: Format, goodbye: Goodbye) {
        if goodbye != Goodbye::Done {
            // After the peer's close frame nothing more may be sent.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, feed_all(&mut self.socket, last)).await;
        }
        let close = match goodbye {
            Goodbye::ServerStopping => Some((CloseCode::Away, "server shutting down")),
            Goodbye::TooSlow { .. } => Some((CloseCode::Policy, "too slow to keep up")),
            Goodbye::Idle(_) => Some((CloseCode::Normal, "idle timeout")),
            Goodbye::Silent(_) => Some((CloseCode::Normal, "nothing said")),
            // The peer closed, or a failed read queued a close frame.
            Goodbye::Done => None,
        };
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let closing = self.socket.send(Message::Close(Some(frame)));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
        }
        // tungstenite hands over a queued close frame (or its reply to the
        // peer's) on a flush.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.flush()).await;
        websocket::write_out(&mut self.socket).await;
    }
}

impl WsWire {
    /// What a message (or the end, or a failed read) is as input. A read
    /// that broke the protocol queues a close frame telling the peer why
    /// (1007 bad UTF-8, 1009 too big, 1002 protocol error), written out as
    /// the connection closes.
    fn received(
        &mut self,
        next: Option<std::result::Result<Message, WsError>>,
        traffic: &Traffic,
    ) -> Received {
        match next {
            None | Some(Ok(Message::Close(_))) => Received::End,
            Some(Ok(Message::Text(text))) => {
                traffic.received(text.len());
                Received::Text(text.as_str().to_owned())
            }
            Some(Ok(Message::Binary(data))) => {
                traffic.received(data.len());
                Received::Refused(Event::error(
                    ErrorCode::BadJson,
                    "binary messages are not understood: send JSON as text",
                    None,
                ))
            }
            Some(Ok(Message::Ping(data) | Message::Pong(data))) => {
                traffic.received(data.len());
                Received::Nothing
            }
            Some(Ok(Message::Frame(_))) => Received::Nothing,
            Some(Err(err)) => {
                let (code, reason) = close_for(&err);
                self.socket.queue_close(CloseFrame {
                    code,
                    reason: reason.into(),
                });
                Received::Failed(ws_error(&err))
            }
        }
    }
}

/// Feeds `events` to the socket as JSON text messages, without flushing;
/// the bytes fed.
async fn feed_all(
    socket: &mut UpgradedSocket,
    events: &[Arc<Outgoing>],
) -> std::result::Result<usize, WsError> {
    let mut sent = 0;
    for event in events {
        let encoded = protocol::encoded(event, Format::Json);
        sent += encoded.len();
        let text = Utf8Bytes::try_from(encoded).map_err(|err| WsError::Utf8(err.to_string()))?;
        socket.feed(Message::Text(text)).await?;
    }
    Ok(sent)
}

/// The close code and reason for a failed read, as RFC 6455 assigns them.
fn close_for(err: &WsError) -> (CloseCode, &'static str) {
    match err {
        WsError::Utf8(_) => (CloseCode::Invalid, "text is not valid UTF-8"),
        WsError::Capacity(_) => (CloseCode::Size, "message too big"),
        _ => (CloseCode::Protocol, "protocol error"),
    }
}

/// Wraps a WebSocket error.
fn ws_error(err: &WsError) -> Error {
    Error::WebSocket {
        context: "websocket".into(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `function` returns, without calling it.
    fn returned_size<A, B, C, D, E, F, G, R>(_function: fn(A, B, C, D, E, F, G) -> R) -> usize {
        size_of::<R>()
    }

    /// Every idle WebSocket pays for its session's future inside a tokio task,
    /// which is allocated in 128-byte steps: up to this size the task takes
    /// 1 KiB, one byte more and it takes 1,152 (1,280 in mimalloc's size
    /// classes). Measured with `bench idle`: 1,975 bytes per idle WebSocket at
    /// 896, 2,190 at 928.
    #[test]
    fn an_idle_session_fits_a_one_kib_task() {
        let size = returned_size(serve);
        assert!(size <= 896, "the session future is {size} bytes");
    }
}
