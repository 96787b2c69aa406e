//! `bench idle`: open many connections, check each is served, hold them quiet,
//! and report what they cost the server in memory.
//!
//! A raw connection sends one line and waits for a line back before it counts
//! as established (a connect completes in the kernel's backlog before the
//! server accepts): `/rooms`, which an echo server echoes and a chat hub
//! answers to the sender alone, so both can be measured. A WebSocket
//! (`ws://` target) completes its handshake and gets a pong for a ping,
//! before and after the hold.
//! The server's memory is read after the hold, before the connections are
//! checked again.

use std::io;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt, stream};
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::bench::WsTarget;
use crate::bench::dialer::Dialer;
use crate::bench::procfs::{ProcessSample, listen_overflows};
use crate::bench::report::{IdleReport, ServerCost};
use crate::client::connect::ClientSocket;
use crate::error::Result;
use crate::net::addr::HostPort;
use crate::net::fd_limit::raise_fd_limit;

/// How long one check may wait for its echo.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The line a raw connection is checked with: an echo server sends it back,
/// a chat hub's line protocol lists its rooms to the sender only.
const PROBE: &[u8] = b"/rooms\n";

/// How many checks (and the handshakes before them) run at once: few enough
/// that a connection's first bytes follow its connect well inside the 250 ms
/// after which a chat hub takes a silent client for a line client. At 256,
/// 2-3 % of 10,000 `wss://` clients sent their TLS ClientHello too late.
const CHECKS_IN_FLIGHT: usize = 32;

/// What `bench idle` should do.
#[derive(Clone, Debug)]
pub struct IdlePlan {
    /// The echo server.
    pub target: HostPort,
    /// How many connections to open.
    pub connections: usize,
    /// How long to hold them.
    pub hold: Duration,
    /// The server's process, to measure its memory.
    pub server_pid: Option<u32>,
    /// How many loopback source addresses to spread connections over.
    pub sources: usize,
    /// A WebSocket server to open WebSockets to instead of raw TCP connections.
    pub web_socket: Option<WsTarget>,
    /// The size of the text message each WebSocket sends before the hold
    /// (none when 0).
    pub message_size: usize,
}

/// A connection being held: raw TCP to an echo server, or a WebSocket.
enum Held {
    Tcp(TcpStream),
    Ws(Box<ClientSocket>),
}

/// Runs the benchmark, showing progress on `bar`.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Connect`] when not one connection opens.
pub async fn run(plan: &IdlePlan, bar: &ProgressBar) -> Result<IdleReport> {
    let target = plan.target.resolve().await?[0];
    raise_fd_limit();
    let server_pid = plan.server_pid.map(|pid| pid.to_string());
    let sample = || server_pid.as_deref().and_then(ProcessSample::take);
    let server_before = sample();
    let overflows_before = listen_overflows();
    let setup_started = Instant::now();

    bar.set_message(format!("opening {} connections", plan.connections));
    let dialer = Dialer::new(target, plan.sources);
    let established = match &plan.web_socket {
        // Connect and upgrade in one step: a connection that waited 250 ms
        // before its request would be greeted as a line client.
        Some(server) => {
            let handshakes = (0..plan.connections)
                .map(|index| Handshake {
                    dialer: &dialer,
                    index,
                    server,
                    message_size: plan.message_size,
                })
                .collect();
            check_all(handshakes).await
        }
        None => {
            let (opened, _) = dialer.connect_some(plan.connections, &plan.target).await?;
            bar.set_message("checking every connection is served");
            check_all(opened.into_iter().map(Held::Tcp).collect()).await
        }
    };
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    let listen_overflows = listen_overflows()
        .zip(overflows_before)
        .map(|(after, before)| after.saturating_sub(before));

    bar.set_message(format!("holding {} connections", established.len()));
    tokio::time::sleep(plan.hold).await;
    let server_after = sample();
    bar.set_message("checking the connections are still served");
    let established_count = established.len();
    let alive_after_hold = check_all(established).await.len();

    let server = ServerCost::between(plan.server_pid, server_before, server_after);
    let server_bytes_per_connection = server.filter(|_| established_count > 0).map(|cost| {
        cost.rss_kib_after.saturating_sub(cost.rss_kib_before) as f64 * 1024.0
            / established_count as f64
    });
    Ok(IdleReport {
        mode: "idle",
        target: plan.target.to_string(),
        requested: plan.connections,
        established: established_count,
        alive_after_hold,
        errors: (plan.connections - alive_after_hold) as u64,
        setup_seconds,
        hold_seconds: plan.hold.as_secs_f64(),
        listen_overflows,
        server_bytes_per_connection,
        server,
    })
}

/// Something that can be checked for being served.
trait Checkable: Sized {
    /// Proves the server serves it (and completes a WebSocket handshake first).
    async fn check(self) -> io::Result<Held>;
}

/// A connection still to be opened and upgraded to a WebSocket.
struct Handshake<'a> {
    dialer: &'a Dialer,
    /// Which connection it is, to pick its source address.
    index: usize,
    server: &'a WsTarget,
    /// The size of the message to send first (none when 0).
    message_size: usize,
}

impl Checkable for Held {
    async fn check(self) -> io::Result<Held> {
        match self {
            Self::Tcp(stream) => check_echo(stream).await.map(Self::Tcp),
            Self::Ws(ws) => check_pong(*ws).await.map(|ws| Self::Ws(Box::new(ws))),
        }
    }
}

impl Checkable for Handshake<'_> {
    async fn check(self) -> io::Result<Held> {
        let stream = self.dialer.connect(self.index).await?;
        // Small buffers: the client holds thousands of these.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let mut ws = tokio::time::timeout(CHECK_TIMEOUT, self.server.open(stream, config))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if self.message_size > 0 {
            let text = "x".repeat(self.message_size);
            ws.send(Message::text(text))
                .await
                .map_err(io::Error::other)?;
        }
        // A pong proves the connection is served, whether or not the
        // server speaks first (a chat hub's welcome, an echo's silence), and
        // that the message before it was read.
        check_pong(ws).await.map(|ws| Held::Ws(Box::new(ws)))
    }
}

/// Checks every connection; keeps those that answer.
async fn check_all<C: Checkable>(connections: Vec<C>) -> Vec<Held> {
    stream::iter(connections)
        .map(Checkable::check)
        .buffer_unordered(CHECKS_IN_FLIGHT)
        .filter_map(|checked| async move { checked.ok() })
        .collect()
        .await
}

/// Sends a ping and waits for its pong.
async fn check_pong(mut ws: ClientSocket) -> io::Result<ClientSocket> {
    let exchange = async {
        ws.send(Message::Ping(Vec::new().into()))
            .await
            .map_err(io::Error::other)?;
        while let Some(message) = ws.next().await {
            if matches!(message.map_err(io::Error::other)?, Message::Pong(_)) {
                return Ok(());
            }
        }
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
    };
    tokio::time::timeout(CHECK_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(ws)
}

/// Sends the [`PROBE`] line and waits for a line back, after dropping what
/// came before (a chat hub's greeting, the answer to an earlier check).
async fn check_echo(mut stream: TcpStream) -> io::Result<TcpStream> {
    discard_unread(&stream)?;
    let exchange = async {
        stream.write_all(PROBE).await?;
        let mut buf = [0; 256];
        loop {
            let read = stream.read(&mut buf).await?;
            if read == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            if buf[..read].contains(&b'\n') {
                return Ok::<(), io::Error>(());
            }
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(stream)
}

/// Reads and drops whatever has arrived on `stream` so far.
fn discard_unread(stream: &TcpStream) -> io::Result<()> {
    let mut buf = [0; 1024];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}
