//! `switchboard bench`: load generators that work against any server of the
//! kind, so switchboard and its peers are measured side by side.
//!
//! [`echo`] drives request/reply load, [`idle`] holds many quiet connections,
//! [`chat`] measures fan-out through a chat hub, [`publish`] what it costs
//! the hub to acknowledge messages (to commit them to its log);
//! [`dialer`] opens connections fast, [`procfs`] reads the server's CPU and
//! memory, [`scan`] reads replies from bytes, [`report`] and [`plot`] present
//! the results.

pub mod chat;
pub mod dialer;
pub mod echo;
pub mod idle;
pub mod plot;
pub mod procfs;
pub mod progress;
pub mod publish;
pub mod report;
pub mod scan;

use std::io;
use std::sync::Arc;

use hdrhistogram::Histogram;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::connect::{ClientSocket, describe_ws, open_web_socket};

use echo::Window;
use procfs::{MachineSample, ProcessSample};
use report::{RedisCost, ServerCost};

/// The slowest latency recorded, in microseconds; anything slower is clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A WebSocket server to benchmark: its URL and, for `wss://`, which server
/// certificates to trust.
#[derive(Clone, Debug)]
pub struct WsTarget {
    /// The `ws://` or `wss://` URL.
    pub url: String,
    /// The TLS client configuration, for a `wss://` URL.
    pub tls: Option<Arc<ClientConfig>>,
}

impl WsTarget {
    /// Opens the WebSocket over `stream`: the TLS handshake first for
    /// `wss://`, then the upgrade.
    ///
    /// # Errors
    /// The TLS or WebSocket handshake's error.
    pub async fn open(
        &self,
        stream: TcpStream,
        config: WebSocketConfig,
    ) -> io::Result<ClientSocket> {
        open_web_socket(&self.url, stream, Some(config), self.tls.clone())
            .await
            .map_err(|err| io::Error::other(describe_ws(&err)))
    }
}

/// An empty latency histogram: 1 µs to 60 s at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Samples this process's and the server's CPU at the window's start and end:
/// the client's CPU seconds and the server's cost (with `server_pid`).
pub async fn measure_window(window: Window, server_pid: Option<u32>) -> WindowCost {
    tokio::time::sleep_until(window.start).await;
    let before = Snapshot::take(server_pid);
    tokio::time::sleep_until(window.end).await;
    WindowCost::between(server_pid, before, Snapshot::take(server_pid))
}

/// Samples processes `pids` at the window's start and end: what the window
/// cost each of them, in order (`None` for one that could not be read).
pub async fn measure_processes(window: Window, pids: &[u32]) -> Vec<Option<ServerCost>> {
    let sample = |pid: u32| ProcessSample::take(&pid.to_string());
    tokio::time::sleep_until(window.start).await;
    let before: Vec<_> = pids.iter().map(|pid| sample(*pid)).collect();
    tokio::time::sleep_until(window.end).await;
    pids.iter()
        .zip(before)
        .map(|(pid, before)| ServerCost::between(Some(*pid), before, sample(*pid)))
        .collect()
}

/// Samples how long process `pid` ran (all its threads, to the nanosecond)
/// at the window's start and end, and its memory at the end: what the window
/// cost it, before it is shared out over messages. `None` without a pid or
/// when the process could not be read.
pub async fn measure_run_time(window: Window, pid: Option<u32>) -> Option<RedisCost> {
    let pid = pid?;
    tokio::time::sleep_until(window.start).await;
    let before = procfs::run_time_ns(pid);
    tokio::time::sleep_until(window.end).await;
    let after = procfs::run_time_ns(pid);
    let rss_kib = ProcessSample::take(&pid.to_string())?.rss_kib;
    Some(RedisCost {
        pid,
        cpu_seconds: after?.saturating_sub(before?) as f64 / 1e9,
        cpu_us_per_message: None,
        rss_kib,
    })
}

/// The load client's, the server's and the machine's CPU time (and the
/// server's memory) at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// This process: the load client.
    pub client: Option<ProcessSample>,
    /// The server, with `--pid`.
    pub server: Option<ProcessSample>,
    /// The whole machine.
    pub machine: Option<MachineSample>,
}

impl Snapshot {
    /// Samples them now; the server only when `server_pid` is given.
    pub fn take(server_pid: Option<u32>) -> Self {
        Self {
            client: ProcessSample::take("self"),
            server: server_pid.and_then(|pid| ProcessSample::take(&pid.to_string())),
            machine: MachineSample::take(),
        }
    }
}

/// What a measured window cost the client, the server and the machine.
#[derive(Clone, Debug)]
pub struct WindowCost {
    /// The load client's CPU seconds.
    pub client_cpu_seconds: f64,
    /// The server's cost, with its pid.
    pub server: Option<ServerCost>,
    /// The share of the machine's CPU time the hypervisor took, in percent.
    pub steal_percent: Option<f64>,
}

impl WindowCost {
    /// What the time between two snapshots cost; `server_pid` is the
    /// process the snapshots sampled as the server.
    pub fn between(server_pid: Option<u32>, before: Snapshot, after: Snapshot) -> Self {
        Self {
            client_cpu_seconds: before
                .client
                .zip(after.client)
                .map_or(0.0, |(before, after)| after.cpu_seconds_since(&before)),
            server: ServerCost::between(server_pid, before.server, after.server),
            steal_percent: before
                .machine
                .zip(after.machine)
                .and_then(|(before, after)| after.steal_percent_since(&before)),
        }
    }
}

/// Waits for the next text message of `ws` and adds it to `received` as one
/// line (the JSON protocol sends one object a message); `false` once the
/// server closed. Pings and pongs are skipped (tungstenite answers them).
/// Cancel-safe: a message is added whole or not at all.
///
/// # Errors
/// The WebSocket's error.
pub(crate) async fn read_text_line<S>(
    ws: &mut S,
    received: &mut bytes::BytesMut,
) -> io::Result<bool>
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                received.extend_from_slice(text.as_bytes());
                received.extend_from_slice(b"\n");
                return Ok(true);
            }
            Some(Ok(Message::Close(_))) | None => return Ok(false),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(io::Error::other(err)),
        }
    }
}
