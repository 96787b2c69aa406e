//! A raw TCP client of the chat hub: the line protocol (docs/PROTOCOL.md
//! 5.1), or the JSON protocol after `/json`, one object a line. This module
//! frames and writes ([`LineWire`]) and asks for the token before the client
//! meets the hub ([`authenticate`]); the connection's life is
//! [`crate::transport::connection`]'s.
//!
//! Reads land in a per-thread scratch buffer and only a partial line is
//! kept, so an idle connection holds no buffer.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Need};
use crate::error::Result;
use crate::hub::event::{ErrorCode, Event, Format, Outgoing};
use crate::hub::session::{Command, Limits, Request, Session};
use crate::hub::{ConnectionInfo, Hub, Traffic, Transport};
use crate::net::accept::Peer;
use crate::protocol::{self, Input, line};
use crate::transport::connection::{Connection, Goodbye, Greeting, Lifecycle, Received, Wire};
use crate::transport::framing::{Frame, LineFramer};

/// How much one read asks for.
const READ_CHUNK: usize = 4096;

/// How long a line client has to send `/auth TOKEN` when the server has a token.
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a goodbye may take before the connection is just closed.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// How line connections behave.
#[derive(Clone, Debug)]
pub struct LineConfig {
    /// The longest line accepted, in bytes.
    pub max_line: usize,
    /// Rate and size limits.
    pub limits: Limits,
    /// Idle timeout, the wait for a first line and the room it joins, and
    /// what `/metrics` counts of line clients.
    pub lifecycle: Arc<Lifecycle>,
}

/// Serves one line client until it quits, goes idle, or is kicked by the hub
/// (too slow, or the server stops). `input` holds bytes already read from it
/// (after its `/auth` line); `tls` says whether it came over TLS. It is
/// greeted at once, and joins its first room then when it has `spoken`
/// already (its `/auth` line), else with its first line (docs/PROTOCOL.md 5).
///
/// Registers the client before returning the future, so the future holds
/// only what the connection needs while it lives (every idle client pays
/// for its future's size).
///
/// The future's error is the socket error that ended the connection.
pub fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    input: BytesMut,
    peer: Peer,
    tls: bool,
    spoken: bool,
    hub: Hub,
    config: &LineConfig,
) -> impl Future<Output = Result<()>> + Send + use<S> {
    let info = ConnectionInfo::now(peer.fd, peer.addr, Transport::Tcp, tls);
    let wire = LineWire {
        stream,
        input,
        framer: LineFramer::new(config.max_line),
        ended: false,
        mid_line: false,
    };
    let lifecycle = Arc::clone(&config.lifecycle);
    let first_room = lifecycle.first_line.as_ref().map(|first| &first.room);
    let heard = spoken || first_room.is_none();
    let join_now = first_room.filter(|_| spoken).map(|room| Request {
        command: Command::Join {
            room: room.as_str().to_string(),
            since: None,
        },
        reference: None,
    });
    let greeting = Greeting {
        nick: None,
        requests: join_now.into_iter().collect(),
    };
    let session = Session::open(hub, info, config.limits, heard);
    Connection::new(wire, session, Format::Line, lifecycle, heard).run(greeting)
}

/// A line client's socket: lines in, encoded events out.
pub struct LineWire<S> {
    stream: S,
    /// What was read and not yet taken as lines: at most a partial line
    /// between reads.
    input: BytesMut,
    framer: LineFramer,
    /// The peer half-closed: no more reads.
    ended: bool,
    /// A write was cut short: the peer may have half a line.
    mid_line: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Wire for LineWire<S> {
    /// Polled by hand rather than written as an `async fn`: this future lives
    /// in every idle client's, and as a closure over two references it is
    /// a fraction of the size.
    fn receive(&mut self, traffic: &Traffic) -> impl Future<Output = Received> + Send {
        poll_fn(move |cx| self.poll_receive(cx, traffic))
    }

    async fn send(&mut self, events: &[Arc<Outgoing>], format: Format) -> Result<usize> {
        let bytes = encode(events, format);
        if !bytes.is_empty() {
            // Cleared only when the write completes: one cut short by the
            // hub's kick may have left half a line behind.
            self.mid_line = true;
            write_all_now(&mut self.stream, &bytes).await?;
            self.mid_line = false;
        }
        Ok(bytes.len())
    }

    async fn ping(&mut self) -> Result<()> {
        Ok(())
    }

    async fn close(&mut self, last: &[Arc<Outgoing>], format: Format, goodbye: Goodbye) {
        let notice = match goodbye {
            Goodbye::ServerStopping => Some("server shutting down".to_string()),
            Goodbye::TooSlow { queued } => Some(format!(
                "disconnected: too slow to keep up ({queued} events queued)"
            )),
            Goodbye::Idle(timeout) => Some(format!("closing: idle for {} s", timeout.as_secs())),
            Goodbye::Silent(timeout) => {
                Some(format!("closing: nothing said for {} s", timeout.as_secs()))
            }
            Goodbye::Done => None,
        };
        let mut bytes = Vec::new();
        if self.mid_line {
            // End the line a cut-short write left open, so the goodbye reads whole.
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(&encode(last, format));
        if let Some(notice) = notice {
            bytes.extend_from_slice(&encode(&[Outgoing::new(Event::Notice(notice))], format));
        }
        let farewell = async {
            write_all_now(&mut self.stream, &bytes).await?;
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, farewell).await;
    }
}

impl<S: AsyncRead + Unpin> LineWire<S> {
    /// The next line, or the end: a complete line in the buffer first, else
    /// a read (landing in the thread's scratch buffer, so a connection
    /// waiting here holds none).
    fn poll_receive(&mut self, cx: &mut Context<'_>, traffic: &Traffic) -> Poll<Received> {
        loop {
            if let Some(frame) = self.framer.next(&mut self.input) {
                return Poll::Ready(received(frame, &self.framer));
            }
            if self.input.is_empty() && self.input.capacity() > 0 {
                // Let go of the allocation the lines were cut from.
                self.input = BytesMut::new();
            }
            if self.ended {
                return Poll::Ready(Received::End);
            }
            match ready!(poll_read_available(cx, &mut self.stream, &mut self.input)) {
                Ok(0) => {
                    // Half-closed: a last unterminated line still counts.
                    self.ended = true;
                    if let Some(last) = self.framer.finish(&mut self.input) {
                        return Poll::Ready(received(last, &self.framer));
                    }
                }
                Ok(read) => traffic.received(read),
                Err(err) => return Poll::Ready(Received::Failed(err.into())),
            }
        }
    }
}

/// What a frame is as input: a line of text, or an error to answer it with.
fn received(frame: Frame, framer: &LineFramer) -> Received {
    match frame {
        Frame::TooLong => Received::Refused(Event::error(
            ErrorCode::TooLong,
            format!("line too long (limit {} bytes): dropped", framer.max()),
            None,
        )),
        Frame::Line(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Received::Text(text),
            Err(_) => Received::Refused(Event::error(
                ErrorCode::NotUtf8,
                "line is not valid UTF-8: dropped",
                None,
            )),
        },
    }
}

/// The wire bytes of `events` in `format`: lines, or one JSON object a line.
fn encode(events: &[Arc<Outgoing>], format: Format) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        let encoded = protocol::encoded(event, format);
        if encoded.is_empty() {
            continue;
        }
        bytes.extend_from_slice(&encoded);
        if format == Format::Json {
            bytes.push(b'\n');
        }
    }
    bytes
}

/// What to do with a line sent before the token.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    /// The right token: let the client in.
    Open,
    /// Say this and close (a wrong token, or `/quit`).
    Close(&'static str),
    /// Say this and wait for the token.
    Ask(&'static str),
    /// Nothing to say (an empty line).
    Wait,
}

/// Decides what a line sent before the token gets.
fn gate(frame: Frame, access: &Access) -> Gate {
    const ASK: &str = "! token required: send /auth TOKEN first\n";
    let Frame::Line(bytes) = frame else {
        return Gate::Ask(ASK);
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Gate::Ask(ASK);
    };
    match line::parse(text) {
        Ok(Input::Auth(token)) if access.check(Need::Client, Some(&token)).is_ok() => Gate::Open,
        Ok(Input::Auth(_)) => Gate::Close("! invalid token: goodbye\n"),
        Ok(Input::Quit) => Gate::Close("* bye\n"),
        Ok(Input::Nothing) => Gate::Wait,
        _ => Gate::Ask(ASK),
    }
}

/// Asks a line client for the server's token (`--token`) before it meets the
/// hub: nothing but `/auth TOKEN` is taken until then, a wrong token closes
/// the connection, and the client has [`AUTH_TIMEOUT`] to send it. Without a
/// token to ask for, lets the client straight in.
///
/// # Errors
/// The socket error that ended the connection.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    access: &Access,
    config: &LineConfig,
    shutdown: &CancellationToken,
) -> Result<Admission> {
    if !access.client_token_required() {
        return Ok(Admission::In(BytesMut::new()));
    }
    write_all_now(stream, b"* this server needs a token: send /auth TOKEN\n").await?;
    let mut input = BytesMut::new();
    let mut framer = LineFramer::new(config.max_line);
    let wait_for_token = async {
        loop {
            if read_available(stream, &mut input).await? == 0 {
                return Ok::<_, std::io::Error>(Admission::Out);
            }
            while let Some(frame) = framer.next(&mut input) {
                match gate(frame, access) {
                    Gate::Open => return Ok(Admission::In(std::mem::take(&mut input))),
                    Gate::Close(farewell) => {
                        write_all_now(stream, farewell.as_bytes()).await?;
                        return Ok(Admission::Out);
                    }
                    Gate::Ask(question) => write_all_now(stream, question.as_bytes()).await?,
                    Gate::Wait => {}
                }
            }
        }
    };
    tokio::select! {
        admission = tokio::time::timeout(AUTH_TIMEOUT, wait_for_token) => match admission {
            Ok(admission) => Ok(admission?),
            Err(_) => {
                let notice = b"! no token within the time allowed: goodbye\n";
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, write_all_now(stream, notice)).await;
                Ok(Admission::Out)
            }
        },
        () = shutdown.cancelled() => Ok(Admission::Out),
    }
}

/// Whether a line client may meet the hub.
#[derive(Debug)]
pub enum Admission {
    /// Yes; these bytes arrived after its `/auth` line.
    In(BytesMut),
    /// No: it gave a wrong token, none in time, or left.
    Out,
}

thread_local! {
    /// Where reads land before complete lines are taken out: shared by the
    /// connections of a worker thread, so an idle connection holds no buffer.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Waits for bytes and adds them to the end of `input` (which only holds a
/// partial line between reads); 0 at end of stream. The read lands in the
/// thread's scratch buffer, so a connection waiting here holds none.
async fn read_available<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut BytesMut,
) -> std::io::Result<usize> {
    poll_fn(|cx| poll_read_available(cx, stream, input)).await
}

/// Polls one read into the thread's scratch buffer and adds what came to `input`.
fn poll_read_available<S: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    stream: &mut S,
    input: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut filled = ReadBuf::new(scratch);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut filled))?;
        input.extend_from_slice(filled.filled());
        Poll::Ready(Ok(filled.filled().len()))
    })
}

/// Writes all of `bytes` and flushes them (a TLS stream holds its records
/// until flushed; for plain TCP the flush costs nothing).
async fn write_all_now<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;

    fn guarded() -> Access {
        Access {
            client: Some(Token::new("s3cret")),
            admin: None,
        }
    }

    fn line(text: &str) -> Frame {
        Frame::Line(BytesMut::from(text.as_bytes()))
    }

    #[test]
    fn only_the_right_token_opens_the_gate() {
        assert_eq!(gate(line("/auth s3cret"), &guarded()), Gate::Open);
        assert!(matches!(
            gate(line("/auth guess"), &guarded()),
            Gate::Close(_)
        ));
        assert!(matches!(gate(line("/join #x"), &guarded()), Gate::Ask(_)));
        assert!(matches!(gate(line("hello"), &guarded()), Gate::Ask(_)));
        assert!(matches!(gate(Frame::TooLong, &guarded()), Gate::Ask(_)));
        assert!(matches!(
            gate(line("/quit"), &guarded()),
            Gate::Close("* bye\n")
        ));
        assert_eq!(gate(line(""), &guarded()), Gate::Wait);
    }
}
