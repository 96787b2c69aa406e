//! One `bench chat` connection: a line client, or a WebSocket speaking the
//! JSON protocol. Either joins a room, says texts and reads what arrives.
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
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::bench::WsTarget;
use crate::bench::scan::{decimal, string_after};
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
}

/// The connection under a [`Member`].
enum Socket {
    /// The line protocol (docs/PROTOCOL.md 5.1).
    Line(TcpStream),
    /// A WebSocket with the JSON protocol (docs/PROTOCOL.md 5.2).
    Ws(Box<ClientSocket>),
}

impl Member {
    /// Greets a line connection (speaking first, so no 250 ms wait) and joins `room`.
    ///
    /// # Errors
    /// The I/O error, or `UnexpectedEof` when the server closes first.
    pub async fn join_line(stream: TcpStream, room: &str) -> io::Result<Self> {
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
                return Ok(Self {
                    socket: Socket::Line(lines.into_inner()),
                    received,
                });
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
                    return Ok(Self {
                        socket: Socket::Ws(Box::new(ws)),
                        received: BytesMut::new(),
                    });
                }
                _ => {}
            }
        }
        Err(closed_before_joining())
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
        }
    }

    /// Waits for what arrives next (all a line connection has, or one text
    /// message) and keeps it for [`Self::take_deliveries`]; `false` once the
    /// server has closed. Cancel-safe, so it can race a timer.
    ///
    /// # Errors
    /// The read's error.
    pub async fn receive(&mut self) -> io::Result<bool> {
        match &mut self.socket {
            Socket::Line(stream) => {
                self.received.reserve(LINE_READ_CHUNK);
                Ok(stream.read_buf(&mut self.received).await? > 0)
            }
            Socket::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        self.received.extend_from_slice(text.as_bytes());
                        self.received.extend_from_slice(b"\n");
                        return Ok(true);
                    }
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
    use super::*;

    fn from_line(line: &[u8]) -> Option<(usize, u64, u64)> {
        parse_benchmark_text(line_text(line.strip_suffix(b"\n").unwrap_or(line))?)
    }

    fn from_json(message: &[u8]) -> Option<(usize, u64, u64)> {
        parse_benchmark_text(json_text(message)?)
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
