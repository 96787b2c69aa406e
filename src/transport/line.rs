//! A raw TCP client of the chat hub: the line protocol (SPEC 5.1), or the
//! JSON protocol after `/json`, one object a line.
//!
//! One task per connection reads lines, has the session carry them out and
//! writes the replies, and drains the hub's queue for the connection, a batch
//! per wake-up (one write for many events when the room is busy). Every write
//! races the hub's kick, so a peer that stops reading cannot hold the task:
//! the hub kicks it when its queue fills. Reads land in a
//! per-thread scratch buffer and only a partial line is kept, so an idle
//! connection holds no buffer.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Need};
use crate::error::Result;
use crate::hub::event::{ErrorCode, Event, Format, Outgoing};
use crate::hub::queue::{Inbox, Kick, Next};
use crate::hub::session::{Command, Limits, Request, Session};
use crate::hub::{ConnectionInfo, Hub, Transport};
use crate::model::names::RoomName;
use crate::net::accept::Peer;
use crate::protocol::{self, json, line};
use crate::transport::Counters;
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
    /// Close a connection after this long without traffic either way.
    pub idle_timeout: Duration,
    /// Rate and size limits.
    pub limits: Limits,
    /// The room every connection joins first.
    pub default_room: RoomName,
    /// What `/metrics` counts of line clients.
    pub counters: Counters,
}

/// Whether to keep the connection open after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// What woke the connection up.
enum Wake {
    Read(std::io::Result<usize>),
    Hub(Next),
    Idle,
}

/// Serves one line client until it quits, goes idle, or is kicked by the hub
/// (too slow, or the server stops). `input` holds bytes already read from it
/// (after its `/auth` line).
///
/// Registers the client before returning the future, so the future holds
/// only what the connection needs while it lives (every idle client pays
/// for its future's size).
///
/// The future's error is the socket error that ended the connection.
pub fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    input: BytesMut,
    peer: Peer,
    hub: Hub,
    config: Arc<LineConfig>,
) -> impl Future<Output = Result<()>> {
    let info = ConnectionInfo::now(peer.fd, peer.addr, Transport::Tcp);
    let (session, events) = Session::open(hub, info, config.limits);
    let connection = LineConnection {
        last_traffic: Instant::now(),
        stream,
        input,
        framer: LineFramer::new(config.max_line),
        format: Format::Line,
        session,
        events,
        config,
    };
    connection.run()
}

/// One line client's state.
struct LineConnection<S> {
    /// When the last bytes went either way.
    last_traffic: Instant,
    stream: S,
    input: BytesMut,
    framer: LineFramer,
    format: Format,
    session: Session,
    events: Inbox,
    config: Arc<LineConfig>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineConnection<S> {
    /// The connection's life: the conversation, then out of the hub.
    ///
    /// Not an `async fn`: its parameters would be stored twice in the future
    /// (once as arguments, once as locals), and every idle client would pay.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn stores its arguments twice"
    )]
    fn run(mut self) -> impl Future<Output = Result<()>> {
        async move {
            let outcome = self.converse().await;
            self.session.disconnect();
            outcome
        }
    }

    /// Greets, then serves lines and events until the connection ends.
    ///
    /// Only the wait lives in this future; the greeting and each reaction
    /// are boxed while they run. A future is as big as its biggest state,
    /// and every idle client pays for that size.
    async fn converse(&mut self) -> Result<()> {
        let greeting = Box::pin(self.greet());
        if greeting.await? == Flow::Close {
            return Ok(());
        }
        let idle = tokio::time::sleep(self.config.idle_timeout);
        tokio::pin!(idle);
        loop {
            let wake = tokio::select! {
                biased;
                read = read_available(&mut self.stream, &mut self.input) => Wake::Read(read),
                next = self.events.next() => Wake::Hub(next),
                () = &mut idle => Wake::Idle,
            };
            let traffic_moved_deadline = matches!(wake, Wake::Idle)
                && !silent_for(idle.as_mut(), self.last_traffic, self.config.idle_timeout);
            if traffic_moved_deadline {
                continue;
            }
            let reaction = Box::pin(self.react(wake));
            if reaction.await? == Flow::Close {
                return Ok(());
            }
            self.last_traffic = Instant::now();
        }
    }

    /// The welcome and the join of the default room, then any lines that
    /// came with the connection.
    async fn greet(&mut self) -> Result<Flow> {
        let mut greeting = vec![Outgoing::new(self.session.welcome())];
        greeting.extend(
            self.session
                .handle(Request {
                    command: Command::Join {
                        room: self.config.default_room.as_str().to_string(),
                        since: None,
                    },
                    reference: None,
                })
                .await,
        );
        self.send(greeting).await?;
        self.on_lines().await
    }

    /// Acts on what woke the connection up.
    async fn react(&mut self, wake: Wake) -> Result<Flow> {
        match wake {
            Wake::Hub(Next::Kicked(reason)) => self.goodbye(reason).await.map(|()| Flow::Close),
            Wake::Idle => {
                let seconds = self.config.idle_timeout.as_secs();
                let notice = Event::Notice(format!("closing: idle for {seconds} s"));
                self.say_last(&[Outgoing::new(notice)])
                    .await
                    .map(|()| Flow::Close)
            }
            Wake::Hub(Next::Closed) => Ok(Flow::Close),
            Wake::Hub(Next::Event(first)) => {
                self.send(vec![first]).await?;
                Ok(Flow::Continue)
            }
            Wake::Read(read) => self.on_read(read?).await,
        }
    }

    /// Handles every complete line that `read` bytes completed.
    async fn on_read(&mut self, read: usize) -> Result<Flow> {
        self.events.traffic().received(read);
        if read == 0 {
            // Half-closed: answer a last unterminated line, then flush what is queued.
            match self.framer.finish(&mut self.input) {
                Some(last) => drop(self.on_frame(last).await?),
                None => self.send(Vec::new()).await?,
            }
            return Ok(Flow::Close);
        }
        self.on_lines().await
    }

    /// Handles every complete line in the input buffer.
    async fn on_lines(&mut self) -> Result<Flow> {
        while let Some(frame) = self.framer.next(&mut self.input) {
            if self.on_frame(frame).await? == Flow::Close {
                return Ok(Flow::Close);
            }
        }
        if self.input.is_empty() {
            // Let go of the allocation the lines were cut from.
            self.input = BytesMut::new();
        }
        Ok(Flow::Continue)
    }

    /// Handles one line (or an over-long one).
    async fn on_frame(&mut self, frame: Frame) -> Result<Flow> {
        self.config.counters.requests.increment(1);
        let text = match frame {
            Frame::TooLong => Err(Event::error(
                ErrorCode::TooLong,
                format!(
                    "line too long (limit {} bytes): dropped",
                    self.config.max_line
                ),
                None,
            )),
            Frame::Line(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| {
                Event::error(ErrorCode::NotUtf8, "line is not valid UTF-8: dropped", None)
            }),
        };
        let (replies, flow) = match text {
            Ok(text) => self.on_text(&text).await,
            Err(error) => (self.admitted(error), Flow::Continue),
        };
        self.send(replies).await?;
        Ok(flow)
    }

    /// Carries out one line of text in the connection's current format.
    async fn on_text(&mut self, text: &str) -> (Vec<Arc<Outgoing>>, Flow) {
        if self.format == Format::Json {
            if text.trim().is_empty() {
                return (Vec::new(), Flow::Continue);
            }
            return match json::parse(text) {
                Ok(request) => (self.admit_and_handle(request).await, Flow::Continue),
                Err(error) => (self.admitted(error), Flow::Continue),
            };
        }
        match line::parse(text) {
            Ok(line::LineInput::Request(request)) => {
                (self.admit_and_handle(request).await, Flow::Continue)
            }
            Ok(line::LineInput::Nothing) => (Vec::new(), Flow::Continue),
            Ok(line::LineInput::Help) => {
                let help = line::HELP
                    .iter()
                    .map(|l| Outgoing::new(Event::Notice((*l).to_string())));
                (help.collect(), Flow::Continue)
            }
            Ok(line::LineInput::SwitchToJson) => {
                self.format = Format::Json;
                (vec![Outgoing::new(self.session.welcome())], Flow::Continue)
            }
            Ok(line::LineInput::Auth(_)) => (
                vec![Outgoing::new(Event::Notice("already let in".into()))],
                Flow::Continue,
            ),
            Ok(line::LineInput::Quit) => (
                vec![Outgoing::new(Event::Notice("bye".into()))],
                Flow::Close,
            ),
            Err(error) => (self.admitted(error), Flow::Continue),
        }
    }

    /// Runs `request` if the rate limit allows it.
    async fn admit_and_handle(&mut self, request: Request) -> Vec<Arc<Outgoing>> {
        match self.session.admit(&request.reference) {
            Some(limited) => vec![Outgoing::new(limited)],
            None => {
                let mut replies = self.session.handle(request).await;
                while let Some(page) = self.session.replay_page().await {
                    replies.extend(page);
                }
                replies
            }
        }
    }

    /// An error reply that counts against the rate limit like any input.
    fn admitted(&mut self, error: Event) -> Vec<Arc<Outgoing>> {
        let reference = match &error {
            Event::Error { reference, .. } => reference.clone(),
            _ => None,
        };
        vec![Outgoing::new(
            self.session.admit(&reference).unwrap_or(error),
        )]
    }

    /// Writes `events` followed by whatever is queued already (so a line's
    /// replies and the events it caused arrive in order), in one write, giving
    /// up if the hub kicks the connection meanwhile.
    async fn send(&mut self, mut events: Vec<Arc<Outgoing>>) -> Result<()> {
        self.events.take_queued(&mut events);
        let bytes = self.encode(&events);
        if bytes.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.events.kicked() => Ok(()),
            written = write_all_now(&mut self.stream, &bytes) => {
                written?;
                self.events.traffic().sent(bytes.len());
                self.config.counters.events_sent.increment(events.len() as u64);
                Ok(())
            }
        }
    }

    /// The wire bytes of `events` in the current format.
    fn encode(&self, events: &[Arc<Outgoing>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for event in events {
            let encoded = protocol::encoded(event, self.format);
            if encoded.is_empty() {
                continue;
            }
            bytes.extend_from_slice(&encoded);
            if self.format == Format::Json {
                bytes.push(b'\n');
            }
        }
        bytes
    }

    /// Leaves the hub at once (the room hears of it now, not after the goodbye),
    /// then tells the client why it is being closed: the server is stopping
    /// (after what was queued for it before the stop), or it could not keep
    /// up with its queue.
    async fn goodbye(&mut self, reason: Kick) -> Result<()> {
        self.session.disconnect();
        let (mut last, notice) = match reason {
            Kick::ServerStopping => (
                self.events.take_remaining(),
                "server shutting down".to_string(),
            ),
            Kick::TooSlow => (
                Vec::new(),
                format!(
                    "disconnected: too slow to keep up ({} events queued)",
                    self.events.capacity()
                ),
            ),
        };
        last.push(Outgoing::new(Event::Notice(notice)));
        self.say_last(&last).await
    }

    /// Writes the last events (bounded in time: the peer may not be reading) and closes.
    async fn say_last(&mut self, events: &[Arc<Outgoing>]) -> Result<()> {
        let bytes = self.encode(events);
        let farewell = async {
            write_all_now(&mut self.stream, &bytes).await?;
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, farewell).await;
        Ok(())
    }
}

/// Whether a connection's idle timer fired after a real silence of `timeout`.
/// The timer is not moved on every bit of traffic (that would cost a timer
/// update per message); when it fires early, it is moved to
/// `last_traffic + timeout` and this says no.
fn silent_for(timer: Pin<&mut Sleep>, last_traffic: Instant, timeout: Duration) -> bool {
    let quiet_until = last_traffic + timeout;
    if Instant::now() < quiet_until {
        timer.reset(quiet_until);
        return false;
    }
    true
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
        Ok(line::LineInput::Auth(token)) if access.check(Need::Client, Some(&token)).is_ok() => {
            Gate::Open
        }
        Ok(line::LineInput::Auth(_)) => Gate::Close("! invalid token: goodbye\n"),
        Ok(line::LineInput::Quit) => Gate::Close("* bye\n"),
        Ok(line::LineInput::Nothing) => Gate::Wait,
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
    poll_fn(|cx| {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut filled = ReadBuf::new(scratch);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut filled))?;
            input.extend_from_slice(filled.filled());
            Poll::Ready(Ok(filled.filled().len()))
        })
    })
    .await
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
