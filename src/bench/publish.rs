//! `bench publish`: what it costs a chat hub to acknowledge messages.
//!
//! P publishers are spread over R rooms (`{prefix}-0`, `{prefix}-1`, …) and
//! speak the JSON protocol: line clients after `/json`, or WebSockets when the
//! target is a `ws://` URL. Each says texts with a numeric `ref`; the hub
//! acknowledges a message only once its log committed it, so the ack latency
//! (send to the `ack` with that ref) and the acknowledged rate are what the
//! log costs as clients see it. Closed loop (`--pipeline K`): K requests in
//! flight per publisher, the next sent as one is answered, so the hub runs
//! at full speed. Open loop (`--rate N`): N messages a second in all, spread
//! evenly in time, each latency counted from the message's scheduled send
//! time. The window is `--duration` seconds, or lasts until `--messages` were
//! acknowledged; with `--pid` the server's CPU per acknowledged message and
//! its resident memory, sampled every second, are reported. Publishers are
//! members of their rooms, so every message of the room comes back to each:
//! they read it all and look only for acks and errors. Everything runs on one
//! thread.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, FuturesUnordered};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::bench::chat::{HANDSHAKE_TIMEOUT, HANDSHAKES_IN_FLIGHT, spread};
use crate::bench::dialer::Dialer;
use crate::bench::procfs::ProcessSample;
use crate::bench::report::{Latency, ServerCost, ServerMemory, client_line, micros, thousands};
use crate::bench::{Snapshot, WindowCost, WsTarget, latency_histogram};
use crate::error::{Error, Result, describe_io};
use crate::net::addr::HostPort;
use crate::net::fd_limit::raise_fd_limit;

mod publisher;

use publisher::{Publisher, Reply};

/// How often the progress line is refreshed.
const REFRESH: Duration = Duration::from_millis(250);

/// How often the server's memory is sampled.
const MEMORY_SAMPLE: Duration = Duration::from_secs(1);

/// The `error_codes` key of connections that failed to open, join or stay.
const CONNECTION_ERROR: &str = "connection";

/// The `error_codes` key of acks whose `ref` was not in flight.
const UNMATCHED_ACK: &str = "unmatched_ack";

/// What `bench publish` should do.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    /// The chat hub.
    pub target: HostPort,
    /// A WebSocket server: connect as WebSockets instead of line clients.
    pub web_socket: Option<WsTarget>,
    /// Connections that publish.
    pub publishers: usize,
    /// Rooms they are spread over (at most `publishers`).
    pub rooms: usize,
    /// Rooms are named `{room_prefix}-0`, `{room_prefix}-1`, …
    pub room_prefix: String,
    /// When publishers send.
    pub pacing: Pacing,
    /// When the measured window ends.
    pub stop: Stop,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// The server's process, to measure its CPU per message and its memory.
    pub server_pid: Option<u32>,
    /// How many loopback source addresses to spread connections over.
    pub sources: usize,
}

/// When publishers send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Closed loop: this many requests in flight per publisher, the next sent
    /// as soon as one is answered.
    Closed {
        /// Requests in flight per publisher.
        pipeline: usize,
    },
    /// Open loop: this many messages a second in all, spread evenly in time.
    Open {
        /// Messages per second, all publishers together.
        rate: f64,
    },
}

/// When the measured window ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// Once this many messages were acknowledged in it.
    AfterAcked(u64),
}

/// The result of `bench publish`.
#[derive(Clone, Debug, Serialize)]
pub struct PublishReport {
    /// Always `"publish"`.
    pub mode: &'static str,
    /// The server benchmarked.
    pub target: String,
    /// Publishers that joined their room.
    pub publishers: usize,
    /// Rooms they were spread over.
    pub rooms: usize,
    /// Requests in flight per publisher (closed loop), else `null`.
    pub pipeline: Option<usize>,
    /// Messages per second offered (open loop), else `null`.
    pub offered_per_sec: Option<f64>,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Messages sent in the window (by scheduled time in the open loop).
    pub sent: u64,
    /// Messages whose ack arrived in the window.
    pub acked: u64,
    /// Acknowledged messages per second.
    pub acked_per_sec: f64,
    /// Send-to-ack latency of the acks that arrived in the window.
    pub latency: Latency,
    /// Error replies and failed connections, the whole run long.
    pub errors: u64,
    /// `errors` by the hub's error code (`unavailable`, `rate_limited`, …),
    /// `connection` for connections that failed to open, join or stay, and
    /// `unmatched_ack` for acks whose `ref` was not in flight.
    pub error_codes: BTreeMap<String, u64>,
    /// The load client's own CPU use in the window, percent of one core.
    pub client_cpu_percent: f64,
    /// The share of the machine's CPU time stolen by the hypervisor in the
    /// window, percent.
    pub steal_percent: Option<f64>,
    /// The server's cost (CPU per acknowledged message), with `--pid`.
    pub server: Option<ServerCost>,
    /// The server's resident memory over the window, with `--pid`.
    pub server_memory: Option<ServerMemory>,
}

impl PublishReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let pacing = match (self.pipeline, self.offered_per_sec) {
            (_, Some(rate)) => format!("open loop at {} msg/s", thousands(rate)),
            (pipeline, None) => format!("closed loop, pipeline {}", pipeline.unwrap_or(1)),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench publish {}: {} publishers in {} rooms, {pacing}, {:.1} s measured",
            self.target, self.publishers, self.rooms, self.seconds
        );
        let _ = writeln!(
            out,
            "{:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "acked", "acked/s", "p50", "p90", "p99", "p99.9", "max", "errors"
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "{:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            thousands(self.acked as f64),
            thousands(self.acked_per_sec),
            micros(l.p50_us),
            micros(l.p90_us),
            micros(l.p99_us),
            micros(l.p999_us),
            micros(l.max_us),
            self.errors
        );
        if !self.error_codes.is_empty() {
            let codes: Vec<String> = self
                .error_codes
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            let _ = writeln!(out, "errors: {}", codes.join(", "));
        }
        if let Some(server) = &self.server {
            out.push_str(&server.line("message"));
        }
        if let Some(memory) = &self.server_memory {
            out.push_str(&memory.line());
        }
        out.push_str(&client_line(self.client_cpu_percent, self.steal_percent));
        out
    }
}

/// The measured window, shared by the publishers and the watcher: it starts
/// after the warm-up and ends at its deadline, at the acknowledgement that
/// reaches the target, or when every publisher is gone.
struct Span {
    start: Instant,
    deadline: Option<Instant>,
    target: Option<u64>,
    ended: Cell<Option<Instant>>,
    over: CancellationToken,
}

impl Span {
    /// Whether `moment` falls inside the window.
    fn contains(&self, moment: Instant) -> bool {
        moment >= self.start
            && self.ended.get().is_none()
            && self.deadline.is_none_or(|deadline| moment < deadline)
    }

    /// Ends the window at `at` (unless it ended already) and stops everything.
    fn end(&self, at: Instant) {
        if self.ended.get().is_none() {
            self.ended.set(Some(at));
        }
        self.over.cancel();
    }

    /// The window's length so far (zero if it never started).
    fn seconds(&self) -> f64 {
        self.ended.get().map_or(0.0, |end| {
            end.saturating_duration_since(self.start).as_secs_f64()
        })
    }
}

/// What the publishers saw, shared on the one thread.
struct Tally {
    latencies: RefCell<Histogram<u64>>,
    sent: Cell<u64>,
    acked: Cell<u64>,
    errors: RefCell<BTreeMap<String, u64>>,
}

impl Tally {
    /// Counts one error under `code`.
    fn error(&self, code: &str) {
        let mut errors = self.errors.borrow_mut();
        match errors.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                errors.insert(code.to_string(), 1);
            }
        }
    }

    /// Counts an ack that arrived at `now` for a request sent at `sent`, if
    /// the window holds it, and ends the window when that reaches its target.
    fn ack(&self, span: &Span, sent: Instant, now: Instant) {
        if !span.contains(now) {
            return;
        }
        let micros =
            u64::try_from(now.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
        self.latencies.borrow_mut().saturating_record(micros.max(1));
        let acked = self.acked.get() + 1;
        self.acked.set(acked);
        if span.target.is_some_and(|target| acked >= target) {
            span.end(now);
        }
    }
}

/// One publisher's requests in flight, oldest first, with when each was
/// sent (or, in the open loop, scheduled).
struct InFlight {
    requests: VecDeque<(u64, Instant)>,
    next_ref: u64,
}

impl InFlight {
    /// Nothing in flight yet; the first `ref` is 1 (0 is the join's).
    fn new() -> Self {
        Self {
            requests: VecDeque::new(),
            next_ref: 1,
        }
    }

    /// A new request sent at `at`: its `ref`.
    fn open(&mut self, at: Instant) -> u64 {
        let reference = self.next_ref;
        self.next_ref += 1;
        self.requests.push_back((reference, at));
        reference
    }

    /// Takes the request `reference` answers out of flight: when it was sent.
    /// Replies come in order, so it is nearly always the oldest.
    fn close(&mut self, reference: Option<u64>) -> Option<Instant> {
        let reference = reference?;
        let at = self.requests.iter().position(|(r, _)| *r == reference)?;
        self.requests.remove(at).map(|(_, sent)| sent)
    }
}

/// Runs the benchmark, showing progress on `bar`.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Connect`] when not one publisher joins.
pub async fn run(plan: &PublishPlan, bar: &ProgressBar) -> Result<PublishReport> {
    let target = plan.target.resolve().await?[0];
    raise_fd_limit();
    bar.set_message(format!(
        "joining {} rooms with {} publishers",
        plan.rooms, plan.publishers
    ));
    let dialer = Dialer::new(target, plan.sources);
    let mut attempts = stream::iter(0..plan.publishers)
        .map(|index| {
            let dialer = &dialer;
            async move { join(dialer.connect(index).await?, plan, index).await }
        })
        .buffer_unordered(HANDSHAKES_IN_FLIGHT);
    let mut publishers = Vec::with_capacity(plan.publishers);
    let mut first_failure = None;
    while let Some(joined) = attempts.next().await {
        match joined {
            Ok(publisher) => publishers.push(publisher),
            Err(err) => {
                first_failure.get_or_insert(err);
            }
        }
    }
    if publishers.is_empty() {
        return Err(Error::Connect {
            addr: plan.target.to_string(),
            reason: first_failure.map_or_else(
                || "no publisher joined".into(),
                |err| format!("no publisher joined (first failure: {})", describe_io(&err)),
            ),
        });
    }
    let tally = Tally {
        latencies: RefCell::new(latency_histogram()),
        sent: Cell::new(0),
        acked: Cell::new(0),
        errors: RefCell::new(BTreeMap::new()),
    };
    for _ in publishers.len()..plan.publishers {
        tally.error(CONNECTION_ERROR);
    }
    let clock = Instant::now();
    let start = clock + plan.warmup;
    let span = Span {
        start,
        deadline: match plan.stop {
            Stop::After(duration) => Some(start + duration),
            Stop::AfterAcked(_) => None,
        },
        target: match plan.stop {
            Stop::After(_) => None,
            Stop::AfterAcked(count) => Some(count),
        },
        ended: Cell::new(None),
        over: CancellationToken::new(),
    };
    let joined = publishers.len();
    let tasks: FuturesUnordered<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(position, publisher)| {
            let ticks = match plan.pacing {
                Pacing::Closed { .. } => None,
                Pacing::Open { rate } => Some(open_loop_ticks(rate, position, joined, clock)),
            };
            publish(publisher, plan.pacing, ticks, &span, &tally)
        })
        .collect();
    let publishing = async {
        tasks.collect::<Vec<()>>().await;
        span.end(Instant::now());
    };
    let ((), (cost, memory)) = tokio::join!(publishing, watch(plan, &span, &tally, bar));
    Ok(summarize(plan, joined, &span, &tally, cost, memory))
}

/// Connects publisher `index` to its room over the plan's protocol.
async fn join(stream: TcpStream, plan: &PublishPlan, index: usize) -> io::Result<Publisher> {
    let room = format!("{}-{}", plan.room_prefix, index % plan.rooms);
    let handshake = async {
        match &plan.web_socket {
            Some(server) => Publisher::join_ws(stream, server, &room, index).await,
            None => Publisher::join_line(stream, &room, index).await,
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// The send times of the publisher at `position` of `publishers` in an open
/// loop at `rate` messages a second in all: its share, offset from the
/// others' so that together they send one message every `1 / rate` s.
fn open_loop_ticks(rate: f64, position: usize, publishers: usize, clock: Instant) -> Interval {
    let period = Duration::from_secs_f64(publishers as f64 / rate).max(Duration::from_nanos(1));
    let mut ticks = tokio::time::interval_at(clock + spread(period, position, publishers), period);
    // A late tick still sends: the offered rate holds, and its latency counts
    // from when it should have gone.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    ticks
}

/// The next open-loop send time; never, in the closed loop.
async fn next_tick(ticks: &mut Option<Interval>) -> Instant {
    match ticks {
        Some(ticks) => ticks.tick().await,
        None => std::future::pending().await,
    }
}

/// Publishes until the window is over: in the closed loop the pipeline is
/// filled once and each answer sends the next request; in the open loop each
/// tick sends one. Acks and errors are counted as they are read.
async fn publish(
    publisher: Publisher,
    pacing: Pacing,
    mut ticks: Option<Interval>,
    span: &Span,
    tally: &Tally,
) {
    let Publisher {
        mut inbound,
        mut outbound,
    } = publisher;
    let mut in_flight = InFlight::new();
    let send = |outbound: &mut publisher::Outbound, in_flight: &mut InFlight, at: Instant| {
        outbound.queue_say(in_flight.open(at));
        if span.contains(at) {
            tally.sent.set(tally.sent.get() + 1);
        }
    };
    if let Pacing::Closed { pipeline } = pacing {
        let now = Instant::now();
        for _ in 0..pipeline {
            send(&mut outbound, &mut in_flight, now);
        }
    }
    loop {
        tokio::select! {
            biased;
            () = span.over.cancelled() => return,
            read = inbound.receive() => {
                if !matches!(read, Ok(true)) {
                    tally.error(CONNECTION_ERROR);
                    return;
                }
                // Everything taken from one read arrived at the same moment.
                let now = Instant::now();
                let mut answered = 0;
                inbound.take_replies(|reply| match reply {
                    Reply::Ack(reference) => match in_flight.close(reference) {
                        Some(sent) => {
                            tally.ack(span, sent, now);
                            answered += 1;
                        }
                        None => tally.error(UNMATCHED_ACK),
                    },
                    Reply::Error { code, reference } => {
                        tally.error(std::str::from_utf8(code).unwrap_or("unknown"));
                        if in_flight.close(reference).is_some() {
                            answered += 1;
                        }
                    }
                    Reply::Other => {}
                });
                if matches!(pacing, Pacing::Closed { .. }) {
                    for _ in 0..answered {
                        send(&mut outbound, &mut in_flight, now);
                    }
                }
            }
            written = outbound.flush(), if outbound.has_pending() => {
                if written.is_err() {
                    tally.error(CONNECTION_ERROR);
                    return;
                }
            }
            scheduled = next_tick(&mut ticks) => send(&mut outbound, &mut in_flight, scheduled),
        }
    }
}

/// Watches the window: samples the client's, the server's and the machine's
/// CPU at its start and end and the server's memory every second, shows
/// progress, and ends the window at its deadline.
async fn watch(
    plan: &PublishPlan,
    span: &Span,
    tally: &Tally,
    bar: &ProgressBar,
) -> (WindowCost, Option<ServerMemory>) {
    bar.set_message("warming up");
    tokio::select! {
        () = tokio::time::sleep_until(span.start) => {}
        () = span.over.cancelled() => {}
    }
    let before = Snapshot::take(plan.server_pid);
    let mut memory = before
        .server
        .map(|server| ServerMemory::starting_at(server.rss_kib));
    let pid = plan.server_pid.map(|pid| pid.to_string());
    let deadline = async {
        match span.deadline {
            Some(deadline) => {
                tokio::time::sleep_until(deadline).await;
                deadline
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut sampling = tokio::time::interval_at(span.start + MEMORY_SAMPLE, MEMORY_SAMPLE);
    let mut refresh = tokio::time::interval_at(span.start + REFRESH, REFRESH);
    let mut last = (span.start, 0);
    loop {
        tokio::select! {
            biased;
            () = span.over.cancelled() => break,
            at = &mut deadline => {
                span.end(at);
                break;
            }
            _ = sampling.tick() => {
                if let (Some(memory), Some(sample)) =
                    (memory.as_mut(), pid.as_deref().and_then(ProcessSample::take))
                {
                    memory.record(sample.rss_kib);
                }
            }
            now = refresh.tick() => {
                let acked = tally.acked.get();
                let rate = (acked - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
                last = (now, acked);
                bar.set_message(progress(plan.stop, now - span.start, acked, rate));
            }
        }
    }
    let after = Snapshot::take(plan.server_pid);
    if let (Some(memory), Some(server)) = (memory.as_mut(), after.server) {
        memory.record(server.rss_kib);
    }
    (WindowCost::between(plan.server_pid, before, after), memory)
}

/// The progress line `measured` into the window.
fn progress(stop: Stop, measured: Duration, acked: u64, rate: f64) -> String {
    let done = match stop {
        Stop::After(total) => format!("{:.1}/{:.1} s", measured.as_secs_f64(), total.as_secs_f64()),
        Stop::AfterAcked(target) => format!(
            "{}/{} acked",
            thousands(acked as f64),
            thousands(target as f64)
        ),
    };
    format!("measuring {done}  {} acked/s", thousands(rate))
}

/// Adds up what the publishers saw and what the window cost.
fn summarize(
    plan: &PublishPlan,
    publishers: usize,
    span: &Span,
    tally: &Tally,
    cost: WindowCost,
    server_memory: Option<ServerMemory>,
) -> PublishReport {
    let WindowCost {
        client_cpu_seconds,
        mut server,
        steal_percent,
    } = cost;
    let seconds = span.seconds();
    let per_second = |value: f64| if seconds > 0.0 { value / seconds } else { 0.0 };
    let acked = tally.acked.get();
    if let Some(server) = server.as_mut() {
        server.spread_over(acked);
    }
    let error_codes = tally.errors.take();
    let (pipeline, offered_per_sec) = match plan.pacing {
        Pacing::Closed { pipeline } => (Some(pipeline), None),
        Pacing::Open { rate } => (None, Some(rate)),
    };
    PublishReport {
        mode: "publish",
        target: plan
            .web_socket
            .as_ref()
            .map_or_else(|| plan.target.to_string(), |server| server.url.clone()),
        publishers,
        rooms: plan.rooms,
        pipeline,
        offered_per_sec,
        seconds,
        sent: tally.sent.get(),
        acked,
        acked_per_sec: per_second(acked as f64),
        latency: Latency::of(&tally.latencies.borrow()),
        errors: error_codes.values().sum(),
        error_codes,
        client_cpu_percent: per_second(client_cpu_seconds) * 100.0,
        steal_percent,
        server,
        server_memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_close_the_request_they_name() {
        let now = Instant::now();
        let mut in_flight = InFlight::new();
        let refs: Vec<u64> = (0..3u32)
            .map(|n| in_flight.open(now + Duration::from_millis(n.into())))
            .collect();
        assert_eq!(refs, [1, 2, 3]);
        assert_eq!(
            in_flight.close(Some(2)),
            Some(now + Duration::from_millis(1))
        );
        assert_eq!(in_flight.close(Some(2)), None, "already answered");
        assert_eq!(in_flight.close(None), None);
        assert_eq!(in_flight.close(Some(1)), Some(now));
        assert_eq!(
            in_flight.close(Some(3)),
            Some(now + Duration::from_millis(2))
        );
        assert!(in_flight.requests.is_empty());
    }

    #[test]
    fn the_window_ends_once_and_counts_nothing_after() {
        let start = Instant::now();
        let span = Span {
            start,
            deadline: None,
            target: Some(2),
            ended: Cell::new(None),
            over: CancellationToken::new(),
        };
        let tally = Tally {
            latencies: RefCell::new(latency_histogram()),
            sent: Cell::new(0),
            acked: Cell::new(0),
            errors: RefCell::new(BTreeMap::new()),
        };
        let at = |ms| start + Duration::from_millis(ms);
        tally.ack(&span, start, at(1));
        assert!(!span.over.is_cancelled());
        tally.ack(&span, at(1), at(3));
        assert!(span.over.is_cancelled(), "the target was reached");
        tally.ack(&span, at(3), at(4));
        span.end(at(9));
        assert_eq!(tally.acked.get(), 2);
        assert_eq!(span.seconds(), 0.003);
        assert_eq!(tally.latencies.borrow().len(), 2);
    }

    #[test]
    fn errors_are_counted_by_code() {
        let tally = Tally {
            latencies: RefCell::new(latency_histogram()),
            sent: Cell::new(0),
            acked: Cell::new(0),
            errors: RefCell::new(BTreeMap::new()),
        };
        for code in ["unavailable", CONNECTION_ERROR, "unavailable"] {
            tally.error(code);
        }
        let errors = tally.errors.take();
        assert_eq!(errors.get("unavailable"), Some(&2));
        assert_eq!(errors.get(CONNECTION_ERROR), Some(&1));
    }
}
