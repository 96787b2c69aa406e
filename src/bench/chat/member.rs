//! One `bench chat` connection: a line client, or a WebSocket speaking the
//! JSON protocol. Either joins a room, says texts and reads what arrives, one
//! line or one message at a time.

use std::io;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::bench::WsTarget;
use crate::client::connect::ClientSocket;

/// Read buffer of each benchmark WebSocket: the client holds thousands.
const WS_READ_BUFFER: usize = 4096;

/// A connection that has been greeted and joined the room.
pub enum Member {
    /// The line protocol (SPEC 5.1).
    Line(BufReader<TcpStream>),
    /// A WebSocket with the JSON protocol (SPEC 5.2).
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
                return Ok(Self::Line(lines));
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
                    return Ok(Self::Ws(Box::new(ws)));
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
        match self {
            Self::Line(lines) => {
                lines
                    .get_mut()
                    .write_all(format!("{text}\n").as_bytes())
                    .await
            }
            Self::Ws(ws) => {
                let say = json!({"type": "say", "room": room, "text": text}).to_string();
                ws.send(Message::text(say)).await.map_err(io::Error::other)
            }
        }
    }

    /// Appends the next line or text message to `buf`; `false` once the
    /// server has closed. Cancel-safe, so it can race a timer.
    ///
    /// # Errors
    /// The read's error.
    pub async fn receive(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Self::Line(lines) => Ok(lines.read_until(b'\n', buf).await? > 0),
            Self::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        buf.extend_from_slice(text.as_bytes());
                        return Ok(true);
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(false),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(io::Error::other(err)),
                }
            },
        }
    }

    /// `(publisher, seq, nanoseconds)` if `received` is a benchmark message.
    pub fn delivery(&self, received: &[u8]) -> Option<(usize, u64, u64)> {
        let text = match self {
            Self::Line(_) => line_text(received)?,
            Self::Ws(_) => json_text(received)?,
        };
        parse_benchmark_text(text)
    }
}

/// The text of a room message line `[#room] nick: text`.
fn line_text(line: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    Some(
        line.strip_prefix("[#")?
            .split_once("] ")?
            .1
            .split_once(": ")?
            .1,
    )
}

/// The text of a JSON `message` event. A search rather than a JSON parse:
/// the client must not be what limits the benchmark, and benchmark texts
/// need no escaping.
fn json_text(message: &[u8]) -> Option<&str> {
    const TEXT: &[u8] = br#""text":""#;
    memchr::memmem::find(message, br#""type":"message""#)?;
    let start = memchr::memmem::find(message, TEXT)? + TEXT.len();
    let len = memchr::memchr(b'"', &message[start..])?;
    std::str::from_utf8(&message[start..start + len]).ok()
}

/// `(publisher, seq, nanoseconds)` from a text `p{publisher}:{seq}:{ns}`.
fn parse_benchmark_text(text: &str) -> Option<(usize, u64, u64)> {
    let mut fields = text.strip_prefix('p')?.split(':');
    let publisher = fields.next()?.parse().ok()?;
    let seq = fields.next()?.parse().ok()?;
    let ns = fields.next()?.parse().ok()?;
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
        parse_benchmark_text(line_text(line)?)
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
