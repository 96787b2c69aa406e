//! `switchboard bench`: check the flags, run the load, print the report.

use anyhow::{Context, bail};

use super::args::{
    BenchArgs, BenchChatArgs, BenchCommon, BenchEchoArgs, BenchIdleArgs, BenchMode,
    BenchPublishArgs,
};
use super::{client_tls, seconds, write_stdout};
use switchboard::bench::chat::{self, ChatProtocol, socketio};
use switchboard::bench::publish::{self, Pacing, Stop};
use switchboard::bench::{WsTarget, echo, idle, plot, progress};
use switchboard::client::connect::{Target, web_socket_endpoint};
use switchboard::error::Error;
use switchboard::model::names::RoomName;
use switchboard::net::addr::HostPort;

/// Connections one source address should carry at most by default.
const CONNECTIONS_PER_SOURCE: usize = 5_000;

/// The most bytes one connection may have in flight, so a pipeline cannot
/// deadlock against socket buffers.
const MAX_IN_FLIGHT_BYTES: usize = 1024 * 1024;

/// Runs the bench mode `args` names.
///
/// # Errors
/// Bad flags, or a server that cannot be reached.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.mode {
        BenchMode::Echo(args) => run_echo(args).await,
        BenchMode::Idle(args) => run_idle(args).await,
        BenchMode::Chat(args) => run_chat(args).await,
        BenchMode::Publish(args) => run_publish(args).await,
    }
}

/// A publisher's share of the rate stays under this, below the server's
/// default per-connection limit of 20 messages a second.
const RATE_PER_PUBLISHER: f64 = 15.0;

/// `bench chat`.
async fn run_chat(args: BenchChatArgs) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.publishers == Some(0) {
        bail!("--subscribers and --publishers must be at least 1");
    }
    if args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--rate must be a positive number of messages a second");
    }
    let publishers = args
        .publishers
        .unwrap_or_else(|| (args.rate / RATE_PER_PUBLISHER).ceil() as usize)
        .max(1);
    RoomName::parse(&args.room)
        .map_err(|e| anyhow::anyhow!("invalid --room '{}': {e}", args.room))?;
    let connections = args.subscribers + publishers;
    let nodes = args
        .addrs
        .iter()
        .map(|addr| chat_node(addr, &args.common))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let server_pids = checked_pids(&args.common)?;
    if server_pids.len() > nodes.len() {
        bail!(
            "--pid is given {} times for {} node(s): at most once per node",
            server_pids.len(),
            nodes.len()
        );
    }
    let redis_pid = args
        .redis_pid
        .map(|pid| checked(pid, "--redis-pid"))
        .transpose()?;
    let plan = chat::ChatPlan {
        nodes,
        subscribers: args.subscribers,
        publishers,
        rate: args.rate,
        duration: seconds("duration", args.duration, false)?,
        warmup: seconds("warmup", args.warmup, true)?,
        room: args.room.trim_start_matches('#').to_string(),
        in_step: args.in_step,
        server_pids,
        redis_pid,
        sources: sources(&args.common, connections),
    };
    let bar = progress::spinner();
    let report = chat::run(&plan, &bar).await;
    bar.finish_and_clear();
    let report = report?;
    print(&args.common, &report, report.table())
}

/// `bench publish`.
async fn run_publish(args: BenchPublishArgs) -> anyhow::Result<()> {
    if args.publishers == 0 || args.rooms == 0 || args.pipeline == 0 || args.messages == Some(0) {
        bail!("--publishers, --rooms, --pipeline and --messages must be at least 1");
    }
    if args.rooms > args.publishers {
        bail!(
            "--rooms {} is more than --publishers {}: every room needs a publisher",
            args.rooms,
            args.publishers
        );
    }
    let pacing = match args.rate {
        Some(rate) if !(rate.is_finite() && rate > 0.0) => {
            bail!("--rate must be a positive number of messages a second")
        }
        Some(rate) => Pacing::Open { rate },
        None => Pacing::Closed {
            pipeline: args.pipeline,
        },
    };
    let room_prefix = args.room.trim_start_matches('#').to_string();
    // The last room has the longest name.
    RoomName::parse(&format!("{room_prefix}-{}", args.rooms - 1))
        .map_err(|e| anyhow::anyhow!("invalid --room '{}': {e}", args.room))?;
    let (target, web_socket) = target_and_url(&args.addr, &args.common)?;
    let stop = match args.messages {
        Some(count) => Stop::AfterAcked(count),
        None => Stop::After(seconds("duration", args.duration, false)?),
    };
    let plan = publish::PublishPlan {
        target,
        web_socket,
        publishers: args.publishers,
        rooms: args.rooms,
        room_prefix,
        pacing,
        stop,
        warmup: seconds("warmup", args.warmup, true)?,
        server_pid: checked_pid(&args.common)?,
        sources: sources(&args.common, args.publishers),
    };
    let bar = progress::spinner();
    let report = publish::run(&plan, &bar).await;
    bar.finish_and_clear();
    let report = report?;
    print(&args.common, &report, report.table())
}

/// `bench echo`.
async fn run_echo(args: BenchEchoArgs) -> anyhow::Result<()> {
    if args.conns == 0 || args.size == 0 || args.pipeline == 0 {
        bail!("--conns, --size and --pipeline must be at least 1");
    }
    if args.size.saturating_mul(args.pipeline) > MAX_IN_FLIGHT_BYTES {
        bail!("--size times --pipeline must be at most {MAX_IN_FLIGHT_BYTES} bytes");
    }
    // Echo servers are raw TCP: TLS flags only earn a warning.
    client_tls(&args.common.tls, false)?;
    let plan = echo::EchoPlan {
        target: HostPort::parse_remote(&args.addr)?,
        connections: args.conns,
        size: args.size,
        pipeline: args.pipeline,
        duration: seconds("duration", args.duration, false)?,
        warmup: seconds("warmup", args.warmup, true)?,
        prefix: args.prefix,
        server_pid: checked_pid(&args.common)?,
        sources: sources(&args.common, args.conns),
    };
    let bar = progress::spinner();
    let outcome = echo::run(&plan, &bar).await;
    bar.finish_and_clear();
    let outcome = outcome?;
    if let Some(path) = &args.plot {
        let title = format!(
            "{} · {} connections · {} B · {:.0} msg/s",
            outcome.report.target,
            outcome.report.connections,
            outcome.report.size,
            outcome.report.messages_per_sec
        );
        std::fs::write(path, plot::latency_svg(&outcome.latencies, &title))
            .with_context(|| format!("could not write the plot to {}", path.display()))?;
    }
    print(&args.common, &outcome.report, outcome.report.table())
}

/// The address to connect to and, for a `ws://` or `wss://` target, the
/// WebSocket server (with the certificates to trust, for `wss://`).
fn target_and_url(
    addr: &str,
    common: &BenchCommon,
) -> anyhow::Result<(HostPort, Option<WsTarget>)> {
    let target = Target::parse(addr)?;
    let tls = client_tls(&common.tls, target.uses_tls())?;
    Ok(match target {
        Target::Tcp(target) => (target, None),
        Target::WebSocket(url) => (web_socket_endpoint(&url)?, Some(WsTarget { url, tls })),
    })
}

/// One node of `bench chat`: a line hub, a JSON WebSocket hub or a
/// `socketio://` server.
fn chat_node(addr: &str, common: &BenchCommon) -> anyhow::Result<chat::ChatNode> {
    let (target, protocol) = match (socket_io_url(addr)?, addr.strip_prefix("tls://")) {
        (Some((target, url)), _) => {
            client_tls(&common.tls, false)?;
            (target, ChatProtocol::SocketIo(WsTarget { url, tls: None }))
        }
        (None, Some(host_port)) => {
            let target = HostPort::parse_remote(host_port)?;
            let tls = client_tls(&common.tls, true)?;
            (target, ChatProtocol::Line(tls))
        }
        (None, None) => match target_and_url(addr, common)? {
            (target, Some(server)) => (target, ChatProtocol::Json(server)),
            (target, None) => (target, ChatProtocol::Line(None)),
        },
    };
    Ok(chat::ChatNode {
        name: addr.to_string(),
        target,
        protocol,
    })
}

/// For `socketio://HOST:PORT[/PATH/]`: the address and the Engine.IO
/// WebSocket URL (`ws://HOST:PORT/PATH/?EIO=4&transport=websocket`, PATH
/// `socket.io` by default); `None` for any other kind of address.
///
/// # Errors
/// A `socketio://` address without a valid HOST:PORT.
fn socket_io_url(addr: &str) -> anyhow::Result<Option<(HostPort, String)>> {
    let Some(rest) = addr.strip_prefix("socketio://") else {
        return Ok(None);
    };
    let invalid = |reason| Error::InvalidAddress {
        input: addr.to_string(),
        reason,
    };
    let (host_port, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, socketio::DEFAULT_PATH),
    };
    if !path.ends_with('/') || path.contains(['?', '#']) {
        return Err(invalid("a Socket.IO path ends with '/', as in /socket.io/").into());
    }
    let target = HostPort::parse_remote(host_port).map_err(|err| match err {
        Error::InvalidAddress { reason, .. } => invalid(reason),
        other => other,
    })?;
    let url = format!("ws://{target}{path}?{}", socketio::WEBSOCKET_QUERY);
    Ok(Some((target, url)))
}

/// `bench idle`.
async fn run_idle(args: BenchIdleArgs) -> anyhow::Result<()> {
    if args.conns == 0 {
        bail!("--conns must be at least 1");
    }
    let (target, web_socket) = target_and_url(&args.addr, &args.common)?;
    if args.message_size.is_some() && web_socket.is_none() {
        bail!("--message-size needs a ws:// or wss:// URL");
    }
    let plan = idle::IdlePlan {
        target,
        web_socket,
        message_size: args.message_size.unwrap_or(0),
        connections: args.conns,
        hold: seconds("hold", args.hold, true)?,
        server_pid: checked_pid(&args.common)?,
        sources: sources(&args.common, args.conns),
    };
    let bar = progress::spinner();
    let report = idle::run(&plan, &bar).await;
    bar.finish_and_clear();
    let report = report?;
    print(&args.common, &report, report.table())
}

/// `--pid` for a mode that measures one server, refused up front when no
/// such process is readable or when given more than once.
fn checked_pid(common: &BenchCommon) -> anyhow::Result<Option<u32>> {
    match checked_pids(common)?[..] {
        [] => Ok(None),
        [pid] => Ok(Some(pid)),
        _ => bail!("--pid is given more than once: this mode measures one server"),
    }
}

/// Every `--pid`, each refused up front when no such process is readable.
fn checked_pids(common: &BenchCommon) -> anyhow::Result<Vec<u32>> {
    common
        .pid
        .iter()
        .map(|pid| checked(*pid, "--pid"))
        .collect()
}

/// `pid`, given as `flag`, when such a process is readable.
fn checked(pid: u32, flag: &str) -> anyhow::Result<u32> {
    if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
        bail!("no process with {flag} {pid}");
    }
    Ok(pid)
}

/// `--sources`, or one source address per [`CONNECTIONS_PER_SOURCE`] connections.
fn sources(common: &BenchCommon, connections: usize) -> usize {
    common
        .sources
        .unwrap_or_else(|| connections.div_ceil(CONNECTIONS_PER_SOURCE))
        .max(1)
}

/// Prints the report as JSON or as its table.
fn print<T: serde::Serialize>(
    common: &BenchCommon,
    report: &T,
    table: String,
) -> anyhow::Result<()> {
    if common.json {
        let mut json = serde_json::to_string(report).context("could not encode the report")?;
        json.push('\n');
        write_stdout(json.as_bytes())
    } else {
        write_stdout(table.as_bytes())
    }
}
