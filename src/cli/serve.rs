//! `switchboard serve`: the settings (flags, variables, `--config`) turned
//! into the hub's stores and edges, then the server run until a signal stops
//! it, reloading its settings on SIGHUP (`reload.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::ArgMatches;
use metrics_exporter_prometheus::PrometheusBuilder;
use switchboard::auth::{Access, Token};
use switchboard::cluster::Directory;
use switchboard::cluster::redis::RedisDirectory;
use switchboard::hub::session::Limits;
use switchboard::hub::{Hub, HubConfig};
use switchboard::limits::ConnectionLimits;
use switchboard::limits::cidr::TrustList;
use switchboard::log::memory::{DEFAULT_KEEP_BYTES, MemoryLog};
use switchboard::log::redis::{RedisLog, RedisOptions};
use switchboard::log::sqlite::{Durability, SqliteLog, SqliteOptions};
use switchboard::log::{MessageLog, Retention};
use switchboard::model::names::RoomName;
use switchboard::net::fd_limit::raise_fd_limit;
use switchboard::net::listener;
use switchboard::net::shutdown::{StopSignals, run_until_signalled};
use switchboard::net::tls::{self, Certificate, Identity};
use switchboard::server::{self, ServeOptions};
use switchboard::transport::connection::{FirstLine, Lifecycle};
use switchboard::transport::http::HttpConfig;
use switchboard::transport::line::LineConfig;
use switchboard::transport::live::{Live, Settings};
use switchboard::transport::ws::WsConfig;
use switchboard::transport::{Counters, prometheus};
use tokio_util::sync::CancellationToken;

use super::args::{ServeArgs, SyncArg};
use super::reload::Reloads;
use super::{announce, config, listen_spec, write_stdout};

/// `switchboard serve`; `matches` is clap's record of its command line.
pub async fn run(matches: ArgMatches) -> anyhow::Result<()> {
    let args = config::load(&matches)?;
    let spec = listen_spec(&args.listen, server::DEFAULT_PORT)?;
    // Every setting is checked (and the TLS files read) before the data
    // directory or Redis is touched.
    check(&args)?;
    let retention = retention(&args)?;
    if args.print_config {
        return write_stdout(config::to_toml(&args)?.as_bytes());
    }
    let certificate = certificate(&args)?;
    let options = serve_options(&args, certificate.clone())?;
    raise_fd_limit();
    let listener = listener::bind_tcp(&spec).await?;
    let node = args
        .node_name
        .clone()
        .unwrap_or_else(|| format!("{}:{}", host_name(), spec_port(&listener)));
    let (log, cluster) = open_stores(&args, retention, &node).await?;
    let hub_config = HubConfig {
        presence_limit: args.presence_limit,
        queue: args.queue,
        node: node.into(),
        max_rooms: args.max_rooms,
    };
    let hub = Hub::open(log, cluster, hub_config).await?;
    let signals = StopSignals::catch();
    let reloads = Reloads::catch(matches, args, Arc::clone(&options.live), certificate);
    announce(listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let serving = server::run(listener, hub.clone(), options, shutdown.clone());
    let serving = async {
        // Reloading never ends on its own: this ends when the server does.
        tokio::select! {
            () = serving => {}
            () = reloads.run() => {}
        }
    };
    run_until_signalled(serving, shutdown, signals).await;
    hub.close().await;
    Ok(())
}

/// The port `listener` got.
fn spec_port(listener: &tokio::net::TcpListener) -> u16 {
    listener.local_addr().map_or(0, |addr| addr.port())
}

/// This machine's host name (`localhost` when it has none).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Refuses settings out of range.
///
/// # Errors
/// The first setting out of range, named by its flag.
pub(super) fn check(args: &ServeArgs) -> anyhow::Result<()> {
    if args.rate.is_nan() || args.rate < 0.0 {
        bail!("--rate must be 0 (no limit) or a positive number of messages per second");
    }
    if args.burst == 0 || args.queue == 0 || args.max_connections == 0 || args.max_rooms == 0 {
        bail!("--burst, --queue, --max-connections and --max-rooms must be positive");
    }
    if !args.connect_rate.is_finite() || args.connect_rate < 0.0 {
        bail!("--connect-rate must be 0 (no limit) or a positive number of connections per second");
    }
    TrustList::parse(&args.trust).map_err(|err| anyhow!("--trust: {err}"))?;
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
    Ok(())
}

/// How the hub's edges behave, from `serve`'s settings (checked), presenting
/// `certificate` to TLS clients.
///
/// # Errors
/// A TLS library that cannot be set up.
fn serve_options(
    args: &ServeArgs,
    certificate: Option<Arc<Certificate>>,
) -> anyhow::Result<ServeOptions> {
    // Installed first: the transports' counters are looked up from it once.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| tracing::warn!("metrics are off: {err}"))
        .ok();
    prometheus::describe();
    Ok(ServeOptions {
        live: Arc::new(Live::new(settings(args)?)),
        http: HttpConfig {
            max_body: args.max_body,
        },
        tls: certificate.map(tls::acceptor).transpose()?,
        metrics,
    })
}

/// A connection's rate and burst and the longest text any transport takes:
/// what a WebSocket message and (per client address) an HTTP post are held to.
fn message_limits(args: &ServeArgs) -> Limits {
    Limits {
        rate: args.rate,
        burst: args.burst,
        max_text: args.max_line.max(args.max_ws_message),
    }
}

/// The settings SIGHUP can replace, from `serve`'s settings (checked).
///
/// # Errors
/// A `--trust` list that does not parse.
pub(super) fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    let default_room = RoomName::parse("lobby").expect("a valid room name");
    let limits = message_limits(args);
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
    Ok(Settings {
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
        access: Access {
            client: args.token.as_deref().map(Token::new),
            admin: args.admin_token.as_deref().map(Token::new),
        },
        connections: connection_limits(args)?,
        posts: limits,
    })
}

/// Connections at once, per address and per second, from `serve`'s settings.
///
/// # Errors
/// A `--trust` list that does not parse.
fn connection_limits(args: &ServeArgs) -> anyhow::Result<ConnectionLimits> {
    Ok(ConnectionLimits {
        max_connections: args.max_connections,
        per_address: args.max_per_address,
        connect_rate: args.connect_rate,
        trusted: TrustList::parse(&args.trust).map_err(|err| anyhow!("--trust: {err}"))?,
    })
}

/// How long history is kept, from `--keep-messages` and `--keep-days`.
///
/// # Errors
/// A value out of range.
fn retention(args: &ServeArgs) -> anyhow::Result<Retention> {
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
    if args.keep_bytes == Some(0) {
        bail!("--keep-bytes must be at least 1");
    }
    Ok(Retention {
        keep_messages: args.keep_messages,
        keep_for,
    })
}

/// The message log the flags ask for (in memory, SQLite in `--data`, or
/// Redis), and with `--redis` the cluster directory of node `node`.
///
/// # Errors
/// A data directory or a Redis that cannot be used.
async fn open_stores(
    args: &ServeArgs,
    retention: Retention,
    node: &str,
) -> anyhow::Result<(Arc<dyn MessageLog>, Option<Arc<dyn Directory>>)> {
    if let Some(url) = &args.redis {
        let log = RedisLog::open(RedisOptions {
            url: url.clone(),
            retention,
        })
        .await?;
        let directory = RedisDirectory::open(url, node).await?;
        tracing::info!("node {node} of the hub in {}", log.target());
        return Ok((Arc::new(log), Some(Arc::new(directory))));
    }
    if args.memory {
        let keep_bytes = args.keep_bytes.unwrap_or(DEFAULT_KEEP_BYTES);
        let log = MemoryLog::new(retention).keep_bytes(keep_bytes);
        return Ok((Arc::new(log), None));
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
    Ok((Arc::new(log), None))
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

/// Where the TLS certificate comes from, when TLS is on.
pub(super) fn identity(args: &ServeArgs) -> Option<Identity> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Identity::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ if args.tls_self_signed => Some(Identity::SelfSigned),
        _ => None,
    }
}

/// The TLS certificate `serve`'s settings ask for, if any.
///
/// # Errors
/// Files that cannot be read, or a key that does not fit the certificate.
fn certificate(args: &ServeArgs) -> anyhow::Result<Option<Arc<Certificate>>> {
    let Some(identity) = identity(args) else {
        return Ok(None);
    };
    let certificate = Certificate::load(&identity)?;
    match identity {
        Identity::SelfSigned => {
            tracing::warn!("TLS with a self-signed certificate for localhost: for development only")
        }
        Identity::Files { cert, .. } => tracing::info!("TLS with {}", cert.display()),
    }
    Ok(Some(Arc::new(certificate)))
}
