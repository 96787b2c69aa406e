//! The command line as clap sees it: raw arguments, checked for shape only.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use serde::Serialize;
use switchboard::limits::cidr::TrustList;

/// switchboard: echo servers, netcat-style clients and a chat hub, in one binary.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the chat hub: nc users, browsers and curl in the same rooms.
    Serve(Box<ServeArgs>),
    /// Run an echo server over TCP (default), UDP or WebSocket.
    Echo(EchoArgs),
    /// Send one message and print the first reply, like the Node tutorial's client.
    Send(SendArgs),
    /// Talk to a server interactively: stdin goes out, what arrives goes to stdout.
    Connect(ConnectArgs),
    /// Load-test a server and report rate, latency and the server's cost.
    Bench(BenchArgs),
}

/// Where a server listens.
#[derive(Debug, Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ListenArgs {
    /// Host or IP to listen on; empty (the default) means every interface, IPv4 and IPv6.
    #[arg(long, default_value = "", conflicts_with = "listen")]
    pub host: String,

    /// Port to listen on; 0 lets the OS choose.
    #[arg(long, conflicts_with = "listen")]
    pub port: Option<u16>,

    /// HOST:PORT to listen on, instead of --host and --port.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
}

/// `switchboard serve`. Every field that is a flag is also a key of the
/// `--config` file and a line of `--print-config`, spelled like the long
/// flag (docs/PROTOCOL.md 5.5, Configuration).
#[derive(Debug, Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServeArgs {
    /// Read the flags from this TOML file (`max-connections = 10000`, …);
    /// `SWITCHBOARD_*` variables and the command line override it.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the configuration in effect as TOML (which --config reads
    /// back) and exit, without serving.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Where to listen (default port 8080).
    #[command(flatten)]
    #[serde(flatten)]
    pub listen: ListenArgs,

    /// The most connections served at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,

    /// The most connections at once from one client address (IPv6: from
    /// one /64); 0 for no limit. --trust lists the addresses exempt.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_per_address: usize,

    /// New connections per second from one client address, in bursts of up
    /// to twice as many; 0 for no limit. --trust lists the addresses exempt.
    #[arg(long, default_value_t = 20.0, value_name = "PER_SECOND")]
    pub connect_rate: f64,

    /// Addresses the per-address limits do not apply to (load balancers,
    /// reverse proxies), as CIDR[,CIDR…]; `none` trusts nobody. Loopback by
    /// default: a proxy on the same host makes every client 127.0.0.1.
    #[arg(long, value_name = "CIDRS", default_value = TrustList::DEFAULT)]
    pub trust: String,

    /// The longest line a line client may send, in bytes.
    #[arg(long, default_value_t = 8192, value_name = "BYTES")]
    pub max_line: usize,

    /// Messages a connection may send per second on average, and HTTP posts
    /// per client address (IPv6 per /64); 0 turns the limit off (for
    /// benchmarks).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// Messages a connection may send in a burst.
    #[arg(long, default_value_t = 50)]
    pub burst: u32,

    /// Close a connection after this many seconds without traffic.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub idle_timeout: u64,

    /// Close a line connection that says nothing for this many seconds after
    /// its greeting; until its first line it is in no room and nobody sees it.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub silent_timeout: u64,

    /// Events queued per connection before it is disconnected as too slow.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,

    /// The most rooms at once: a join or post that would make one more is
    /// refused (with --memory, the memberless room idle longest is forgotten
    /// instead, history and all).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_rooms: usize,

    /// Rooms larger than this get no join/part notices.
    #[arg(long, default_value_t = 100)]
    pub presence_limit: usize,

    /// The largest WebSocket message accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    pub max_ws_message: usize,

    /// The largest HTTP request body accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    pub max_body: usize,

    /// Seconds between the server's WebSocket pings.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub ping_interval: u64,

    /// Require this token from every client: HTTP `Authorization: Bearer T`,
    /// `/ws?token=T`, or `/auth T` first on a line connection.
    #[arg(
        long,
        value_name = "T",
        env = "SWITCHBOARD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Require this token for the connection diary (`/api/connections`, `/diary`).
    #[arg(
        long,
        value_name = "T",
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Serve TLS with this PEM certificate chain (with --tls-key), for every
    /// kind of client on the same port; plain clients are still served.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve TLS with a certificate for localhost made at startup (for
    /// development: clients must skip verification, e.g. `curl -k`).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// Where history lives: a SQLite database in this directory, made if
    /// missing, which one server at a time may use.
    #[arg(
        long,
        value_name = "DIR",
        env = "SWITCHBOARD_DATA",
        default_value = "./switchboard-data"
    )]
    pub data: PathBuf,

    /// Keep history in memory only, nothing on disk: gone when the server stops.
    #[arg(long, conflicts_with = "data")]
    pub memory: bool,

    /// What an acknowledged message survives: `normal` a crash of the server
    /// or a `kill -9` (not a power loss, which may take the last commits),
    /// `full` also a power loss, at an fsync per group of messages.
    #[arg(long, value_enum, default_value_t = SyncArg::Normal)]
    pub sync: SyncArg,

    /// Keep at most this many messages per room [default: all on disk;
    /// 10,000 with --memory].
    #[arg(long, value_name = "N")]
    pub keep_messages: Option<u64>,

    /// With --memory: keep at most this many bytes of messages per room
    /// (text and sender, plus about 128 bytes each), the oldest dropped
    /// first [default: 16 MiB].
    #[arg(long, value_name = "BYTES", requires = "memory")]
    pub keep_bytes: Option<usize>,

    /// Delete messages older than this many days (fractions allowed).
    #[arg(long, value_name = "DAYS")]
    pub keep_days: Option<f64>,

    /// Make this server one node of a hub shared through Redis at URL
    /// (`redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://` for TLS): history,
    /// ids, nicks and rooms live there, and nothing on disk here.
    #[arg(
        long,
        value_name = "URL",
        env = "SWITCHBOARD_REDIS",
        hide_env_values = true,
        conflicts_with_all = ["memory", "data"]
    )]
    pub redis: Option<String>,

    /// This node's name among the others (in `/api/connections` and the
    /// cluster's directory) [default: HOSTNAME:PORT].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
}

/// `serve --sync`: how hard SQLite makes each commit durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncArg {
    /// Survives a crash of the process (kill -9), not of the machine.
    Normal,
    /// Survives power loss: an fsync per group commit.
    Full,
}

/// `switchboard echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Where to listen (default port 3000).
    #[command(flatten)]
    pub listen: ListenArgs,

    /// Text put before every reply [default: "Echo: "; none with --ws].
    #[arg(long)]
    pub prefix: Option<String>,

    /// Write bytes back untouched (RFC 862 echo).
    #[arg(long, conflicts_with_all = ["prefix", "lines"])]
    pub raw: bool,

    /// Prefix each complete line instead of each chunk read.
    #[arg(long)]
    pub lines: bool,

    /// End each connection after its first reply.
    #[arg(long)]
    pub close_after_reply: bool,

    /// Serve UDP datagrams, one reply per datagram.
    #[arg(long, conflicts_with_all = ["ws", "close_after_reply"])]
    pub udp: bool,

    /// Serve WebSocket: each text or binary message comes back as one of the same kind.
    #[arg(long, conflicts_with = "lines")]
    pub ws: bool,
}

/// `switchboard send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The server, as HOST:PORT (or just PORT for localhost).
    #[arg(value_name = "ADDR")]
    pub addr: String,

    /// The message to send; read from stdin when absent.
    pub message: Option<String>,

    /// Send one UDP datagram instead of using TCP.
    #[arg(long)]
    pub udp: bool,

    /// Seconds to wait for the connection and the reply.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub timeout: f64,
}

/// `switchboard connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// HOST:PORT for raw TCP, or a ws:// or wss:// URL.
    #[arg(value_name = "ADDR|URL")]
    pub target: String,

    /// Which server certificates a wss:// connection trusts.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// How a client checks a wss:// server's certificate (`connect`, `bench`).
#[derive(Debug, Args)]
pub struct TlsClientArgs {
    /// For wss://, trust only the CA certificate(s) in this PEM file, instead
    /// of the built-in roots (like curl's --cacert).
    ///
    /// The server's certificate must be issued by a CA certificate in FILE;
    /// the Mozilla roots built into switchboard are then not used. A
    /// self-signed server certificate not marked CA:TRUE may be its own CA.
    /// Ignored, with a warning, for ws:// and TCP.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// For wss://, do not verify the server's certificate at all, like
    /// `curl -k`: FOR DEVELOPMENT ONLY.
    ///
    /// Meant for servers such as `serve --tls-self-signed`. The connection
    /// is still encrypted, but anyone on the network path can pretend to be
    /// the server and read and change the traffic. Ignored, with a warning,
    /// for ws:// and TCP.
    #[arg(short = 'k', long, conflicts_with = "cacert")]
    pub insecure: bool,
}

/// `switchboard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What kind of load.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// The kinds of load `bench` generates.
#[derive(Debug, Subcommand)]
pub enum BenchMode {
    /// Closed-loop request/reply against any echo server (prefixing ones included).
    Echo(BenchEchoArgs),
    /// Open many connections, hold them idle, report the server's memory per connection.
    Idle(BenchIdleArgs),
    /// Fan-out through a chat hub: subscribers in one room, publishers at a set rate.
    Chat(BenchChatArgs),
    /// Acknowledged messages/s and ack latency of a chat hub: publishers in rooms, each say acked once logged.
    Publish(BenchPublishArgs),
}

/// Options every bench mode shares.
#[derive(Debug, Args)]
pub struct BenchCommon {
    /// The server's process id: report its CPU time per message and its
    /// memory (`bench chat` against several nodes: once per node, summed).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Spread connections over this many source addresses 127.0.0.1, 127.0.0.2, …
    /// [default: one per 5,000 connections]
    #[arg(long)]
    pub sources: Option<usize>,

    /// Which server certificates wss:// connections trust.
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// `switchboard bench echo`.
#[derive(Debug, Args)]
pub struct BenchEchoArgs {
    /// The echo server, as HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub addr: String,

    /// Connections to drive.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,

    /// Bytes per request (the last one is a newline).
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub duration: f64,

    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub warmup: f64,

    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// The prefix the server puts before replies (checked on each first reply).
    #[arg(long)]
    pub prefix: Option<String>,

    /// Draw the latency distribution into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,

    /// Options shared with the other modes.
    #[command(flatten)]
    pub common: BenchCommon,
}

/// `switchboard bench idle`.
#[derive(Debug, Args)]
pub struct BenchIdleArgs {
    /// An echo server as HOST:PORT, or a ws:// URL to hold WebSockets to.
    #[arg(value_name = "ADDR|URL")]
    pub addr: String,

    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,

    /// Seconds to hold them idle.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub hold: f64,

    /// Before the hold, each WebSocket sends one text message of this many
    /// bytes: what clients that once talked cost while idle (ws:// only).
    #[arg(long, value_name = "BYTES")]
    pub message_size: Option<usize>,

    /// Options shared with the other modes.
    #[command(flatten)]
    pub common: BenchCommon,
}

/// `switchboard bench chat`.
#[derive(Debug, Args)]
pub struct BenchChatArgs {
    /// The chat hub: HOST:PORT for line clients (tls://HOST:PORT over TLS),
    /// a ws:// or wss:// URL (its /ws) for WebSockets speaking JSON, or
    /// socketio://HOST:PORT for a Socket.IO server; several for the nodes of
    /// one cluster.
    ///
    /// socketio://HOST:PORT[/PATH/] speaks Engine.IO v4 straight over a
    /// WebSocket at PATH (default /socket.io/): each member emits `join` with
    /// the room's name and waits for `joined`, publishers emit `say` with
    /// `{room, text}`, and subscribers read `message` events carrying `text`
    /// (bench/servers/socketio_chat.mjs is such a server).
    ///
    /// Given several (`bench chat A B`), connection i goes to node i mod N,
    /// publishers and subscribers alike, so members and publishers are spread
    /// evenly over the nodes; the report then splits deliveries into
    /// same-node and cross-node ones (publisher on another node than the
    /// subscriber), each with its own latency and losses. Give --pid once per
    /// node to sum their CPU per delivery.
    #[arg(value_name = "ADDR|URL", required = true, num_args = 1..)]
    pub addrs: Vec<String>,

    /// Connections that listen in the room.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,

    /// Connections that send [default: enough to stay at 15 messages/s each].
    #[arg(long)]
    pub publishers: Option<usize>,

    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub duration: f64,

    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub warmup: f64,

    /// The room to use, without `#`.
    #[arg(long, default_value = "bench")]
    pub room: String,

    /// All publishers send at the same instant each period (a burst of one
    /// message per publisher) instead of spread evenly over it.
    #[arg(long)]
    pub in_step: bool,

    /// The process id of the Redis server that joins the nodes: report its
    /// CPU time per message published.
    #[arg(long, value_name = "PID")]
    pub redis_pid: Option<u32>,

    /// Options shared with the other modes.
    #[command(flatten)]
    pub common: BenchCommon,
}

/// `switchboard bench publish`.
#[derive(Debug, Args)]
pub struct BenchPublishArgs {
    /// The chat hub: HOST:PORT for line clients (switched to JSON with
    /// `/json`), or a ws:// URL (its /ws) for WebSockets.
    #[arg(value_name = "ADDR|URL")]
    pub addr: String,

    /// Connections that publish, each a member of one room.
    #[arg(long, default_value_t = 100)]
    pub publishers: usize,

    /// Rooms the publishers are spread over (at most --publishers).
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,

    /// Closed loop: requests in flight per publisher, the next sent as soon
    /// as one is acknowledged (the most the hub acknowledges per second).
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    pub pipeline: usize,

    /// Open loop: messages per second in all, spread evenly in time, instead
    /// of the closed loop (latency then counts from each scheduled send).
    #[arg(long, value_name = "MSG/S")]
    pub rate: Option<f64>,

    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub duration: f64,

    /// Instead of --duration, measure until this many messages were
    /// acknowledged (a long run: does the server's memory stay flat?).
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub messages: Option<u64>,

    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub warmup: f64,

    /// Rooms are named PREFIX-0, PREFIX-1, …
    #[arg(long, default_value = "bench", value_name = "PREFIX")]
    pub room: String,

    /// Options shared with the other modes.
    #[command(flatten)]
    pub common: BenchCommon,
}
