//! The binary's commands: turn checked arguments into library calls.
//!
//! Validation beyond clap's (addresses, timeouts) happens here, before anything
//! runs; errors travel up as `anyhow` and `main` prints them once.

pub mod args;
mod bench;
mod config;
mod reload;
mod serve;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use args::{Cli, Command, ConnectArgs, EchoArgs, ListenArgs, SendArgs, TlsClientArgs};
use rustls::ClientConfig;
use switchboard::client::{connect, send};
use switchboard::echo::{self, EchoOptions, ReplyStyle};
use switchboard::net::addr::HostPort;
use switchboard::net::listener;
use switchboard::net::shutdown::{StopSignals, run_until_signalled};
use switchboard::net::tls::{self, Trust};

/// Parses the command line: the [`Cli`], and clap's record of it (where
/// each `serve` setting came from, which `--config` needs).
///
/// # Errors
/// clap's answer to a command line that does not parse, or to `--help`.
pub fn parse() -> Result<(Cli, ArgMatches), clap::Error> {
    let command = Cli::command().mut_subcommand("serve", config::with_variables);
    let matches = command.try_get_matches()?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((cli, matches))
}

/// Runs the command `cli` names; `matches` is clap's record of it.
///
/// # Errors
/// Whatever stopped the command, worded for the user.
pub async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        // clap put serve's own record there, since serve is what it parsed.
        Command::Serve(_) => {
            serve::run(
                matches
                    .subcommand_matches("serve")
                    .cloned()
                    .unwrap_or_default(),
            )
            .await
        }
        Command::Echo(args) => run_echo(args).await,
        Command::Send(args) => run_send(args).await,
        Command::Connect(args) => run_connect(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

/// `switchboard echo`.
async fn run_echo(args: EchoArgs) -> anyhow::Result<()> {
    let spec = listen_spec(&args.listen, echo::DEFAULT_PORT)?;
    let options = echo_options(&args);
    let shutdown = CancellationToken::new();
    if args.udp {
        let socket = listener::bind_udp(&spec).await?;
        let signals = StopSignals::catch();
        announce(socket.local_addr()?);
        let server = echo::run_udp(socket, options, shutdown.clone());
        run_until_signalled(server, shutdown, signals).await;
    } else {
        let listener = listener::bind_tcp(&spec).await?;
        let signals = StopSignals::catch();
        announce(listener.local_addr()?);
        let server = echo::run_stream(listener, options, shutdown.clone());
        run_until_signalled(server, shutdown, signals).await;
    }
    Ok(())
}

/// The echo behaviour the flags ask for.
fn echo_options(args: &EchoArgs) -> EchoOptions {
    let default_prefix = if args.raw || args.ws {
        ""
    } else {
        echo::DEFAULT_PREFIX
    };
    EchoOptions {
        style: ReplyStyle {
            prefix: args.prefix.as_deref().unwrap_or(default_prefix).to_string(),
            lines: args.lines,
        },
        close_after_reply: args.close_after_reply,
        web_socket: args.ws.then_some(echo::DEFAULT_MAX_WS_MESSAGE),
    }
}

/// Where to listen: `--listen HOST:PORT`, or `--host`/`--port` with a default port.
pub(crate) fn listen_spec(args: &ListenArgs, default_port: u16) -> anyhow::Result<HostPort> {
    match &args.listen {
        Some(listen) => Ok(HostPort::parse(listen)?),
        None => Ok(HostPort {
            host: args
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: args.port.unwrap_or(default_port),
        }),
    }
}

/// Prints the `listening on ADDR:PORT` line scripts wait for.
pub(crate) fn announce(addr: SocketAddr) {
    // A closed stdout must not stop the server: the line is for scripts that care.
    let _ = writeln!(std::io::stdout(), "listening on {addr}");
}

/// `switchboard send`.
async fn run_send(args: SendArgs) -> anyhow::Result<()> {
    let timeout = seconds("timeout", args.timeout, false)?;
    let target = HostPort::parse_remote(&args.addr)?;
    let message = match args.message {
        Some(message) => message.into_bytes(),
        None => read_stdin().await?,
    };
    let options = send::SendOptions {
        target,
        message,
        timeout,
        udp: args.udp,
    };
    let mut reply = send::send(&options).await?;
    if !reply.ends_with(b"\n") {
        reply.push(b'\n');
    }
    write_stdout(&reply)
}

/// A `--FLAG SECONDS` value as a duration, refusing negative, zero (unless
/// `zero_ok`) and absurd values.
fn seconds(flag: &str, value: f64, zero_ok: bool) -> anyhow::Result<Duration> {
    let low_ok = value > 0.0 || (zero_ok && value == 0.0);
    if !(low_ok && value <= 86_400.0) {
        bail!("invalid --{flag} {value}: give seconds between 0 and 86400");
    }
    Ok(Duration::from_secs_f64(value))
}

/// All of stdin, for a message given that way.
async fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut message = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut message)
        .await
        .context("could not read the message from stdin")?;
    Ok(message)
}

/// Writes `bytes` to stdout; a reader that went away (broken pipe) is not an error.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("could not write to stdout")
        }
        _ => Ok(()),
    }
}

/// `switchboard connect`.
async fn run_connect(args: ConnectArgs) -> anyhow::Result<()> {
    let target = connect::Target::parse(&args.target)?;
    // Read a --cacert file now, so a bad one is reported before connecting.
    let tls = client_tls(&args.tls, target.uses_tls())?;
    connect::run(&target, tls, tokio::io::stdin(), tokio::io::stdout()).await?;
    Ok(())
}

/// The TLS client configuration a client's flags ask for, when the
/// connection `uses_tls`. Without TLS (`ws://`, TCP) the flags cannot apply
/// and are ignored with a warning, as curl ignores them for `http://`, so one
/// command line works against both kinds of server.
///
/// # Errors
/// A `--cacert` file that cannot be read or holds no usable certificate.
pub(crate) fn client_tls(
    args: &TlsClientArgs,
    uses_tls: bool,
) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    let asked = match (&args.cacert, args.insecure) {
        (Some(file), _) => Some(("--cacert", Trust::CaFile(file.clone()))),
        (None, true) => Some(("--insecure", Trust::Anything)),
        (None, false) => None,
    };
    match (uses_tls, asked) {
        (true, asked) => {
            let trust = asked.map_or(Trust::BuiltInRoots, |(_, trust)| trust);
            Ok(Some(tls::client_config(&trust)?))
        }
        (false, Some((flag, _))) => {
            tracing::warn!("{flag} is ignored: only wss:// URLs use TLS");
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}
