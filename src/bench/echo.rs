//! `bench echo`: closed-loop request/reply against any echo server.
//!
//! Every request is `size` bytes ending in its only newline, so the replies can
//! be parsed as a stream: each newline that comes back completes the oldest
//! request in flight, whatever prefix the server adds and however it splits or
//! merges chunks. All connections run on one thread, so the client's cost is
//! plain to see (and it stays out of the server's core on a 2-core machine).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::iter;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::bench::dialer::Dialer;
use crate::bench::report::{EchoReport, Latency};
use crate::bench::{WindowCost, latency_histogram, measure_window, progress};
use crate::error::Result;
use crate::net::addr::HostPort;
use crate::net::fd_limit::raise_fd_limit;

/// Bytes read per call; replies to a whole pipeline usually fit.
const READ_BUFFER: usize = 64 * 1024;

/// What `bench echo` should do.
#[derive(Clone, Debug)]
pub struct EchoPlan {
    /// The echo server.
    pub target: HostPort,
    /// How many connections to drive.
    pub connections: usize,
    /// Bytes per request (at least 1: the newline).
    pub size: usize,
    /// Requests kept in flight per connection.
    pub pipeline: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// The prefix the server puts before replies, checked on each connection's first reply.
    pub prefix: Option<String>,
    /// The server's process, to measure its CPU and memory.
    pub server_pid: Option<u32>,
    /// How many loopback source addresses to spread connections over.
    pub sources: usize,
}

/// A finished `bench echo` run.
#[derive(Debug)]
pub struct EchoOutcome {
    /// The numbers.
    pub report: EchoReport,
    /// Every latency measured, in microseconds, for `--plot`.
    pub latencies: Histogram<u64>,
}

/// The measured window: replies completing inside it count.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// When measuring starts (after the warm-up).
    pub start: Instant,
    /// When measuring ends.
    pub end: Instant,
}

impl Window {
    /// Whether `moment` falls inside the window.
    fn contains(&self, moment: Instant) -> bool {
        moment >= self.start && moment < self.end
    }
}

/// What one connection measured.
struct ConnectionResult {
    latencies: Histogram<u64>,
    messages: u64,
    errors: u64,
}

/// Runs the benchmark, showing progress on `bar`.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Connect`] when not one connection opens.
pub async fn run(plan: &EchoPlan, bar: &ProgressBar) -> Result<EchoOutcome> {
    let target = plan.target.resolve().await?[0];
    raise_fd_limit();
    bar.set_message(format!("opening {} connections", plan.connections));
    let (streams, failures) = Dialer::new(target, plan.sources)
        .connect_some(plan.connections, &plan.target)
        .await?;
    let requests = request_bytes(plan.size, plan.pipeline);
    let start = Instant::now() + plan.warmup;
    let window = Window {
        start,
        end: start + plan.duration,
    };
    let completed = Cell::new(0);
    let drivers: FuturesUnordered<_> = streams
        .into_iter()
        .map(|stream| drive(stream, plan, &requests, window, &completed))
        .collect();
    let (results, cost, ()) = tokio::join!(
        drivers.collect::<Vec<_>>(),
        measure_window(window, plan.server_pid),
        progress::show_rate(bar, window, &completed),
    );
    Ok(summarize(plan, results, failures, cost))
}

/// `pipeline` requests of `size` bytes, each ending in its only newline.
fn request_bytes(size: usize, pipeline: usize) -> Vec<u8> {
    let mut request = vec![b'x'; size.max(1)];
    if let Some(last) = request.last_mut() {
        *last = b'\n';
    }
    request.repeat(pipeline.max(1))
}

/// Drives one connection until the window ends, counting a failure as an error.
async fn drive(
    mut stream: TcpStream,
    plan: &EchoPlan,
    requests: &[u8],
    window: Window,
    completed: &Cell<u64>,
) -> ConnectionResult {
    let mut result = ConnectionResult {
        latencies: latency_histogram(),
        messages: 0,
        errors: 0,
    };
    if let Err(err) = exchange(&mut stream, plan, requests, window, completed, &mut result).await {
        tracing::debug!("connection failed: {err}");
        result.errors += 1;
    }
    result
}

/// The closed loop: keep `pipeline` requests in flight, time each reply.
async fn exchange(
    stream: &mut TcpStream,
    plan: &EchoPlan,
    requests: &[u8],
    window: Window,
    completed: &Cell<u64>,
    result: &mut ConnectionResult,
) -> io::Result<()> {
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(plan.pipeline);
    let mut buf = vec![0; READ_BUFFER];
    let mut prefix_unchecked = plan.prefix.as_deref().map(str::as_bytes);
    stream.write_all(requests).await?;
    in_flight.extend(iter::repeat_n(Instant::now(), plan.pipeline));
    loop {
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        if let Some(prefix) = prefix_unchecked.take() {
            check_prefix(prefix, &buf[..read])?;
        }
        let replies = memchr::memchr_iter(b'\n', &buf[..read]).count();
        let now = Instant::now();
        for _ in 0..replies {
            let sent = in_flight.pop_front().ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidData, "more replies than requests")
            })?;
            if window.contains(now) {
                let micros = u64::try_from((now - sent).as_micros()).unwrap_or(u64::MAX);
                result.latencies.saturating_record(micros.max(1));
                result.messages += 1;
                completed.set(completed.get() + 1);
            }
        }
        if now >= window.end {
            return Ok(());
        }
        if replies > 0 {
            stream.write_all(&requests[..replies * plan.size]).await?;
            in_flight.extend(iter::repeat_n(now, replies));
        }
    }
}

/// Fails when a first reply does not start with the expected prefix.
fn check_prefix(prefix: &[u8], reply: &[u8]) -> io::Result<()> {
    let shared = prefix.len().min(reply.len());
    if prefix[..shared] == reply[..shared] {
        Ok(())
    } else {
        Err(io::Error::new(
            ErrorKind::InvalidData,
            "reply does not start with the expected prefix",
        ))
    }
}

/// Merges the connections' results into the report.
fn summarize(
    plan: &EchoPlan,
    results: Vec<ConnectionResult>,
    connect_failures: usize,
    cost: WindowCost,
) -> EchoOutcome {
    let WindowCost {
        client_cpu_seconds,
        mut server,
        steal_percent,
    } = cost;
    let mut latencies = latency_histogram();
    let (mut messages, mut errors) = (0, connect_failures as u64);
    let connections = results.len();
    for result in results {
        let _ = latencies.add(&result.latencies);
        messages += result.messages;
        errors += result.errors;
    }
    let seconds = plan.duration.as_secs_f64();
    if let Some(server) = server.as_mut() {
        server.spread_over(messages);
    }
    let report = EchoReport {
        mode: "echo",
        target: plan.target.to_string(),
        connections,
        size: plan.size,
        pipeline: plan.pipeline,
        seconds,
        messages,
        messages_per_sec: messages as f64 / seconds,
        mb_per_sec: (messages * plan.size as u64) as f64 / seconds / 1e6,
        latency: Latency::of(&latencies),
        errors,
        client_cpu_percent: client_cpu_seconds / seconds * 100.0,
        steal_percent,
        server,
    };
    EchoOutcome { report, latencies }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_end_in_their_only_newline() {
        assert_eq!(request_bytes(4, 2), b"xxx\nxxx\n");
        assert_eq!(request_bytes(1, 1), b"\n");
        assert_eq!(
            request_bytes(0, 0),
            b"\n",
            "degenerate sizes still make one request"
        );
    }

    #[test]
    fn prefixes_are_checked_on_what_has_arrived() {
        assert!(check_prefix(b"Echo: ", b"Echo: xx\n").is_ok());
        assert!(check_prefix(b"Echo: ", b"Ech").is_ok());
        assert!(check_prefix(b"Echo: ", b"xxx\n").is_err());
    }
}
