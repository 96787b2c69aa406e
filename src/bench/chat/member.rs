//! One `bench chat` connection: a line client, a WebSocket speaking the
//! JSON protocol, or a Socket.IO client (Engine.IO v4 over WebSocket, see
//! [`socketio`]). Each joins a room, says texts and reads what arrives.
//!
//! A line connection reads whatever has arrived in one go and then parses
//! every complete line in it, so a burst costs one read and no per-line trip
//! through the runtime; messages are parsed from bytes without building
//! strings. The client must not be what limits the benchmark: with bursts of
//! 14 messages to each of 1,000 members, reading and parsing a line at a time
//! took the client longer than the server took to send them.

use std::io;

use bytes::{Buf, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::bench::chat::socketio::{self, Packet};
use crate::bench::scan::{decimal, string_after};
use crate::bench::{WsTarget, read_text_line};
use crate::client::connect::ClientSocket;

/// Read buffer of each benchmark WebSocket: the client holds thousands.
const WS_READ_BUFFER: usize = 4096;

/// How much room a line connection's read asks for at least.
const LINE_READ_CHUNK: usize = 4096;

/// A connection that has been greeted and joined the room.
pub struct Member {
    socket: Socket,
    /// What arrived and was not taken yet: complete lines (a WebSocket's
    /// text messages are stored one a line) and the start of the next.
    received: BytesMut,
    /// A Socket.IO server's ping was read and its pong is still to be sent.
    pong_due: bool,
    /// A pong was queued and may not have been flushed yet.
    flush_due: bool,
}

/// The connection under a [`Member`].
enum Socket {
    /// The line protocol (docs/PROTOCOL.md 5.1), over TLS or not.
    Line(Box<MaybeTlsStream<TcpStream>>),
    /// A WebSocket with the JSON protocol (docs/PROTOCOL.md 5.2).
    Ws(Box<ClientSocket>),
    /// A Socket.IO client: Engine.IO packets over a WebSocket.
    EngineIo(Box<ClientSocket>),
}

impl Member {
    /// Greets a line connection (speaking first, so no 250 ms wait) and joins `room`.
    ///
    /// # Errors
    /// The I/O error, or `UnexpectedEof` when the server closes first.
    pub async fn join_line(stream: MaybeTlsStream<TcpStream>, room: &str) -> io::Result<Self> {
        let mut lines = BufReader::new(stream);
        lines
            .get_mut()
            .write_all(format!("/join {room}\n").as_bytes())
            .await?;
        let mut nick = None;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Err(closed_before_joining());
            }
            if let Some(rest) = line.strip_prefix("* welcome ") {
                nick = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(nick) = &nick
                && line.trim_end() == format!("* {nick} joined #{room}")
            {
                let received = BytesMut::from(lines.buffer());
                return Ok(Self::new(
                    Socket::Line(Box::new(lines.into_inner())),
                    received,
                ));
            }
        }
    }

    /// Upgrades `stream` to a WebSocket to `server` and joins `room`.
    ///
    /// # Errors
    /// The handshake's error, or `UnexpectedEof` when the server closes first.
    pub async fn join_ws(stream: TcpStream, server: &WsTarget, room: &str) -> io::Result<Self> {
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0);
        let mut ws = server.open(stream, config).await?;
        let join = json!({"type": "join", "room": room}).to_string();
        ws.send(Message::text(join))
            .await
            .map_err(io::Error::other)?;
        let mut nick = None;
        while let Some(message) = ws.next().await {
            let Message::Text(text) = message.map_err(io::Error::other)? else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            match event["type"].as_str() {
                Some("welcome") => nick = event["nick"].as_str().map(str::to_string),
                Some("joined")
                    if nick.is_some()
                        && event["room"] == room
                        && event["nick"].as_str() == nick.as_deref() =>
                {
                    return Ok(Self::new(Socket::Ws(Box::new(ws)), BytesMut::new()));
                }
                _ => {}
            }
        }
        Err(closed_before_joining())
    }

    /// Opens a Socket.IO session to `server` (its Engine.IO URL), connects to
    /// the main namespace and joins `room`: emits `join` with the room's name
    /// and waits for the server's `joined` with the same name.
    ///
    /// # Errors
    /// The handshake's error, the server's refusal to connect, or
    /// `UnexpectedEof` when the server closes first.
    pub async fn join_socketio(
        stream: TcpStream,
        server: &WsTarget,
        room: &str,
    ) -> io::Result<Self> {
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0);
        let mut ws = server.open(stream, config).await?;
        let room = Value::from(room);
        let joined = room.to_string();
        while let Some(message) = ws.next().await {
            let Message::Text(text) = message.map_err(io::Error::other)? else {
                continue;
            };
            let reply = match socketio::parse(text.as_bytes()) {
                Some(Packet::Open) => socketio::CONNECT.to_string(),
                Some(Packet::Connected) => socketio::event("join", &room),
                Some(Packet::Ping) => socketio::PONG.to_string(),
                Some(Packet::Event {
                    name: b"joined",
                    args,
                }) if args == joined.as_bytes() => {
                    return Ok(Self::new(Socket::EngineIo(Box::new(ws)), BytesMut::new()));
                }
                Some(Packet::ConnectError(reason)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!(
                            "the Socket.IO server refused the connection: {}",
                            String::from_utf8_lossy(reason)
                        ),
                    ));
                }
                Some(Packet::Close | Packet::Disconnected) => break,
                _ => continue,
            };
            ws.send(Message::text(reply))
                .await
                .map_err(io::Error::other)?;
        }
        Err(closed_before_joining())
    }

    /// A member on `socket`, with what was read past its join.
    fn new(socket: Socket, received: BytesMut) -> Self {
        Self {
            socket,
            received,
            pong_due: false,
            flush_due: false,
        }
    }

    /// Says `text` in `room`.
    ///
    /// # Errors
    /// The write's error.
    pub async fn say(&mut self, room: &str, text: &str) -> io::Result<()> {
        match &mut self.socket {
            Socket::Line(stream) => stream.write_all(format!("{text}\n").as_bytes()).await,
            Socket::Ws(ws) => {
                let say = json!({"type": "say", "room": room, "text": text}).to_string();
                ws.send(Message::text(say)).await.map_err(io::Error::other)
            }
            Socket::EngineIo(ws) => {
                let say = socketio::event("say", &json!({"room": room, "text": text}));
                ws.send(Message::text(say)).await.map_err(io::Error::other)
            }
        }
    }

    /// Waits for what arrives next (all a line connection has, or one text
    /// message) and keeps it for [`Self::take_deliveries`]; `false` once the
    /// server has closed. Cancel-safe, so it can race a timer: a Socket.IO
    /// server's ping is answered here, by a pong that is queued whole or not
    /// at all, and flushed until it went out.
    ///
    /// # Errors
    /// The read's error.
    pub async fn receive(&mut self) -> io::Result<bool> {
        match &mut self.socket {
            Socket::Line(stream) => {
                self.received.reserve(LINE_READ_CHUNK);
                Ok(stream.read_buf(&mut self.received).await? > 0)
            }
            Socket::Ws(ws) => read_text_line(ws.as_mut(), &mut self.received).await,
            Socket::EngineIo(ws) => loop {
                if self.pong_due {
                    ws.feed(Message::text(socketio::PONG))
                        .await
                        .map_err(io::Error::other)?;
                    self.pong_due = false;
                    self.flush_due = true;
                }
                if self.flush_due {
                    ws.flush().await.map_err(io::Error::other)?;
                    self.flush_due = false;
                }
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => match socketio::parse(text.as_bytes()) {
                        Some(Packet::Ping) => self.pong_due = true,
                        Some(Packet::Close | Packet::Disconnected) => return Ok(false),
                        _ => {
                            self.received.extend_from_slice(text.as_bytes());
                            self.received.extend_from_slice(b"\n");
                            return Ok(true);
                        }
                    },
                    Some(Ok(Message::Close(_))) | None => return Ok(false),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(io::Error::other(err)),
                }
            },
        }
    }

    /// Hands every complete line or message received so far to `each`, as
    /// `(publisher, seq, nanoseconds)` when it is a benchmark message, and
    /// lets go of it.
    pub fn take_deliveries(&mut self, mut each: impl FnMut(Option<(usize, u64, u64)>)) {
        let text_of = match self.socket {
            Socket::Line(_) => line_text,
            Socket::Ws(_) => json_text,
            Socket::EngineIo(_) => socketio_text,
        };
        let mut taken = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.received[taken..]) {
            let line = &self.received[taken..taken + end];
            each(text_of(line).and_then(parse_benchmark_text));
            taken += end + 1;
        }
        self.received.advance(taken);
    }

    /// Drops what was received (a publisher does not look at it).
    pub fn discard_received(&mut self) {
        self.received.clear();
    }
}

/// The text of a room message line `[#room] nick: text` (nicks and room
/// names hold no `]`, `:` or space).
fn line_text(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let room_on = line.strip_prefix(b"[#")?;
    let after_room = &room_on[memchr::memchr(b']', room_on)? + 1..];
    let nick_on = after_room.strip_prefix(b" ")?;
    nick_on[memchr::memchr(b':', nick_on)? + 1..].strip_prefix(b" ")
}

/// The text of a JSON `message` event. A search rather than a JSON parse:
/// the client must not be what limits the benchmark, and benchmark texts
/// need no escaping.
fn json_text(message: &[u8]) -> Option<&[u8]> {
    memchr::memmem::find(message, br#""type":"message""#)?;
    string_after(message, br#""text":""#)
}

/// The text of a Socket.IO `message` event, `42["message",{…,"text":"…"}]`
/// (a search, as for [`json_text`]).
fn socketio_text(packet: &[u8]) -> Option<&[u8]> {
    match socketio::parse(packet)? {
        Packet::Event {
            name: b"message",
            args,
        } => string_after(args, br#""text":""#),
        _ => None,
    }
}

/// `(publisher, seq, nanoseconds)` from a text `p{publisher}:{seq}:{ns}`.
fn parse_benchmark_text(text: &[u8]) -> Option<(usize, u64, u64)> {
    let mut fields = text.strip_prefix(b"p")?.split(|&byte| byte == b':');
    let publisher = decimal(fields.next()?)?;
    let seq = decimal(fields.next()?)?;
    let ns = decimal(fields.next()?)?;
    let publisher = usize::try_from(publisher).ok()?;
    fields.next().is_none().then_some((publisher, seq, ns))
}

/// The error for a server that closes during the handshake.
fn closed_before_joining() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "closed before joining")
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tokio_tungstenite::WebSocketStream;

    use super::*;

    fn from_line(line: &[u8]) -> Option<(usize, u64, u64)> {
        parse_benchmark_text(line_text(line.strip_suffix(b"\n").unwrap_or(line))?)
    }

    fn from_json(message: &[u8]) -> Option<(usize, u64, u64)> {
        parse_benchmark_text(json_text(message)?)
    }

    /// The next text message a test server reads.
    async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> String {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => text.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_socket_io_member_joins_and_answers_pings() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A Socket.IO server as the bytes go: open, connect, join, a ping
        // between two messages, then the end of the session.
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let open = r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
            ws.send(Message::text(open)).await.unwrap();
            assert_eq!(next_text(&mut ws).await, "40");
            ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
            assert_eq!(next_text(&mut ws).await, r#"42["join","bench"]"#);
            for packet in [
                r#"42["joined","bench"]"#,
                "2",
                r#"42["message",{"room":"bench","from":"s","text":"p0:1:5"}]"#,
            ] {
                ws.send(Message::text(packet)).await.unwrap();
            }
            assert_eq!(next_text(&mut ws).await, "3", "the ping is answered");
            ws.send(Message::text("1")).await.unwrap();
        });
        let target = WsTarget {
            url: format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
            tls: None,
        };
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut member = Member::join_socketio(stream, &target, "bench")
            .await
            .unwrap();
        assert!(member.receive().await.unwrap());
        let mut deliveries = Vec::new();
        member.take_deliveries(|delivery| deliveries.push(delivery));
        assert_eq!(deliveries, [Some((0, 1, 5))]);
        assert!(!member.receive().await.unwrap(), "the session is closed");
        server.await.unwrap();
    }

    fn from_socketio(packet: &[u8]) -> Option<(usize, u64, u64)> {
        parse_benchmark_text(socketio_text(packet)?)
    }

    #[test]
    fn deliveries_are_read_from_socket_io_events() {
        assert_eq!(
            from_socketio(
                br#"42["message",{"room":"bench","from":"Xy_4-kTq0AAAB","text":"p2:7:99"}]"#
            ),
            Some((2, 7, 99))
        );
        assert_eq!(from_socketio(br#"42["joined","bench"]"#), None);
        assert_eq!(
            from_socketio(br#"42["notice",{"text":"p1:2:3"}]"#),
            None,
            "only message events"
        );
        assert_eq!(from_socketio(b"2"), None);
        assert_eq!(from_socketio(br#"42["message",{"text":"hello"}]"#), None);
    }

    #[test]
    fn deliveries_are_read_from_the_line_protocol() {
        assert_eq!(
            from_line(b"[#bench] guest-7: p3:41:123456789\n"),
            Some((3, 41, 123_456_789))
        );
        assert_eq!(from_line(b"[#bench] guest-7: hello"), None);
        assert_eq!(from_line(b"* guest-7 joined #bench\n"), None);
        assert_eq!(from_line(b"[#bench] x: p1:2:3:4"), None);
        assert_eq!(from_line(b"[dm] x: p1:2:3"), None);
        assert_eq!(from_line(b"[#bench] x: p1:2:3\r"), Some((1, 2, 3)));
        assert_eq!(from_line(b"[#bench] x: p1::3"), None);
        assert_eq!(from_line(b"[#bench] x: p1:2:+3"), None);
        assert_eq!(
            from_line(b"[#bench] x: p1:2:99999999999999999999"),
            None,
            "beyond u64"
        );
    }

    #[test]
    fn deliveries_are_read_from_the_json_protocol() {
        assert_eq!(
            from_json(
                br#"{"type":"message","room":"bench","id":9,"from":"guest-1","text":"p0:12:345","ts":"2026-11-22T03:02:15.443Z"}"#
            ),
            Some((0, 12, 345))
        );
        assert_eq!(from_json(br#"{"type":"ack","id":9}"#), None);
        assert_eq!(
            from_json(br#"{"type":"joined","room":"bench","nick":"p1:2:3"}"#),
            None
        );
        assert_eq!(
            from_json(br#"{"type":"message","text":"hello","id":1}"#),
            None
        );
        assert_eq!(from_json(br#"{"type":"message","text":"p1:2"#), None);
    }
}
