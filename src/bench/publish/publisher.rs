//! One `bench publish` connection: a line client switched to the JSON
//! protocol with `/json`, or a WebSocket (JSON from the start). It joins its
//! room, queues `say` requests with numeric `ref`s and picks the acks and
//! errors out of everything that arrives.
//!
//! The connection is split in two halves that are polled side by side, so a
//! publisher goes on reading (every message of its room comes back to it,
//! its own among them) while a write waits for the socket: when an open loop
//! outruns the hub, latency grows instead of the client stalling until the
//! hub drops it as too slow. What arrives is read in one go and classified
//! from bytes: a room message is known by its first bytes and skipped, and
//! only acks and errors are looked into, for their `ref` and `code`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::task::ready;

use bytes::{Buf, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::bench::scan::{number_after, string_after};
use crate::bench::{WsTarget, read_text_line};
use crate::client::connect::ClientSocket;

/// Read buffer of each benchmark WebSocket.
const WS_READ_BUFFER: usize = 4096;

/// How much room a line connection's read asks for at least: a publisher
/// receives every message of its room, many per ack.
const LINE_READ_CHUNK: usize = 16 * 1024;

/// The `ref` of the join request; the `say`s count up from 1.
const JOIN_REF: u64 = 0;

/// A connection that has joined its room, in two halves.
pub struct Publisher {
    /// What the hub sends.
    pub inbound: Inbound,
    /// The requests on their way to the hub.
    pub outbound: Outbound,
}

impl Publisher {
    /// Switches a line connection to JSON and joins `room` (speaking first,
    /// so no 250 ms wait); the texts it will say start with `p{index}:`.
    ///
    /// # Errors
    /// The I/O error, the hub's error reply, or `UnexpectedEof` when the
    /// server closes first.
    pub async fn join_line(stream: TcpStream, room: &str, index: usize) -> io::Result<Self> {
        let mut lines = BufReader::new(stream);
        let hello = format!("/json\n{}\n", join_request(room));
        lines.get_mut().write_all(hello.as_bytes()).await?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line).await? == 0 {
                return Err(closed_before_joining());
            }
            if joined(&line)? {
                let received = BytesMut::from(lines.buffer());
                let (read, write) = lines.into_inner().into_split();
                return Ok(Self {
                    inbound: Inbound {
                        source: Source::Line(read),
                        received,
                    },
                    outbound: Outbound::new(
                        Sink::Line {
                            half: write,
                            pending: BytesMut::new(),
                        },
                        room,
                        index,
                    ),
                });
            }
        }
    }

    /// Upgrades `stream` to a WebSocket to `server` and joins `room`; the
    /// texts it will say start with `p{index}:`.
    ///
    /// # Errors
    /// The handshake's error, the hub's error reply, or `UnexpectedEof`
    /// when the server closes first.
    pub async fn join_ws(
        stream: TcpStream,
        server: &WsTarget,
        room: &str,
        index: usize,
    ) -> io::Result<Self> {
        let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
        let mut ws = server.open(stream, config).await?;
        ws.send(Message::text(join_request(room)))
            .await
            .map_err(io::Error::other)?;
        while let Some(message) = ws.next().await {
            let Message::Text(text) = message.map_err(io::Error::other)? else {
                continue;
            };
            if joined(text.as_bytes())? {
                let (sink, stream) = ws.split();
                return Ok(Self {
                    inbound: Inbound {
                        source: Source::Ws(stream),
                        received: BytesMut::new(),
                    },
                    outbound: Outbound::new(
                        Sink::Ws {
                            half: sink,
                            pending: VecDeque::new(),
                        },
                        room,
                        index,
                    ),
                });
            }
        }
        Err(closed_before_joining())
    }
}

/// The join request, with [`JOIN_REF`].
fn join_request(room: &str) -> String {
    json!({"type": "join", "room": room, "ref": JOIN_REF}).to_string()
}

/// Whether `line` answers the join request. The handshake is no hot path:
/// lines are parsed in full, and what is not JSON (the line protocol's
/// greeting before `/json`) is skipped.
///
/// # Errors
/// The hub's error reply, in words.
fn joined(line: &[u8]) -> io::Result<bool> {
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        return Ok(false);
    };
    match event["type"].as_str() {
        Some("joined") => Ok(event["ref"] == JOIN_REF),
        Some("error") => Err(io::Error::other(format!(
            "the hub refused: {}",
            event["message"].as_str().unwrap_or("no reason given")
        ))),
        _ => Ok(false),
    }
}

/// The error for a server that closes during the handshake.
fn closed_before_joining() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "closed before joining")
}

/// The receiving half.
pub struct Inbound {
    source: Source,
    /// What arrived and was not taken yet: complete lines (a WebSocket's
    /// text messages are stored one a line) and the start of the next.
    received: BytesMut,
}

/// Where an [`Inbound`] reads from.
enum Source {
    /// A line connection speaking JSON.
    Line(OwnedReadHalf),
    /// A WebSocket.
    Ws(SplitStream<ClientSocket>),
}

impl Inbound {
    /// Waits for what arrives next (all a line connection has, or one text
    /// message) and keeps it for [`Self::take_replies`]; `false` once the
    /// server has closed. Cancel-safe, so it can race a timer.
    ///
    /// # Errors
    /// The read's error.
    pub async fn receive(&mut self) -> io::Result<bool> {
        match &mut self.source {
            Source::Line(stream) => {
                self.received.reserve(LINE_READ_CHUNK);
                Ok(stream.read_buf(&mut self.received).await? > 0)
            }
            Source::Ws(ws) => read_text_line(ws, &mut self.received).await,
        }
    }

    /// Hands every complete line or message received so far to `each`,
    /// classified, and lets go of it.
    pub fn take_replies(&mut self, mut each: impl FnMut(Reply<'_>)) {
        let mut taken = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.received[taken..]) {
            each(Reply::of(&self.received[taken..taken + end]));
            taken += end + 1;
        }
        self.received.advance(taken);
    }
}

/// What one line (or WebSocket message) from the hub means to a publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// An `ack`, with its `ref` when that is a number.
    Ack(Option<u64>),
    /// An `error`: its `code`, and the `ref` of the request it refused when
    /// it names one.
    Error {
        /// The error's code (`unavailable`, `rate_limited`, …).
        code: &'a [u8],
        /// The refused request's `ref`.
        reference: Option<u64>,
    },
    /// Anything else: the room's messages, presence, notices.
    Other,
}

impl<'a> Reply<'a> {
    /// Classifies one JSON object the hub sent, looking no further than needed.
    pub fn of(line: &'a [u8]) -> Self {
        const TYPE: &[u8] = br#""type":""#;
        const REF: &[u8] = br#""ref":"#;
        const CODE: &[u8] = br#""code":""#;
        // The bulk of what arrives, known by its start.
        if line.starts_with(br#"{"type":"message""#) {
            return Self::Other;
        }
        match string_after(line, TYPE) {
            Some(b"ack") => Self::Ack(number_after(line, REF)),
            Some(b"error") => Self::Error {
                code: string_after(line, CODE).unwrap_or(b"unknown"),
                reference: number_after(line, REF),
            },
            _ => Self::Other,
        }
    }
}

/// The sending half: requests are queued, then written by [`Outbound::flush`].
pub struct Outbound {
    sink: Sink,
    /// Every `say` up to its text's number: `{"type":"say","room":R,"text":"p{index}:`.
    say_start: String,
}

/// Where an [`Outbound`] writes to, and what waits to be written.
enum Sink {
    /// A line connection speaking JSON: requests one a line.
    Line {
        half: OwnedWriteHalf,
        pending: BytesMut,
    },
    /// A WebSocket: a text message per request.
    Ws {
        half: SplitSink<ClientSocket, Message>,
        pending: VecDeque<Message>,
    },
}

impl Outbound {
    /// Requests to `room` from publisher `index`.
    fn new(sink: Sink, room: &str, index: usize) -> Self {
        // Room names are letters, digits, `_` and `-`: nothing to escape.
        let say_start = format!(r#"{{"type":"say","room":"{room}","text":"p{index}:"#);
        Self { sink, say_start }
    }

    /// Queues `{"type":"say",…,"text":"p{index}:{reference}","ref":reference}`.
    pub fn queue_say(&mut self, reference: u64) {
        match &mut self.sink {
            Sink::Line { pending, .. } => {
                // Writing into a BytesMut cannot fail: it grows.
                let _ = writeln!(
                    pending,
                    r#"{}{reference}","ref":{reference}}}"#,
                    self.say_start
                );
            }
            Sink::Ws { pending, .. } => pending.push_back(Message::text(format!(
                r#"{}{reference}","ref":{reference}}}"#,
                self.say_start
            ))),
        }
    }

    /// Whether requests wait to be written.
    pub fn has_pending(&self) -> bool {
        match &self.sink {
            Sink::Line { pending, .. } => !pending.is_empty(),
            Sink::Ws { pending, .. } => !pending.is_empty(),
        }
    }

    /// Writes what is queued. Cancel-safe: a request leaves the queue only
    /// once the socket (or the WebSocket's buffer) took it.
    ///
    /// # Errors
    /// The write's error.
    pub async fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Line { half, pending } => {
                while !pending.is_empty() {
                    if half.write_buf(pending).await? == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                }
                Ok(())
            }
            Sink::Ws { half, pending } => {
                poll_fn(|cx| {
                    while !pending.is_empty() {
                        ready!(half.poll_ready_unpin(cx)).map_err(io::Error::other)?;
                        if let Some(message) = pending.pop_front() {
                            half.start_send_unpin(message).map_err(io::Error::other)?;
                        }
                    }
                    half.poll_flush_unpin(cx).map_err(io::Error::other)
                })
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_found_with_their_ref() {
        assert_eq!(
            Reply::of(br#"{"type":"ack","id":912,"ref":7}"#),
            Reply::Ack(Some(7))
        );
        assert_eq!(
            Reply::of(br#"{"ref":7,"id":912,"type":"ack"}"#),
            Reply::Ack(Some(7)),
            "in any field order"
        );
        assert_eq!(Reply::of(br#"{"type":"ack","id":3}"#), Reply::Ack(None));
        assert_eq!(
            Reply::of(br#"{"type":"ack","ref":"j1"}"#),
            Reply::Ack(None),
            "not a number"
        );
    }

    #[test]
    fn errors_are_found_with_their_code_and_ref() {
        assert_eq!(
            Reply::of(
                br#"{"type":"error","code":"unavailable","message":"the log said \"ref\":1","ref":12}"#
            ),
            Reply::Error {
                code: b"unavailable",
                reference: Some(12)
            }
        );
        assert_eq!(
            Reply::of(br#"{"type":"error","code":"bad_json","message":"not valid JSON"}"#),
            Reply::Error {
                code: b"bad_json",
                reference: None
            }
        );
        assert_eq!(
            Reply::of(br#"{"type":"error","ref":1}"#),
            Reply::Error {
                code: b"unknown",
                reference: Some(1)
            }
        );
    }

    #[test]
    fn everything_else_is_skipped() {
        for line in [
            &br#"{"type":"message","room":"bench-0","id":9,"from":"guest-1","text":"p0:1","ts":"2026-01-01T00:00:00.000Z"}"#[..],
            br#"{"type":"message","text":"{\"type\":\"ack\",\"ref\":1}"}"#,
            br#"{"type":"joined","room":"bench-0","nick":"guest-2"}"#,
            br#"{"type":"welcome","nick":"guest-2","fd":12}"#,
            b"* welcome guest-2 (fd 12) - type /help",
            b"",
            br#"{"type":"ack"#,
        ] {
            assert_eq!(Reply::of(line), Reply::Other, "{}", line.escape_ascii());
        }
    }

    #[test]
    fn only_the_answer_to_the_join_completes_the_handshake() {
        assert!(joined(br#"{"type":"joined","room":"b-0","nick":"g-1","ref":0}"#).unwrap());
        assert!(!joined(br#"{"type":"joined","room":"b-0","nick":"g-2"}"#).unwrap());
        assert!(!joined(br#"{"type":"joined","room":"lobby","nick":"g-1","ref":5}"#).unwrap());
        assert!(!joined(b"* g-1 joined #lobby\n").unwrap());
        let refused = joined(br#"{"type":"error","code":"invalid_room","message":"bad room"}"#);
        assert_eq!(
            refused.unwrap_err().to_string(),
            "the hub refused: bad room"
        );
    }
}
