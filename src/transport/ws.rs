//! WebSocket clients at `/ws` (SPEC 5.2): the JSON protocol, one object per
//! text message, with the join in the query string
//! (`/ws?nick=alice&room=lobby&since=41`).
//!
//! Like a line connection: one task reads requests, writes replies and drains
//! the hub's queue (many events fed, one flush), every write racing the hub's
//! kick. The server pings every 30 s and closes a
//! connection silent for the idle timeout. Message size, invalid UTF-8 and the
//! rest of RFC 6455 are tungstenite's (close 1009, 1007, …).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};

use crate::error::{Error, Result};
use crate::hub::event::{ErrorCode, Event, Format, Outgoing};
use crate::hub::queue::{Inbox, Kick, Next};
use crate::hub::session::{Command, Limits, Request, Session};
use crate::hub::{ConnectionInfo, Hub, Transport};
use crate::model::names::RoomName;
use crate::net::accept::Peer;
use crate::net::websocket::{self, UpgradedSocket};
use crate::protocol::{self, json};
use crate::transport::Counters;

/// How long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How WebSocket connections behave.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// The largest message accepted, in bytes.
    pub max_message: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// Close a connection after this long without traffic.
    pub idle_timeout: Duration,
    /// Rate and size limits.
    pub limits: Limits,
    /// The room joined when the query names none.
    pub default_room: RoomName,
    /// What `/metrics` counts of WebSocket clients.
    pub counters: Counters,
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
/// the hub (too slow, or the server stops).
///
/// Registers the client and prepares its greeting before returning the
/// future, so the future holds only what the connection needs while it lives
/// (every idle client pays for its future's size).
///
/// The future logs the error, if any, that ended the connection.
pub fn serve(
    socket: UpgradedSocket,
    peer: Peer,
    hub: Hub,
    config: Arc<WsConfig>,
    join: JoinQuery,
) -> impl Future<Output = ()> {
    let info = ConnectionInfo::now(peer.fd, peer.addr, Transport::Ws);
    let (session, events) = Session::open(hub, info, config.limits);
    let connection = WsConnection {
        session,
        last_traffic: Instant::now(),
        socket,
        events,
        config,
    };
    connection.run(join)
}

/// What woke the connection up.
enum Wake {
    Received(Option<std::result::Result<Message, WsError>>),
    Hub(Next),
    Ping,
    Idle,
}

/// Whether the connection goes on after a reaction.
enum Flow {
    Continue,
    Stop,
}

/// One WebSocket client's state.
struct WsConnection {
    socket: UpgradedSocket,
    session: Session,
    events: Inbox,
    config: Arc<WsConfig>,
    /// When the last message went either way.
    last_traffic: Instant,
}

impl WsConnection {
    /// The connection's life: the greeting, then requests and events, then
    /// out of the hub.
    ///
    /// Not an `async fn`: its parameters would be stored twice in the future
    /// (once as arguments, once as locals), and every idle client would pay
    /// (measured: 1,496 bytes as an `async fn`, 928 like this).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn stores its arguments twice"
    )]
    fn run(mut self, join: JoinQuery) -> impl Future<Output = ()> {
        async move {
            let greeting = Box::pin(self.greeting(join)).await;
            if let Err(err) = self.converse(greeting).await {
                tracing::debug!("fd {}: {err}", self.session.fd());
            }
            self.session.disconnect();
            Box::pin(websocket::write_out(&mut self.socket)).await;
        }
    }

    /// Sends the greeting, then answers requests and forwards events until
    /// the connection ends.
    ///
    /// Only the wait lives in this future; each reaction is boxed while it
    /// runs. A future is as big as its biggest state, and every idle client
    /// pays for that size.
    async fn converse(&mut self, greeting: Vec<Arc<Outgoing>>) -> Result<()> {
        let welcome = Box::pin(self.send(greeting));
        welcome.await?;
        let mut next_ping = Instant::now() + self.config.ping_interval;
        let timer = tokio::time::sleep_until(self.timer_due(next_ping));
        tokio::pin!(timer);
        loop {
            let wake = tokio::select! {
                biased;
                message = self.socket.next() => Wake::Received(message),
                next = self.events.next() => Wake::Hub(next),
                () = &mut timer => {
                    let due = self.on_timer(&mut next_ping);
                    timer.as_mut().reset(self.timer_due(next_ping));
                    match due {
                        Some(wake) => wake,
                        None => continue,
                    }
                }
            };
            let reaction = Box::pin(self.react(wake));
            if let Flow::Stop = reaction.await? {
                return Ok(());
            }
        }
    }

    /// When the connection's one timer has to fire: at the next ping or at
    /// the end of the idle timeout, whichever is first. One timer rather
    /// than two spares every client a boxed `Sleep`, and it is not moved on
    /// every message (traffic only pushes the idle deadline it is checked against).
    fn timer_due(&self, next_ping: Instant) -> Instant {
        next_ping.min(self.last_traffic + self.config.idle_timeout)
    }

    /// What the timer firing means now: the idle timeout, a ping due (the
    /// next one scheduled), or nothing (traffic moved the idle deadline).
    fn on_timer(&self, next_ping: &mut Instant) -> Option<Wake> {
        let now = Instant::now();
        if now >= self.last_traffic + self.config.idle_timeout {
            return Some(Wake::Idle);
        }
        if now >= *next_ping {
            *next_ping = now + self.config.ping_interval;
            return Some(Wake::Ping);
        }
        None
    }

    /// Acts on what woke the connection up.
    async fn react(&mut self, wake: Wake) -> Result<Flow> {
        match wake {
            Wake::Hub(Next::Kicked(reason)) => {
                self.goodbye(reason).await?;
                return Ok(Flow::Stop);
            }
            Wake::Received(None) | Wake::Hub(Next::Closed) => return Ok(Flow::Stop),
            Wake::Received(Some(Err(err))) => {
                // Tell the peer why (1007 bad UTF-8, 1009 too big, 1002 protocol).
                let (code, reason) = close_for(&err);
                self.close(code, reason).await?;
                return Err(ws_error(&err));
            }
            Wake::Received(Some(Ok(message))) => {
                if !self.on_message(message).await? {
                    return Ok(Flow::Stop);
                }
                self.last_traffic = Instant::now();
            }
            Wake::Hub(Next::Event(first)) => {
                self.send(vec![first]).await?;
                self.last_traffic = Instant::now();
            }
            Wake::Ping => self.ping().await?,
            Wake::Idle => {
                self.close(CloseCode::Normal, "idle timeout").await?;
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// The welcome, then the nick and join the URL asked for.
    async fn greeting(&mut self, join: JoinQuery) -> Vec<Arc<Outgoing>> {
        let mut greeting = vec![Outgoing::new(self.session.welcome())];
        if let Some(nick) = join.nick {
            greeting.extend(
                self.session
                    .handle(Request {
                        command: Command::Nick(nick),
                        reference: None,
                    })
                    .await,
            );
        }
        let room = join
            .room
            .unwrap_or_else(|| self.config.default_room.as_str().to_string());
        greeting.extend(
            self.session
                .handle(Request {
                    command: Command::Join {
                        room,
                        since: join.since,
                    },
                    reference: None,
                })
                .await,
        );
        while let Some(page) = self.session.replay_page().await {
            greeting.extend(page);
        }
        greeting
    }

    /// Handles one received message; `false` when the client closed.
    async fn on_message(&mut self, message: Message) -> Result<bool> {
        self.config.counters.requests.increment(1);
        self.events.traffic().received(match &message {
            Message::Text(text) => text.len(),
            Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data.len(),
            Message::Close(_) | Message::Frame(_) => 0,
        });
        let replies = match message {
            Message::Text(text) => match json::parse(text.as_str()) {
                Ok(request) => match self.session.admit(&request.reference) {
                    Some(limited) => vec![Outgoing::new(limited)],
                    None => {
                        let mut replies = self.session.handle(request).await;
                        while let Some(page) = self.session.replay_page().await {
                            replies.extend(page);
                        }
                        replies
                    }
                },
                Err(error) => vec![Outgoing::new(self.session.admit(&None).unwrap_or(error))],
            },
            Message::Binary(_) => vec![Outgoing::new(Event::error(
                ErrorCode::BadJson,
                "binary messages are not understood: send JSON as text",
                None,
            ))],
            Message::Close(_) => {
                // tungstenite queued the closing reply; send it before going.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.flush()).await;
                return Ok(false);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(true),
        };
        self.send(replies).await?;
        Ok(true)
    }

    /// Sends `events` and whatever is queued already, one message each, one
    /// flush for all; gives up if the hub kicks the connection meanwhile.
    async fn send(&mut self, mut events: Vec<Arc<Outgoing>>) -> Result<()> {
        self.events.take_queued(&mut events);
        let socket = &mut self.socket;
        let write = async {
            let sent = feed_all(socket, &events).await?;
            socket.flush().await?;
            Ok::<_, WsError>(sent)
        };
        tokio::select! {
            biased;
            _ = self.events.kicked() => Ok(()),
            written = write => {
                let sent = written.map_err(|err| ws_error(&err))?;
                self.events.traffic().sent(sent);
                self.config.counters.events_sent.increment(events.len() as u64);
                Ok(())
            }
        }
    }

    /// Sends a ping, so idle intermediaries keep the connection and a dead peer shows.
    async fn ping(&mut self) -> Result<()> {
        self.socket
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(|err| ws_error(&err))
    }

    /// Closes with the reason: the server is stopping (after what was queued
    /// for the client before the stop), or the client could not keep up.
    async fn goodbye(&mut self, reason: Kick) -> Result<()> {
        self.session.disconnect();
        match reason {
            Kick::ServerStopping => {
                let remaining = self.events.take_remaining();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, feed_all(&mut self.socket, &remaining))
                    .await;
                self.close(CloseCode::Away, "server shutting down").await
            }
            Kick::TooSlow => self.close(CloseCode::Policy, "too slow to keep up").await,
        }
    }

    /// Sends a close frame, giving the peer at most [`CLOSE_TIMEOUT`].
    async fn close(&mut self, code: CloseCode, reason: &'static str) -> Result<()> {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.send(Message::Close(Some(frame))))
            .await;
        Ok(())
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
    fn returned_size<A, B, C, D, E, R>(_function: fn(A, B, C, D, E) -> R) -> usize {
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
