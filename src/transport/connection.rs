//! One connection's life with the hub, written once for every transport, as
//! mini-redis has one `Handler`: greet, then wait for input, a hub event or
//! the timer; parse, ask the session, write what comes back; say goodbye.
//! A transport only says how it frames and writes ([`Wire`]): a raw TCP line
//! client ([`crate::transport::line`]) or a WebSocket ([`crate::transport::ws`]).
//!
//! Every input a client sends counts against its rate limit, whatever it is
//! (a request, a malformed line, a binary WebSocket message). Every write
//! races the hub's kick, so a peer that stops reading cannot hold its task:
//! the hub kicks it when its queue fills. Replies are written before the
//! events queued after them, and a `join` with `since` replays its stored
//! messages, a page at a time, before any live one (docs/PROTOCOL.md 5.2).
//!
//! A line client is silent until its first line (docs/PROTOCOL.md 5): it is
//! greeted, but it is in no room and nobody sees it until it says something;
//! one that says nothing is closed after a short timeout ([`FirstLine`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::hub::Traffic;
use crate::hub::event::{Event, Format, Outgoing};
use crate::hub::queue::{Inbox, Kick, Next};
use crate::hub::session::{Request, Session};
use crate::model::RoomName;
use crate::protocol::{self, Input, line};
use crate::transport::Counters;

/// How a transport moves one client's bytes: the only part of a connection
/// that differs between a line client and a WebSocket.
pub trait Wire {
    /// Waits for the next input from the peer, counting the bytes read in
    /// `traffic`. Cancel-safe: when another wake-up wins the race, nothing
    /// read is lost.
    fn receive(&mut self, traffic: &Traffic) -> impl Future<Output = Received> + Send;

    /// Writes `events` in `format` and flushes them; the bytes written.
    fn send(
        &mut self,
        events: &[Arc<Outgoing>],
        format: Format,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Sends a keep-alive ping, where the transport has one.
    fn ping(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Writes `last`, then says `goodbye` the transport's way and closes,
    /// bounded in time (the peer may not be reading). After a [`Received::End`]
    /// or [`Received::Failed`], `goodbye` is [`Goodbye::Done`].
    fn close(
        &mut self,
        last: &[Arc<Outgoing>],
        format: Format,
        goodbye: Goodbye,
    ) -> impl Future<Output = ()> + Send;
}

/// One input from the peer.
#[derive(Debug)]
pub enum Received {
    /// A line, or a WebSocket text message.
    Text(String),
    /// Input refused with this error (over-long, not UTF-8, binary).
    Refused(Event),
    /// Nothing to act on (a ping or pong).
    Nothing,
    /// The peer is done sending (a half-close, a close frame).
    End,
    /// The connection broke.
    Failed(Error),
}

/// Why the server ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goodbye {
    /// The server is shutting down.
    ServerStopping,
    /// The client did not read its events fast enough; this many were queued.
    TooSlow {
        /// The queue's capacity.
        queued: usize,
    },
    /// Nothing went either way for this long.
    Idle(Duration),
    /// The client said nothing for this long after its greeting.
    Silent(Duration),
    /// The client asked to leave or finished sending.
    Done,
}

/// How connections of one transport behave.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// Close a connection after this long without traffic either way.
    pub idle_timeout: Duration,
    /// Ping this often, for transports that ping.
    pub ping_interval: Option<Duration>,
    /// For transports whose clients may be silent (line clients): how long
    /// one may say nothing, and the room its first line makes it a member of.
    pub first_line: Option<FirstLine>,
    /// What `/metrics` counts of these connections.
    pub counters: Counters,
}

/// What a silent client's first line does, and how long it is waited for.
#[derive(Clone, Debug)]
pub struct FirstLine {
    /// Close a client that says nothing for this long after its greeting.
    pub timeout: Duration,
    /// The room its first line makes it a member of.
    pub room: RoomName,
}

/// What a connection starts with, besides its welcome.
#[derive(Debug, Default)]
pub struct Greeting {
    /// A nick to take before the welcome, so the welcome carries it (`/ws?nick=`).
    pub nick: Option<String>,
    /// Requests carried out right after the welcome (the join of `/ws?room=`).
    pub requests: Vec<Request>,
}

/// Whether the connection goes on after a reaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// What woke the connection up.
enum Wake {
    Received(Received),
    Hub(Next),
    Ping,
    Idle,
    Silent,
}

/// One client's connection to the hub.
pub struct Connection<W> {
    wire: W,
    session: Session,
    events: Inbox,
    format: Format,
    lifecycle: Arc<Lifecycle>,
    /// When the last bytes went either way; while the client is silent,
    /// when it was greeted.
    last_traffic: Instant,
    /// The client has said its first line (or never had to).
    heard: bool,
}

impl<W: Wire + Send> Connection<W> {
    /// A connection over `wire` for the registered `session`, speaking
    /// `format`. One not `heard` yet is silent until its first line, which
    /// `lifecycle` says how long to wait for and which room it joins.
    pub fn new(
        wire: W,
        (session, events): (Session, Inbox),
        format: Format,
        lifecycle: Arc<Lifecycle>,
        heard: bool,
    ) -> Self {
        Self {
            wire,
            session,
            events,
            format,
            heard: heard || lifecycle.first_line.is_none(),
            lifecycle,
            last_traffic: Instant::now(),
        }
    }

    /// The connection's life: the welcome and the `greeting`, the
    /// conversation, then out of the hub. The future's error is what broke
    /// the connection.
    ///
    /// Not an `async fn`: its parameters would be stored in the future for
    /// the connection's whole life, and every idle client would pay. The
    /// greeting runs in a boxed future of its own that hands the connection
    /// back, so the long-lived future holds neither the greeting nor a
    /// second copy of the connection.
    pub fn run(self, greeting: Greeting) -> impl Future<Output = Result<()>> + Send {
        let greeted = Box::pin(self.greeted(greeting));
        async move {
            let (mut connection, greeted) = greeted.await;
            let outcome = match greeted {
                Ok(()) => connection.converse().await,
                Err(err) => Err(err),
            };
            connection.session.disconnect();
            outcome
        }
    }

    /// The connection after its greeting, and how the greeting went.
    async fn greeted(mut self, greeting: Greeting) -> (Self, Result<()>) {
        let outcome = self.greet(greeting).await;
        (self, outcome)
    }

    /// Answers input and forwards events until the connection ends.
    ///
    /// Only the wait lives in this future; each reaction is boxed while it
    /// runs. A future is as big as its biggest state, and every idle client
    /// pays for that size.
    async fn converse(&mut self) -> Result<()> {
        let mut next_ping = self
            .lifecycle
            .ping_interval
            .map(|every| Instant::now() + every);
        let timer = tokio::time::sleep_until(self.timer_due(next_ping));
        tokio::pin!(timer);
        loop {
            let wake = tokio::select! {
                biased;
                received = self.wire.receive(self.events.traffic()) => Wake::Received(received),
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
            if Box::pin(self.react(wake)).await? == Flow::Stop {
                return Ok(());
            }
        }
    }

    /// The welcome (carrying the nick the greeting asks for, or after the
    /// error saying why it cannot be had), then the requests the connection
    /// starts with (the join of the first room).
    async fn greet(&mut self, greeting: Greeting) -> Result<()> {
        let mut replies = Vec::new();
        if let Some(nick) = greeting.nick
            && let Some(refused) = self.session.claim_nick(&nick).await
        {
            replies.push(Outgoing::new(refused));
        }
        replies.push(Outgoing::new(self.session.welcome()));
        for request in greeting.requests {
            replies.extend(self.session.handle(request).await);
        }
        self.respond(replies).await
    }

    /// How long the connection may go without traffic: the idle timeout,
    /// or while the client has not said its first line, the wait for it
    /// (when that is the shorter).
    fn quiet_limit(&self) -> (Duration, Wake) {
        let idle = self.lifecycle.idle_timeout;
        match &self.lifecycle.first_line {
            Some(first) if !self.heard && first.timeout < idle => (first.timeout, Wake::Silent),
            _ => (idle, Wake::Idle),
        }
    }

    /// When the connection's one timer has to fire: at the next ping or at
    /// the end of the idle timeout, whichever is first. One timer rather
    /// than two spares every client a second `Sleep`, and it is not moved on
    /// every message (traffic only pushes the idle deadline it is checked against).
    fn timer_due(&self, next_ping: Option<Instant>) -> Instant {
        let idle_at = self.last_traffic + self.quiet_limit().0;
        next_ping.map_or(idle_at, |ping| ping.min(idle_at))
    }

    /// What the timer firing means now: the idle or silence timeout, a ping
    /// due (the next one scheduled), or nothing (traffic moved the deadline).
    fn on_timer(&self, next_ping: &mut Option<Instant>) -> Option<Wake> {
        let now = Instant::now();
        let (limit, wake) = self.quiet_limit();
        if now >= self.last_traffic + limit {
            return Some(wake);
        }
        match (*next_ping, self.lifecycle.ping_interval) {
            (Some(due), Some(every)) if now >= due => {
                *next_ping = Some(now + every);
                Some(Wake::Ping)
            }
            _ => None,
        }
    }

    /// Acts on what woke the connection up.
    async fn react(&mut self, wake: Wake) -> Result<Flow> {
        let flow = match wake {
            Wake::Hub(Next::Kicked(reason)) => {
                self.goodbye(reason).await;
                Flow::Stop
            }
            Wake::Hub(Next::Closed) => Flow::Stop,
            Wake::Hub(Next::Event(first)) => {
                self.send(vec![first]).await?;
                Flow::Continue
            }
            Wake::Received(received) => self.on_input(received).await?,
            Wake::Ping => {
                self.wire.ping().await?;
                return Ok(Flow::Continue);
            }
            Wake::Idle => {
                let goodbye = Goodbye::Idle(self.lifecycle.idle_timeout);
                self.wire.close(&[], self.format, goodbye).await;
                Flow::Stop
            }
            Wake::Silent => {
                let goodbye = Goodbye::Silent(self.quiet_limit().0);
                self.wire.close(&[], self.format, goodbye).await;
                Flow::Stop
            }
        };
        if self.heard {
            // A silent client's deadline runs from its greeting: input
            // refused before its first line does not move it.
            self.last_traffic = Instant::now();
        }
        Ok(flow)
    }

    /// Handles one input from the peer.
    async fn on_input(&mut self, received: Received) -> Result<Flow> {
        let text = match received {
            Received::Text(text) => text,
            Received::Refused(error) => {
                self.lifecycle.counters.requests.increment(1);
                let reply = self.admitted(error);
                self.send(vec![Outgoing::new(reply)]).await?;
                return Ok(Flow::Continue);
            }
            Received::Nothing => return Ok(Flow::Continue),
            Received::End => {
                // What is queued still goes out (a half-closed line client
                // reads on), then the connection closes as the peer did.
                let last = self.events.take_remaining();
                self.wire.close(&last, self.format, Goodbye::Done).await;
                return Ok(Flow::Stop);
            }
            Received::Failed(err) => {
                // Write out what the wire queued to say why (a close frame).
                self.wire.close(&[], self.format, Goodbye::Done).await;
                return Err(err);
            }
        };
        self.lifecycle.counters.requests.increment(1);
        let parsed = protocol::parse(self.format, &text);
        if !self.heard && !matches!(parsed, Ok(Input::Nothing | Input::Quit)) {
            self.first_words().await?;
        }
        let replies = match parsed {
            Ok(Input::Request(request)) => match self.session.admit(&request.reference) {
                Some(limited) => vec![Outgoing::new(limited)],
                None => self.session.handle(request).await,
            },
            Ok(Input::Nothing) => return Ok(Flow::Continue),
            Ok(Input::Quit) => {
                let bye = Outgoing::new(Event::Notice("bye".into()));
                self.wire.close(&[bye], self.format, Goodbye::Done).await;
                return Ok(Flow::Stop);
            }
            Ok(other) => match self.session.admit(&None) {
                Some(limited) => vec![Outgoing::new(limited)],
                None => self.answer(other),
            },
            Err(error) => vec![Outgoing::new(self.admitted(error))],
        };
        self.respond(replies).await?;
        Ok(Flow::Continue)
    }

    /// The client said its first line: it joins its first room (everyone
    /// there sees it now) before the line is answered.
    async fn first_words(&mut self) -> Result<()> {
        self.heard = true;
        let Some(first) = &self.lifecycle.first_line else {
            return Ok(());
        };
        let room = first.room.clone();
        let joined = self.session.hear(&room);
        self.respond(joined).await
    }

    /// The answer to a line client's own commands.
    fn answer(&mut self, input: Input) -> Vec<Arc<Outgoing>> {
        match input {
            Input::Help => line::HELP
                .iter()
                .map(|l| Outgoing::new(Event::Notice((*l).to_string())))
                .collect(),
            Input::SwitchToJson => {
                self.format = Format::Json;
                vec![Outgoing::new(self.session.welcome())]
            }
            Input::Auth(_) => vec![Outgoing::new(Event::Notice("already let in".into()))],
            Input::Request(_) | Input::Nothing | Input::Quit => Vec::new(),
        }
    }

    /// An error reply, unless the input it answers is over the rate limit
    /// (then the rate limit's error).
    fn admitted(&mut self, error: Event) -> Event {
        let reference = match &error {
            Event::Error { reference, .. } => reference.clone(),
            _ => None,
        };
        self.session.admit(&reference).unwrap_or(error)
    }

    /// Writes `replies`, then the stored messages a `join` with `since`
    /// replays, then what is queued: nothing live overtakes the replay.
    async fn respond(&mut self, replies: Vec<Arc<Outgoing>>) -> Result<()> {
        if !self.session.replaying() {
            return self.send(replies).await;
        }
        self.send_only(replies).await?;
        while let Some(page) = self.session.replay_page().await {
            self.send_only(page).await?;
        }
        self.send(Vec::new()).await
    }

    /// Writes `events` followed by whatever is queued already, in one go.
    async fn send(&mut self, mut events: Vec<Arc<Outgoing>>) -> Result<()> {
        self.events.take_queued(&mut events);
        self.send_only(events).await
    }

    /// Writes `events`, giving up if the hub kicks the connection meanwhile,
    /// or if the write is not done within the idle timeout: a peer that asks
    /// for a history and never reads it would otherwise hold its task and
    /// the encoded reply for ever, since the idle timer only runs between
    /// writes (docs/PROTOCOL.md 5.5).
    async fn send_only(&mut self, events: Vec<Arc<Outgoing>>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.events.kicked() => Ok(()),
            written = self.wire.send(&events, self.format) => {
                self.events.traffic().sent(written?);
                self.lifecycle.counters.events_sent.increment(events.len() as u64);
                Ok(())
            }
            () = tokio::time::sleep(self.lifecycle.idle_timeout) => {
                let stalled = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer read nothing for the idle timeout",
                );
                Err(Error::Socket(stalled))
            }
        }
    }

    /// Leaves the hub at once (the room hears of it now, not after the
    /// goodbye), then tells the client why it is closed: the server is
    /// stopping (after what was queued for it before the stop), or it could
    /// not keep up with its queue.
    async fn goodbye(&mut self, reason: Kick) {
        self.session.disconnect();
        let (last, goodbye) = match reason {
            Kick::ServerStopping => (self.events.take_remaining(), Goodbye::ServerStopping),
            Kick::TooSlow => {
                let queued = self.events.capacity();
                (Vec::new(), Goodbye::TooSlow { queued })
            }
        };
        self.wire.close(&last, self.format, goodbye).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

    use crate::hub::session::Limits;
    use crate::hub::{Hub, HubConfig};
    use crate::log::memory::MemoryLog;
    use crate::log::{MessageLog, Retention};
    use crate::model::{Nick, RoomName};
    use crate::net::accept::Peer;
    use crate::transport::Counters;
    use crate::transport::connection::{FirstLine, Lifecycle};
    use crate::transport::line::{self, LineConfig};

    /// How long a client that has spoken may then stay quiet in these tests.
    const IDLE: Duration = Duration::from_secs(300);

    /// How long a client may say nothing after its greeting in these tests.
    const SILENT: Duration = Duration::from_secs(30);

    /// A line client of a hub served over an in-memory pipe: what it reads,
    /// how it writes, and the connection's task.
    struct Client {
        lines: Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
        writer: tokio::io::WriteHalf<DuplexStream>,
        task: tokio::task::JoinHandle<crate::error::Result<()>>,
    }

    impl Client {
        /// Connects a line client to `hub` with queues of `queue` events.
        fn connect(hub: &Hub) -> Self {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let config = LineConfig {
                max_line: 1024,
                limits: Limits {
                    rate: 0.0,
                    burst: 1,
                    max_text: 1024,
                },
                lifecycle: std::sync::Arc::new(Lifecycle {
                    idle_timeout: IDLE,
                    ping_interval: None,
                    first_line: Some(FirstLine {
                        timeout: SILENT,
                        room: RoomName::parse("lobby").unwrap(),
                    }),
                    counters: Counters::of("tcp"),
                }),
            };
            let peer = Peer {
                addr: "127.0.0.1:50000".parse().unwrap(),
                fd: 9,
            };
            let task = tokio::spawn(line::serve(
                theirs,
                BytesMut::new(),
                peer,
                false,
                false,
                hub.clone(),
                &config,
            ));
            let (reader, writer) = tokio::io::split(ours);
            Self {
                lines: BufReader::new(reader).lines(),
                writer,
                task,
            }
        }

        /// The next line from the server; `None` once it closed.
        async fn line(&mut self) -> Option<String> {
            self.lines.next_line().await.unwrap()
        }

        /// Reads the welcome, then says a first line (`/who`) and reads
        /// what it brings: the client's own join, then the answer.
        async fn speak(&mut self) {
            assert!(self.line().await.unwrap().starts_with("* welcome "));
            self.send("/who").await;
            assert!(self.line().await.unwrap().ends_with(" joined #lobby"));
            assert!(self.line().await.unwrap().starts_with("* #lobby ("));
        }

        /// Sends one line.
        async fn send(&mut self, line: &str) {
            self.writer
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
        }
    }

    async fn hub(queue: usize) -> Hub {
        let log: std::sync::Arc<dyn MessageLog> =
            std::sync::Arc::new(MemoryLog::new(Retention::default()));
        let config = HubConfig {
            presence_limit: 100,
            queue,
            ..HubConfig::default()
        };
        Hub::open(log, None, config).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_greeted_seen_by_nobody_and_closed_after_the_silent_timeout() {
        let hub = hub(16).await;
        let lobby = RoomName::parse("lobby").unwrap();
        let mut silent = Client::connect(&hub);
        assert_eq!(
            silent.line().await.unwrap(),
            "* welcome guest-1 (fd 9) - type /help"
        );
        let mut talker = Client::connect(&hub);
        talker.speak().await;
        assert_eq!(
            hub.who(&lobby).await.unwrap(),
            [Nick::parse("guest-2").unwrap()]
        );
        assert_eq!(hub.rooms().await.unwrap(), [(lobby.clone(), 1, 0)]);
        talker.send("/msg guest-1 are you there?").await;
        assert_eq!(talker.line().await.unwrap(), "! no such nick: guest-1");
        // An empty line and a refused one are not a first line, and do not
        // move the deadline, which runs from the greeting.
        let greeted = tokio::time::Instant::now();
        tokio::time::advance(SILENT / 2).await;
        silent.send("").await;
        silent.writer.write_all(b"\xff\n").await.unwrap();
        assert_eq!(
            silent.line().await.unwrap(),
            "! line is not valid UTF-8: dropped"
        );
        assert_eq!(
            silent.line().await.unwrap(),
            "* closing: nothing said for 30 s"
        );
        let closed_after = greeted.elapsed();
        assert!(
            closed_after >= SILENT && closed_after < SILENT + SILENT / 2,
            "closed {closed_after:?} after the greeting"
        );
        assert_eq!(silent.line().await, None);
        silent.task.await.unwrap().unwrap();
        talker.send("hi").await;
        assert_eq!(talker.line().await.unwrap(), "[#lobby] guest-2: hi");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_speaks_joins_then_is_closed_after_the_idle_timeout_and_not_before() {
        let hub = hub(16).await;
        let mut client = Client::connect(&hub);
        assert_eq!(
            client.line().await.unwrap(),
            "* welcome guest-1 (fd 9) - type /help"
        );
        tokio::time::advance(SILENT / 2).await;
        client.send("/rooms").await;
        assert_eq!(client.line().await.unwrap(), "* guest-1 joined #lobby");
        assert_eq!(client.line().await.unwrap(), "* rooms: #lobby (1)");
        let spoke = tokio::time::Instant::now();
        assert_eq!(client.line().await.unwrap(), "* closing: idle for 300 s");
        assert!(spoke.elapsed() >= IDLE, "traffic moved the deadline");
        assert_eq!(client.line().await, None);
        client.task.await.unwrap().unwrap();
        assert_eq!(
            hub.who(&RoomName::parse("lobby").unwrap()).await.unwrap(),
            []
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_told_it_was_too_slow() {
        let hub = hub(4).await;
        let mut slow = Client::connect(&hub);
        let mut talker = Client::connect(&hub);
        slow.speak().await;
        talker.speak().await;
        // The slow client reads nothing more while the talker floods the room
        // through a pipe the size of a few lines, so its queue fills.
        let flood = "x".repeat(1000);
        for _ in 0..200 {
            talker.send(&flood).await;
            while let Some(line) = talker.line().await {
                if line.starts_with("[#lobby] guest-2") {
                    break;
                }
            }
            if slow.task.is_finished() {
                break;
            }
        }
        let mut last = String::new();
        while let Some(line) = slow.line().await {
            last = line;
        }
        assert_eq!(
            last,
            "* disconnected: too slow to keep up (4 events queued)"
        );
        talker.send("/who").await;
        assert_eq!(talker.line().await.unwrap(), "* #lobby (1): guest-2");
    }

    #[tokio::test]
    async fn a_half_closed_client_gets_its_last_line_answered_then_the_end() {
        let hub = hub(16).await;
        let mut client = Client::connect(&hub);
        client.line().await.unwrap();
        client
            .writer
            .write_all(b"/nick alice\nhello")
            .await
            .unwrap();
        client.writer.shutdown().await.unwrap();
        assert_eq!(client.line().await.unwrap(), "* guest-1 joined #lobby");
        assert_eq!(client.line().await.unwrap(), "* you are now known as alice");
        assert_eq!(client.line().await.unwrap(), "[#lobby] alice: hello");
        assert_eq!(client.line().await, None);
    }
}
