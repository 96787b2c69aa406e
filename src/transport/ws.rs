//! WebSocket clients at `/ws` (SPEC 5.2): the JSON protocol, one object per
//! text message, with the join in the query string
//! (`/ws?nick=alice&room=lobby&since=41`).
//!
//! Like a line connection: one task reads requests, writes replies and drains
//! the hub's queue (many events fed, one flush), every write racing the
//! connection's `kicked` token. The server pings every 30 s and closes a
//! connection silent for the idle timeout. Message size, invalid UTF-8 and the
//! rest of RFC 6455 are tungstenite's (close 1009, 1007, …).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures_util::SinkExt;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::error::{Error, Result};
use crate::hub::event::{ErrorCode, Event, Format, Outgoing};
use crate::hub::names::RoomName;
use crate::hub::session::{Command, Limits, Request, Session};
use crate::hub::{ConnectionInfo, Hub, Mailbox, Transport};
use crate::net::accept::Peer;
use crate::protocol::{self, json};

/// The most events written per flush.
const MAX_BATCH: usize = 256;

/// How long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How WebSocket connections behave.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// The largest message accepted, in bytes.
    pub max_message: usize,
    /// Read buffer per connection: small, so idle connections cost little.
    pub read_buffer: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// Close a connection after this long without traffic.
    pub idle_timeout: Duration,
    /// Rate and size limits.
    pub limits: Limits,
    /// The room joined when the query names none.
    pub default_room: RoomName,
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

/// Serves one WebSocket client until it closes, goes idle, is kicked or the server stops.
///
/// # Errors
/// The WebSocket error that ended the connection.
pub async fn serve(
    socket: WebSocket,
    peer: Peer,
    hub: Hub,
    config: Arc<WsConfig>,
    join: JoinQuery,
    shutdown: CancellationToken,
) -> Result<()> {
    let info = ConnectionInfo {
        fd: peer.fd,
        peer: peer.addr,
        transport: Transport::Ws,
        since: SystemTime::now(),
    };
    let mailbox = hub.register(info, &shutdown);
    let id = mailbox.id;
    let connection = WsConnection {
        session: Session::new(hub.clone(), &mailbox, peer.fd, config.limits),
        kicked: Box::pin(mailbox.kicked.clone().cancelled_owned()),
        last_traffic: Instant::now(),
        socket,
        mailbox,
        config,
    };
    let outcome = connection.run(join, &shutdown).await;
    hub.unregister(id);
    outcome
}

/// What woke the connection up.
enum Wake {
    Kicked,
    Received(Option<std::result::Result<Message, axum::Error>>),
    Event(Option<Arc<Outgoing>>),
    Ping,
    Idle,
}

/// One WebSocket client's state.
struct WsConnection {
    socket: WebSocket,
    session: Session,
    mailbox: Mailbox,
    config: Arc<WsConfig>,
    /// Resolves once the hub drops the connection or the server stops.
    kicked: Pin<Box<WaitForCancellationFutureOwned>>,
    /// When the last message went either way.
    last_traffic: Instant,
}

impl WsConnection {
    /// The connection's life: welcome and join, then requests and events.
    async fn run(mut self, join: JoinQuery, shutdown: &CancellationToken) -> Result<()> {
        let greeting = self.greeting(join);
        self.send(greeting).await?;
        let mut pings = tokio::time::interval_at(
            Instant::now() + self.config.ping_interval,
            self.config.ping_interval,
        );
        let idle = tokio::time::sleep(self.config.idle_timeout);
        tokio::pin!(idle);
        loop {
            let wake = tokio::select! {
                biased;
                () = self.kicked.as_mut() => Wake::Kicked,
                message = self.socket.recv() => Wake::Received(message),
                event = self.mailbox.events.recv() => Wake::Event(event),
                _ = pings.tick() => Wake::Ping,
                () = &mut idle => Wake::Idle,
            };
            match wake {
                Wake::Kicked => return self.goodbye(shutdown).await,
                Wake::Received(None) => return Ok(()),
                Wake::Received(Some(Err(err))) => {
                    // Tell the peer why (1007 bad UTF-8, 1009 too big, 1002 protocol).
                    let (code, reason) = close_for(&err);
                    self.close(code, reason).await?;
                    return Err(ws_error(&err));
                }
                Wake::Received(Some(Ok(message))) => {
                    if !self.on_message(message).await? {
                        return Ok(());
                    }
                    self.last_traffic = Instant::now();
                }
                Wake::Event(None) => return Ok(()),
                Wake::Event(Some(first)) => {
                    self.send(vec![first]).await?;
                    self.last_traffic = Instant::now();
                }
                Wake::Ping => self.ping().await?,
                Wake::Idle => {
                    let quiet_until = self.last_traffic + self.config.idle_timeout;
                    if Instant::now() < quiet_until {
                        idle.as_mut().reset(quiet_until);
                        continue;
                    }
                    return self.close(close_code::NORMAL, "idle timeout").await;
                }
            }
        }
    }

    /// The welcome, then the nick and join the URL asked for.
    fn greeting(&mut self, join: JoinQuery) -> Vec<Arc<Outgoing>> {
        let mut greeting = vec![Outgoing::new(self.session.welcome())];
        if let Some(nick) = join.nick {
            greeting.extend(self.session.handle(Request {
                command: Command::Nick(nick),
                reference: None,
            }));
        }
        let room = join
            .room
            .unwrap_or_else(|| self.config.default_room.as_str().to_string());
        greeting.extend(self.session.handle(Request {
            command: Command::Join {
                room,
                since: join.since,
            },
            reference: None,
        }));
        greeting
    }

    /// Handles one received message; `false` when the client closed.
    async fn on_message(&mut self, message: Message) -> Result<bool> {
        metrics::counter!("switchboard_requests_total", "transport" => "ws").increment(1);
        self.mailbox.traffic.received(match &message {
            Message::Text(text) => text.len(),
            Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data.len(),
            Message::Close(_) => 0,
        });
        let replies = match message {
            Message::Text(text) => match json::parse(text.as_str()) {
                Ok(request) => match self.session.admit(&request.reference) {
                    Some(limited) => vec![Outgoing::new(limited)],
                    None => self.session.handle(request),
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
            Message::Ping(_) | Message::Pong(_) => return Ok(true),
        };
        self.send(replies).await?;
        Ok(true)
    }

    /// Sends `events` and whatever is queued already, one message each, one
    /// flush for all; gives up if the connection is kicked meanwhile.
    async fn send(&mut self, mut events: Vec<Arc<Outgoing>>) -> Result<()> {
        self.mailbox.take_queued(&mut events, MAX_BATCH);
        let mut sent = 0;
        let socket = &mut self.socket;
        let write = async {
            for event in &events {
                let encoded = protocol::encoded(event, Format::Json);
                sent += encoded.len();
                let text =
                    Utf8Bytes::try_from(encoded).map_err(|_| axum::Error::new("not UTF-8"))?;
                socket.feed(Message::Text(text)).await?;
            }
            socket.flush().await
        };
        tokio::select! {
            biased;
            () = self.kicked.as_mut() => Ok(()),
            written = write => {
                written.map_err(|err| ws_error(&err))?;
                self.mailbox.traffic.sent(sent);
                metrics::counter!("switchboard_events_sent_total", "transport" => "ws").increment(events.len() as u64);
                Ok(())
            }
        }
    }

    /// Sends a ping, so idle intermediaries keep the connection and a dead peer shows.
    async fn ping(&mut self) -> Result<()> {
        self.socket
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|err| ws_error(&err))
    }

    /// Closes with the reason: the server is stopping, or the client could not keep up.
    async fn goodbye(mut self, shutdown: &CancellationToken) -> Result<()> {
        self.session.disconnect();
        if shutdown.is_cancelled() {
            self.close(close_code::AWAY, "server shutting down").await
        } else {
            self.close(close_code::POLICY, "too slow to keep up").await
        }
    }

    /// Sends a close frame, giving the peer at most [`CLOSE_TIMEOUT`].
    async fn close(&mut self, code: u16, reason: &'static str) -> Result<()> {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.send(Message::Close(Some(frame))))
            .await;
        Ok(())
    }
}

/// The close code and reason for a failed read, as RFC 6455 assigns them.
fn close_for(err: &axum::Error) -> (u16, &'static str) {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = std::error::Error::source(err).and_then(|e| e.downcast_ref::<WsError>());
    match inner {
        Some(WsError::Utf8(_)) => (close_code::INVALID, "text is not valid UTF-8"),
        Some(WsError::Capacity(_)) => (close_code::SIZE, "message too big"),
        _ => (close_code::PROTOCOL, "protocol error"),
    }
}

/// Wraps an axum WebSocket error.
fn ws_error(err: &axum::Error) -> Error {
    Error::WebSocket {
        context: "websocket".into(),
        reason: err.to_string(),
    }
}
