//! `bench chat`: fan-out load against a chat hub (switchboard's, or the Node
//! reference in `bench/servers`) through line clients, or through WebSockets
//! speaking the JSON protocol when the target is a `ws://` URL.
//!
//! N subscribers and P publishers join one room. Publishers send at a set total
//! rate, shared so none exceeds the server's per-connection limit and spread
//! evenly in time (or, with `--in-step`, all at once each period); each text is
//! `p{publisher}:{seq}:{nanoseconds since start}`, so every subscriber can
//! measure delivery latency, and count losses and order violations per
//! publisher, from the text alone. Everything runs on one thread.

use std::cell::{Cell, RefCell};
use std::io;
use std::time::Duration;

use futures_util::stream::{self, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::bench::dialer::Dialer;
use crate::bench::echo::Window;
use crate::bench::report::{Latency, ServerCost, client_line};
use crate::bench::{WindowCost, WsTarget, latency_histogram, measure_window, progress};
use crate::error::{Error, Result, describe_io};
use crate::net::addr::HostPort;
use crate::net::fd_limit::raise_fd_limit;

mod member;

use member::Member;

/// How long a connection may take to be greeted and join the room.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many handshakes run at once: few enough that each connection speaks
/// well inside the 250 ms after which a chat hub takes a silent client for a
/// line client (TLS handshakes on this one thread pile up otherwise).
pub(super) const HANDSHAKES_IN_FLIGHT: usize = 32;

/// How long after the window deliveries still count (they were sent inside it).
const DRAIN: Duration = Duration::from_secs(2);

/// What `bench chat` should do.
#[derive(Clone, Debug)]
pub struct ChatPlan {
    /// The chat hub.
    pub target: HostPort,
    /// Connections that only listen.
    pub subscribers: usize,
    /// Connections that send.
    pub publishers: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// The room, without `#`.
    pub room: String,
    /// All publishers send at the same instant instead of spread evenly.
    pub in_step: bool,
    /// The server's process, to measure its CPU per delivery.
    pub server_pid: Option<u32>,
    /// How many loopback source addresses to spread connections over.
    pub sources: usize,
    /// A WebSocket server: connect as WebSockets speaking JSON instead of line clients.
    pub web_socket: Option<WsTarget>,
}

/// The result of `bench chat`.
#[derive(Clone, Debug, Serialize)]
pub struct ChatReport {
    /// Always `"chat"`.
    pub mode: &'static str,
    /// The server benchmarked.
    pub target: String,
    /// Listening connections.
    pub subscribers: usize,
    /// Sending connections.
    pub publishers: usize,
    /// Messages per second offered.
    pub offered_per_sec: f64,
    /// Whether the publishers sent in step (bursts) rather than spread evenly.
    pub in_step: bool,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Messages published in the window.
    pub messages: u64,
    /// Deliveries of those messages to subscribers.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Publish-to-delivery latency.
    pub latency: Latency,
    /// Deliveries that never arrived.
    pub lost: u64,
    /// Deliveries that arrived after a later message of the same publisher.
    pub out_of_order: u64,
    /// Connections that failed to open, join or stay.
    pub errors: u64,
    /// The load client's own CPU use in the window, percent of one core.
    pub client_cpu_percent: f64,
    /// The share of the machine's CPU time stolen by the hypervisor in the
    /// window, percent: on a virtual machine, latency nobody here caused.
    pub steal_percent: Option<f64>,
    /// The server's cost (CPU per delivery), with `--pid`.
    pub server: Option<ServerCost>,
}

impl ChatReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let l = &self.latency;
        let mut out = format!(
            "bench chat {}: {} subscribers, {} publishers {}, {:.0} msg/s offered, {:.1} s measured\n",
            self.target,
            self.subscribers,
            self.publishers,
            if self.in_step {
                "in step"
            } else {
                "spread evenly"
            },
            self.offered_per_sec,
            self.seconds
        );
        out.push_str(&format!(
            "{:>12} {:>13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>12} {:>7}\n",
            "deliveries",
            "deliveries/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "lost",
            "out of order",
            "errors"
        ));
        out.push_str(&format!(
            "{:>12} {:>13.0} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>6} {:>12} {:>7}\n",
            self.deliveries,
            self.deliveries_per_sec,
            l.p50_us as f64 / 1e3,
            l.p90_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.p999_us as f64 / 1e3,
            l.max_us as f64 / 1e3,
            self.lost,
            self.out_of_order,
            self.errors
        ));
        if let Some(server) = &self.server {
            out.push_str(&server.line("delivery"));
        }
        out.push_str(&client_line(self.client_cpu_percent, self.steal_percent));
        out
    }
}

/// What the subscribers saw, shared on the one thread.
struct Tally {
    latencies: RefCell<Histogram<u64>>,
    deliveries: Cell<u64>,
    out_of_order: Cell<u64>,
    errors: Cell<u64>,
}

/// What the publishers sent inside the window: per publisher, the first and
/// last sequence number (inclusive).
struct Sent {
    ranges: RefCell<Vec<Option<(u64, u64)>>>,
}

/// Runs the benchmark, showing progress on `bar`.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Connect`] when not one connection joins.
pub async fn run(plan: &ChatPlan, bar: &ProgressBar) -> Result<ChatReport> {
    let target = plan.target.resolve().await?[0];
    raise_fd_limit();
    let total = plan.subscribers + plan.publishers;
    bar.set_message(format!("joining #{} with {total} connections", plan.room));
    // Each connection speaks as soon as it is open: a hub takes a client
    // silent for 250 ms for a line client, so opening them all first and
    // greeting them afterwards would fail (a WebSocket handshake most of all).
    let dialer = Dialer::new(target, plan.sources);
    let mut attempts = stream::iter(0..total)
        .map(|index| {
            let dialer = &dialer;
            async move { join(dialer.connect(index).await?, plan).await }
        })
        .buffer_unordered(HANDSHAKES_IN_FLIGHT);
    let mut members = Vec::with_capacity(total);
    let mut first_failure = None;
    while let Some(joined) = attempts.next().await {
        match joined {
            Ok(member) => members.push(member),
            Err(err) => {
                first_failure.get_or_insert(err);
            }
        }
    }
    if members.len() < plan.publishers + 1 {
        let cause = first_failure.map_or_else(String::new, |err| {
            format!(" (first failure: {})", describe_io(&err))
        });
        return Err(Error::Connect {
            addr: plan.target.to_string(),
            reason: format!(
                "only {} connections joined #{}{cause}",
                members.len(),
                plan.room
            ),
        });
    }
    let join_failures = (total - members.len()) as u64;
    let publishers: Vec<Member> = members.drain(..plan.publishers).collect();
    let start = Instant::now() + plan.warmup;
    let window = Window {
        start,
        end: start + plan.duration,
    };
    let clock = Instant::now();
    let tally = Tally {
        latencies: RefCell::new(latency_histogram()),
        deliveries: Cell::new(0),
        out_of_order: Cell::new(0),
        errors: Cell::new(join_failures),
    };
    let sent = Sent {
        ranges: RefCell::new(vec![None; plan.publishers]),
    };
    let tasks: FuturesUnordered<_> =
        publishers
            .into_iter()
            .enumerate()
            .map(|(index, member)| {
                publish(member, index, plan, window, clock, &sent, &tally).boxed_local()
            })
            .chain(members.into_iter().map(|member| {
                subscribe(member, plan.publishers, window, clock, &tally).boxed_local()
            }))
            .collect();
    let subscribers = tasks.len() - plan.publishers;
    let (_, cost, ()) = tokio::join!(
        tasks.collect::<Vec<()>>(),
        measure_window(window, plan.server_pid),
        progress::show_rate(bar, window, &tally.deliveries),
    );
    Ok(summarize(plan, subscribers, &sent, &tally, cost))
}

/// Greets a connection and joins the room, over the plan's protocol.
async fn join(stream: TcpStream, plan: &ChatPlan) -> io::Result<Member> {
    let handshake = async {
        match &plan.web_socket {
            Some(server) => Member::join_ws(stream, server, &plan.room).await,
            None => Member::join_line(stream, &plan.room).await,
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Sends `p{index}:{seq}:{ns}` at its share of the plan's rate until the window ends,
/// reading (and dropping) what the room sends back.
async fn publish(
    mut member: Member,
    index: usize,
    plan: &ChatPlan,
    window: Window,
    clock: Instant,
    sent: &Sent,
    tally: &Tally,
) {
    let period = Duration::from_secs_f64(plan.publishers as f64 / plan.rate.max(0.001));
    let phase = if plan.in_step {
        Duration::ZERO
    } else {
        spread(period, index, plan.publishers)
    };
    let mut ticks = tokio::time::interval_at(clock + phase, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            now = ticks.tick() => {
                if now >= window.end {
                    break;
                }
                seq += 1;
                let text = format!("p{index}:{seq}:{}", now.duration_since(clock).as_nanos());
                if member.say(&plan.room, &text).await.is_err() {
                    tally.errors.set(tally.errors.get() + 1);
                    return;
                }
                if now >= window.start {
                    let mut ranges = sent.ranges.borrow_mut();
                    let range = ranges[index].get_or_insert((seq, seq));
                    range.1 = seq;
                }
            }
            read = member.receive() => {
                member.discard_received();
                if !matches!(read, Ok(true)) {
                    tally.errors.set(tally.errors.get() + 1);
                    return;
                }
            }
        }
    }
    drain(&mut member, window).await;
}

/// How far into each `period` publisher `index` of `publishers` sends, so
/// that together they send one message every `period / publishers` rather
/// than a burst of all of them at once.
pub(super) fn spread(period: Duration, index: usize, publishers: usize) -> Duration {
    period.mul_f64(index as f64 / publishers.max(1) as f64)
}

/// Reads and drops until the drain period after the window is over.
async fn drain(member: &mut Member, window: Window) {
    let deadline = tokio::time::sleep_until(window.end + DRAIN);
    tokio::pin!(deadline);
    loop {
        member.discard_received();
        tokio::select! {
            read = member.receive() => {
                if !matches!(read, Ok(true)) {
                    return;
                }
            }
            () = &mut deadline => return,
        }
    }
}

/// Receives the room's messages until the drain period ends, recording
/// latency, order and count for messages sent inside the window.
async fn subscribe(
    mut member: Member,
    publishers: usize,
    window: Window,
    clock: Instant,
    tally: &Tally,
) {
    let mut last_seq = vec![0u64; publishers];
    // One deadline for the task's life, not a timer per read.
    let deadline = tokio::time::sleep_until(window.end + DRAIN);
    tokio::pin!(deadline);
    loop {
        let read = tokio::select! {
            biased;
            read = member.receive() => read,
            () = &mut deadline => return,
        };
        if !matches!(read, Ok(true)) {
            tally.errors.set(tally.errors.get() + 1);
            return;
        }
        // Everything taken from one read arrived at the same moment.
        let arrived = Instant::now();
        let mut latencies = tally.latencies.borrow_mut();
        member.take_deliveries(|delivery| {
            let Some((publisher, seq, sent_ns)) = delivery else {
                return;
            };
            let Some(last) = last_seq.get_mut(publisher) else {
                return;
            };
            if seq <= *last {
                tally.out_of_order.set(tally.out_of_order.get() + 1);
            }
            *last = (*last).max(seq);
            let sent_at = clock + Duration::from_nanos(sent_ns);
            if sent_at >= window.start && sent_at < window.end {
                let latency = arrived.saturating_duration_since(sent_at);
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros.max(1));
                tally.deliveries.set(tally.deliveries.get() + 1);
            }
        });
    }
}

/// Adds up what the publishers sent and the subscribers received.
fn summarize(
    plan: &ChatPlan,
    subscribers: usize,
    sent: &Sent,
    tally: &Tally,
    cost: WindowCost,
) -> ChatReport {
    let WindowCost {
        client_cpu_seconds,
        mut server,
        steal_percent,
    } = cost;
    let messages: u64 = sent
        .ranges
        .borrow()
        .iter()
        .flatten()
        .map(|(first, last)| last - first + 1)
        .sum();
    let deliveries = tally.deliveries.get();
    let expected = messages * subscribers as u64;
    let seconds = plan.duration.as_secs_f64();
    if let Some(server) = server.as_mut() {
        server.spread_over(deliveries);
    }
    ChatReport {
        mode: "chat",
        target: plan
            .web_socket
            .as_ref()
            .map_or_else(|| plan.target.to_string(), |server| server.url.clone()),
        subscribers,
        publishers: plan.publishers,
        offered_per_sec: plan.rate,
        in_step: plan.in_step,
        seconds,
        messages,
        deliveries,
        deliveries_per_sec: deliveries as f64 / seconds,
        latency: Latency::of(&tally.latencies.borrow()),
        lost: expected.saturating_sub(deliveries),
        out_of_order: tally.out_of_order.get(),
        errors: tally.errors.get(),
        client_cpu_percent: client_cpu_seconds / seconds * 100.0,
        steal_percent,
        server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_are_spread_evenly_over_the_period() {
        let period = Duration::from_millis(70);
        let offsets: Vec<_> = (0..7).map(|index| spread(period, index, 7)).collect();
        let expected: Vec<_> = (0..7).map(|n| Duration::from_millis(10 * n)).collect();
        assert_eq!(offsets, expected);
        assert_eq!(spread(period, 0, 0), Duration::ZERO);
    }
}
