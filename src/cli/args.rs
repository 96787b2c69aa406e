//! The command line as clap sees it: raw arguments, checked for shape only.

use clap::{ArgAction, Args, Parser, Subcommand};

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
    /// Run an echo server over TCP (default), UDP or WebSocket.
    Echo(EchoArgs),
    /// Send one message and print the first reply, like the Node tutorial's client.
    Send(SendArgs),
    /// Talk to a server interactively: stdin goes out, what arrives goes to stdout.
    Connect(ConnectArgs),
}

/// Where a server listens.
#[derive(Debug, Args)]
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
}
