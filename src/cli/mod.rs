//! The binary's commands: turn checked arguments into library calls.
//!
//! Validation beyond clap's (addresses, timeouts) happens here, before anything
//! runs; errors travel up as `anyhow` and `main` prints them once.

pub mod args;
mod bench;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use args::{
    Cli, Command, ConnectArgs, EchoArgs, ListenArgs, SendArgs, ServeArgs, SyncArg, TlsClientArgs,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use rustls::ClientConfig;
use switchboard::auth::{Access, Token};
use switchboard::client::{connect, send};
use switchboard::echo::{self, EchoOptions, ReplyStyle};
use switchboard::hub::session::Limits;
use switchboard::hub::{Hub, HubConfig};
use switchboard::log::memory::MemoryLog;
use switchboard::log::sqlite::{Durability, SqliteLog, SqliteOptions};
use switchboard::log::{MessageLog, Retention};
use switchboard::model::names::RoomName;
use switchboard::net::addr::HostPort;
use switchboard::net::fd_limit::raise_fd_limit;
use switchboard::net::listener;
use switchboard::net::shutdown::run_until_signalled;
use switchboard::net::tls::{self, Identity, Trust};
use switchboard::server::{self, ServeOptions};
use switchboard::transport::Counters;
use switchboard::transport::connection::{FirstLine, Lifecycle};
use switchboard::transport::http::HttpConfig;
use switchboard::transport::line::LineConfig;
use switchboard::transport::ws::WsConfig;
use tokio_rustls::TlsAcceptor;

/// Runs the command `cli` names.
///
/// # Errors
/// Whatever stopped the command, worded for the user.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => run_serve(args).await,
        Command::Echo(args) => run_echo(args).await,
        Command::Send(args) => run_send(args).await,
        Command::Connect(args) => run_connect(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

/// `switchboard serve`.
async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let spec = listen_spec(&args.listen, server::DEFAULT_PORT)?;
    // Every flag is checked (and the TLS files read) before the data
    // directory is touched.
    let options = serve_options(&args)?;
    let hub_config = HubConfig {
        presence_limit: args.presence_limit,
        queue: args.queue,
    };
    let hub = Hub::open(open_log(&args)?, hub_config).await?;
    raise_fd_limit();
    let listener = listener::bind_tcp(&spec).await?;
    announce(listener.local_addr()?);
    let shutdown = CancellationToken::new();
    run_until_signalled(
        server::run(listener, hub.clone(), options, shutdown.clone()),
        shutdown,
    )
    .await;
    hub.close().await;
    Ok(())
}

/// How the hub's edges behave, from `serve`'s flags.
///
/// # Errors
/// A flag out of range, or TLS files that cannot be used.
fn serve_options(args: &ServeArgs) -> anyhow::Result<ServeOptions> {
    if args.rate.is_nan() || args.rate < 0.0 {
        bail!("--rate must be 0 (no limit) or a positive number of messages per second");
    }
    if args.burst == 0 || args.queue == 0 || args.max_connections == 0 {
        bail!("--burst, --queue and --max-connections must be positive");
    }
    if args.silent_timeout == 0 {
        bail!("--silent-timeout must be at least 1 second");
    }
    if args.max_line < 64 || args.max_ws_message < 64 || args.max_body < 64 {
        bail!("--max-line, --max-ws-message and --max-body must be at least 64 bytes");
    }
    for (flag, token) in [
        ("--token", &args.token),
        ("--admin-token", &args.admin_token),
    ] {
        if token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty() || t.contains(char::is_whitespace))
        {
            bail!("{flag} must be a non-empty word without spaces");
        }
    }
    // Installed first: the transports' counters are looked up from it once.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| tracing::warn!("metrics are off: {err}"))
        .ok();
    let idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    let default_room = RoomName::parse("lobby").expect("a valid room name");
    let limits = Limits {
        rate: args.rate,
        burst: args.burst,
        max_text: args.max_line.max(args.max_ws_message),
    };
    let lifecycle = |transport, ping_interval, first_line| {
        Arc::new(Lifecycle {
            idle_timeout,
            ping_interval,
            first_line,
            counters: Counters::of(transport),
        })
    };
    let first_line = FirstLine {
        timeout: Duration::from_secs(args.silent_timeout),
        room: default_room.clone(),
    };
    Ok(ServeOptions {
        line: LineConfig {
            max_line: args.max_line,
            limits: Limits {
                max_text: args.max_line,
                ..limits
            },
            lifecycle: lifecycle("tcp", None, Some(first_line)),
        },
        ws: WsConfig {
            max_message: args.max_ws_message,
            limits,
            default_room,
            lifecycle: lifecycle(
                "ws",
                Some(Duration::from_secs(args.ping_interval.max(1))),
                None,
            ),
        },
        http: HttpConfig {
            max_body: args.max_body,
        },
        max_connections: args.max_connections,
        access: Access {
            client: args.token.as_deref().map(Token::new),
            admin: args.admin_token.as_deref().map(Token::new),
        },
        tls: tls_acceptor(args)?,
        metrics,
    })
}

/// The message log `serve`'s flags ask for: in memory, or SQLite in `--data`.
///
/// # Errors
/// A bad retention flag, or a data directory that cannot be used.
fn open_log(args: &ServeArgs) -> anyhow::Result<Arc<dyn MessageLog>> {
    let keep_for = match args.keep_days {
        None => None,
        Some(days) if days.is_finite() && days > 0.0 && days <= 36_500.0 => {
            Some(Duration::from_secs_f64(days * 86_400.0))
        }
        Some(days) => bail!("invalid --keep-days {days}: give a number of days above 0"),
    };
    if args.keep_messages == Some(0) {
        bail!("--keep-messages must be at least 1");
    }
    let retention = Retention {
        keep_messages: args.keep_messages,
        keep_for,
    };
    if args.memory {
        return Ok(Arc::new(MemoryLog::new(retention)));
    }
    ignore_file_size_signal();
    let sync = match args.sync {
        SyncArg::Full => Durability::Full,
        SyncArg::Normal => Durability::Normal,
    };
    let log = SqliteLog::open(SqliteOptions {
        dir: args.data.clone(),
        sync,
        retention,
    })?;
    tracing::info!("history in {}", args.data.display());
    Ok(Arc::new(log))
}

/// Makes a write past the file size limit (`ulimit -f`) fail with an error
/// that the message log reports, like a full disk, instead of killing the
/// server with SIGXFSZ.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN runs no code of ours
    // in a signal handler; it is done once, before any thread writes files.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// The TLS acceptor `serve`'s flags ask for, if any.
fn tls_acceptor(args: &ServeArgs) -> anyhow::Result<Option<TlsAcceptor>> {
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Identity::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if args.tls_self_signed => Identity::SelfSigned,
        _ => return Ok(None),
    };
    let acceptor = tls::acceptor(&identity)?;
    match identity {
        Identity::SelfSigned => {
            tracing::warn!("TLS with a self-signed certificate for localhost: for development only")
        }
        Identity::Files { cert, .. } => tracing::info!("TLS with {}", cert.display()),
    }
    Ok(Some(acceptor))
}

/// `switchboard echo`.
async fn run_echo(args: EchoArgs) -> anyhow::Result<()> {
    let spec = listen_spec(&args.listen, echo::DEFAULT_PORT)?;
    let options = echo_options(&args);
    let shutdown = CancellationToken::new();
    if args.udp {
        let socket = listener::bind_udp(&spec).await?;
        announce(socket.local_addr()?);
        let server = echo::run_udp(socket, options, shutdown.clone());
        run_until_signalled(server, shutdown).await;
    } else {
        let listener = listener::bind_tcp(&spec).await?;
        announce(listener.local_addr()?);
        let server = echo::run_stream(listener, options, shutdown.clone());
        run_until_signalled(server, shutdown).await;
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
fn listen_spec(args: &ListenArgs, default_port: u16) -> anyhow::Result<HostPort> {
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
fn announce(addr: SocketAddr) {
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
