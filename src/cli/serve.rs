//! `switchboard serve`: the flags turned into the hub's stores and edges,
//! then the server run until a signal stops it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use metrics_exporter_prometheus::PrometheusBuilder;
use switchboard::auth::{Access, Token};
use switchboard::cluster::Directory;
use switchboard::cluster::redis::RedisDirectory;
use switchboard::hub::session::Limits;
use switchboard::hub::{Hub, HubConfig};
use switchboard::limits::cidr::TrustList;
use switchboard::limits::{ConnectionLimits, Gate};
use switchboard::log::memory::MemoryLog;
use switchboard::log::redis::{RedisLog, RedisOptions};
use switchboard::log::sqlite::{Durability, SqliteLog, SqliteOptions};
use switchboard::log::{MessageLog, Retention};
use switchboard::model::names::RoomName;
use switchboard::net::fd_limit::raise_fd_limit;
use switchboard::net::listener;
use switchboard::net::shutdown::{StopSignals, run_until_signalled};
use switchboard::net::tls::{self, Identity};
use switchboard::server::{self, ServeOptions};
use switchboard::transport::Counters;
use switchboard::transport::connection::{FirstLine, Lifecycle};
use switchboard::transport::http::HttpConfig;
use switchboard::transport::line::LineConfig;
use switchboard::transport::ws::WsConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::args::{ServeArgs, SyncArg};
use super::{announce, listen_spec};

/// `switchboard serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let spec = listen_spec(&args.listen, server::DEFAULT_PORT)?;
    // Every flag is checked (and the TLS files read) before the data
    // directory or Redis is touched.
    let options = serve_options(&args)?;
    let retention = retention(&args)?;
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
    };
    let hub = Hub::open(log, cluster, hub_config).await?;
    let signals = StopSignals::catch();
    announce(listener.local_addr()?);
    let shutdown = CancellationToken::new();
    run_until_signalled(
        server::run(listener, hub.clone(), options, shutdown.clone()),
        shutdown,
        signals,
    )
    .await;
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
    if !args.connect_rate.is_finite() || args.connect_rate < 0.0 {
        bail!("--connect-rate must be 0 (no limit) or a positive number of connections per second");
    }
    let trusted = TrustList::parse(&args.trust).map_err(|err| anyhow!("--trust: {err}"))?;
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
        gate: Gate::new(ConnectionLimits {
            max_connections: args.max_connections,
            per_address: args.max_per_address,
            connect_rate: args.connect_rate,
            trusted,
        }),
        access: Access {
            client: args.token.as_deref().map(Token::new),
            admin: args.admin_token.as_deref().map(Token::new),
        },
        tls: tls_acceptor(args)?,
        metrics,
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
        return Ok((Arc::new(MemoryLog::new(retention)), None));
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
