//! `bench chat`: fan-out load against a chat hub (switchboard's, or the Node
//! references in `bench/servers`) through line clients, through WebSockets
//! speaking the JSON protocol when the target is a `ws://` URL, or through
//! Socket.IO clients when it is a `socketio://` address.
//!
//! N subscribers and P publishers join one room. Publishers send at a set
//! total rate, shared so none exceeds the server's per-connection limit and
//! spread evenly in time (or, with `--in-step`, all at once each period);
//! each text is `p{publisher}:{seq}:{nanoseconds since start}`, so every
//! subscriber can measure delivery latency, and count losses and order
//! violations per publisher, from the text alone. Given several nodes of one
//! cluster, connection `i` goes to node `i mod nodes` (publishers too), and
//! each delivery counts as same-node or cross-node by where its publisher
//! and its subscriber are. Everything runs on one thread.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, FuturesUnordered};
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::MaybeTlsStream;

use crate::bench::dialer::Dialer;
use crate::bench::echo::Window;
use crate::bench::report::{Latency, RedisCost, ServerCost, client_line};
use crate::bench::{
    WindowCost, WsTarget, latency_histogram, measure_processes, measure_run_time, measure_window,
    progress,
};
use crate::client::connect::describe_tls_io;
use crate::error::{Error, Result, describe_io};
use crate::net::addr::HostPort;
use crate::net::fd_limit::raise_fd_limit;

mod member;
pub mod socketio;

use member::Member;

/// How long a connection may take to be greeted and join the room.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many handshakes run at once: few enough that each connection speaks
/// well inside the 250 ms after which a chat hub takes a silent client for a
/// line client (TLS handshakes on this one thread pile up otherwise).
pub(super) const HANDSHAKES_IN_FLIGHT: usize = 32;

/// How long after the window deliveries still count (they were sent inside it).
const DRAIN: Duration = Duration::from_secs(2);

/// How `bench chat` speaks to a node.
#[derive(Clone, Debug)]
pub enum ChatProtocol {
    /// Line clients (docs/PROTOCOL.md 5.1), over TLS with this client
    /// configuration when set (`tls://HOST:PORT`).
    Line(Option<Arc<ClientConfig>>),
    /// WebSockets speaking the JSON protocol (docs/PROTOCOL.md 5.2).
    Json(WsTarget),
    /// Socket.IO clients: Engine.IO v4 over a WebSocket at this URL.
    SocketIo(WsTarget),
}

/// One chat hub the benchmark connects members to.
#[derive(Clone, Debug)]
pub struct ChatNode {
    /// The node as the user named it, for the report.
    pub name: String,
    /// Where to connect.
    pub target: HostPort,
    /// What to speak.
    pub protocol: ChatProtocol,
}

/// What `bench chat` should do.
#[derive(Clone, Debug)]
pub struct ChatPlan {
    /// The chat hub, or the nodes of one cluster: members are spread over
    /// them round-robin.
    pub nodes: Vec<ChatNode>,
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
    /// The servers' processes (one per node), to measure their CPU per delivery.
    pub server_pids: Vec<u32>,
    /// The Redis server's process, to measure its CPU per message.
    pub redis_pid: Option<u32>,
    /// How many loopback source addresses to spread connections over.
    pub sources: usize,
}

/// The result of `bench chat`.
#[derive(Clone, Debug, Serialize)]
pub struct ChatReport {
    /// Always `"chat"`.
    pub mode: &'static str,
    /// The server benchmarked (several nodes: their names, space-separated).
    pub target: String,
    /// Each node with the members it carried, in the order given.
    pub nodes: Vec<NodeShare>,
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
    /// With several nodes: deliveries whose publisher is on the subscriber's node.
    pub same_node: Option<DeliveryShare>,
    /// With several nodes: deliveries whose publisher is on another node
    /// than the subscriber, carried between the nodes.
    pub cross_node: Option<DeliveryShare>,
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
    /// The server's cost (CPU per delivery), with `--pid`; with several
    /// `--pid`s their sum (its `pid` the first of them).
    pub server: Option<ServerCost>,
    /// Each `--pid`'s cost, in the order given; their CPU per delivery adds
    /// up to the total's.
    pub servers: Vec<ServerCost>,
    /// The Redis server's cost per message published, with `--redis-pid`.
    pub redis: Option<RedisCost>,
}

/// One node's share of the members.
#[derive(Clone, Debug, Serialize)]
pub struct NodeShare {
    /// The node as named on the command line.
    pub target: String,
    /// Listening connections that joined on it.
    pub subscribers: usize,
    /// Sending connections that joined on it.
    pub publishers: usize,
}

/// The deliveries of one kind (same-node or cross-node).
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryShare {
    /// Deliveries of messages published in the window.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Publish-to-delivery latency.
    pub latency: Latency,
    /// Deliveries of this kind that never arrived.
    pub lost: u64,
}

impl ChatReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
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
        if self.nodes.len() > 1 {
            let spread: Vec<String> = self
                .nodes
                .iter()
                .map(|node| {
                    format!(
                        "{} {} subscribers + {} publishers",
                        node.target, node.subscribers, node.publishers
                    )
                })
                .collect();
            out.push_str(&format!("members per node: {}\n", spread.join(", ")));
        }
        let kinds = self.same_node.as_ref().zip(self.cross_node.as_ref());
        let label = |name: &str| {
            if kinds.is_some() {
                format!("{name:<11}")
            } else {
                String::new()
            }
        };
        out.push_str(&format!(
            "{}{:>12} {:>13} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>12} {:>7}\n",
            label(""),
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
        let row = |name: &str, deliveries: u64, per_sec: f64, l: &Latency, lost: u64| {
            format!(
                "{}{:>12} {:>13.0} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>6}",
                label(name),
                deliveries,
                per_sec,
                l.p50_us as f64 / 1e3,
                l.p90_us as f64 / 1e3,
                l.p99_us as f64 / 1e3,
                l.p999_us as f64 / 1e3,
                l.max_us as f64 / 1e3,
                lost,
            )
        };
        out.push_str(&row(
            "all",
            self.deliveries,
            self.deliveries_per_sec,
            &self.latency,
            self.lost,
        ));
        out.push_str(&format!(" {:>12} {:>7}\n", self.out_of_order, self.errors));
        if let Some((same, cross)) = kinds {
            for (name, share) in [("same node", same), ("cross-node", cross)] {
                out.push_str(&row(
                    name,
                    share.deliveries,
                    share.deliveries_per_sec,
                    &share.latency,
                    share.lost,
                ));
                out.push('\n');
            }
        }
        if self.servers.len() > 1 {
            for server in &self.servers {
                out.push_str(&server.line("delivery"));
            }
        }
        if let Some(server) = &self.server {
            if self.servers.len() > 1 {
                let pids: Vec<String> = self.servers.iter().map(|s| s.pid.to_string()).collect();
                let who = format!("servers together (pids {})", pids.join(" + "));
                out.push_str(&server.line_for(&who, "delivery"));
            } else {
                out.push_str(&server.line("delivery"));
            }
        }
        if let Some(redis) = &self.redis {
            out.push_str(&redis.line());
        }
        out.push_str(&client_line(self.client_cpu_percent, self.steal_percent));
        out
    }
}

/// What the subscribers saw, shared on the one thread.
struct Tally {
    /// Every delivery in the window.
    all: Kind,
    /// Those whose publisher is on the subscriber's node.
    same_node: Kind,
    /// Those whose publisher is on another node.
    cross_node: Kind,
    out_of_order: Cell<u64>,
    errors: Cell<u64>,
}

/// The deliveries of one kind: how many, and their latencies.
struct Kind {
    latencies: RefCell<Histogram<u64>>,
    deliveries: Cell<u64>,
}

impl Kind {
    /// None yet.
    fn new() -> Self {
        Self {
            latencies: RefCell::new(latency_histogram()),
            deliveries: Cell::new(0),
        }
    }

    /// The report of this kind, over `seconds`, given how many deliveries
    /// of it were expected.
    fn share(&self, seconds: f64, expected: u64) -> DeliveryShare {
        let deliveries = self.deliveries.get();
        DeliveryShare {
            deliveries,
            deliveries_per_sec: deliveries as f64 / seconds,
            latency: Latency::of(&self.latencies.borrow()),
            lost: expected.saturating_sub(deliveries),
        }
    }
}

/// What the publishers sent inside the window: per publisher, the first and
/// last sequence number (inclusive).
struct Sent {
    ranges: RefCell<Vec<Option<(u64, u64)>>>,
}

/// A member that joined: its connection's number, its node's index and the connection.
type Joined = (usize, usize, Member);

/// Where the members are: which node each publisher and subscriber joined on.
struct Placement {
    /// Per publisher (by its index in the texts), its node.
    publisher_nodes: Vec<usize>,
    /// Per node, how many subscribers joined on it.
    subscribers_per_node: Vec<usize>,
}

/// Runs the benchmark, showing progress on `bar`.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Connect`] when not enough connections join.
pub async fn run(plan: &ChatPlan, bar: &ProgressBar) -> Result<ChatReport> {
    let mut dialers = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        dialers.push(Dialer::new(node.target.resolve().await?[0], plan.sources));
    }
    raise_fd_limit();
    let total = plan.subscribers + plan.publishers;
    bar.set_message(format!("joining #{} with {total} connections", plan.room));
    // Each connection speaks as soon as it is open: a hub takes a client
    // silent for 250 ms for a line client, so opening them all first and
    // greeting them afterwards would fail (a WebSocket handshake most of all).
    let mut attempts = stream::iter(0..total)
        .map(|index| {
            let node = index % plan.nodes.len();
            let dialer = &dialers[node];
            async move {
                let stream = dialer.connect(index).await?;
                let member = join(stream, &plan.nodes[node], &plan.room).await?;
                io::Result::Ok((index, node, member))
            }
        })
        .buffer_unordered(HANDSHAKES_IN_FLIGHT);
    let mut members: Vec<Joined> = Vec::with_capacity(total);
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
        let targets: Vec<String> = plan.nodes.iter().map(|n| n.target.to_string()).collect();
        return Err(Error::Connect {
            addr: targets.join(", "),
            reason: format!(
                "only {} connections joined #{}{cause}",
                members.len(),
                plan.room
            ),
        });
    }
    let join_failures = (total - members.len()) as u64;
    // The lowest-numbered connections publish: round-robin, so on every node.
    members.sort_unstable_by_key(|(index, _, _)| *index);
    let publishers: Vec<(usize, Member)> = members
        .drain(..plan.publishers)
        .map(|(_, node, member)| (node, member))
        .collect();
    let mut placement = Placement {
        publisher_nodes: publishers.iter().map(|(node, _)| *node).collect(),
        subscribers_per_node: vec![0; plan.nodes.len()],
    };
    for (_, node, _) in &members {
        placement.subscribers_per_node[*node] += 1;
    }
    let start = Instant::now() + plan.warmup;
    let window = Window {
        start,
        end: start + plan.duration,
    };
    let clock = Instant::now();
    let tally = Tally {
        all: Kind::new(),
        same_node: Kind::new(),
        cross_node: Kind::new(),
        out_of_order: Cell::new(0),
        errors: Cell::new(join_failures),
    };
    let sent = Sent {
        ranges: RefCell::new(vec![None; plan.publishers]),
    };
    let publisher_nodes = &placement.publisher_nodes;
    let tasks: FuturesUnordered<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(index, (_, member))| {
            publish(member, index, plan, window, clock, &sent, &tally).boxed_local()
        })
        .chain(members.into_iter().map(|(_, node, member)| {
            let subscriber = Subscriber {
                node,
                publisher_nodes,
            };
            subscribe(member, subscriber, window, clock, &tally).boxed_local()
        }))
        .collect();
    let subscribers = tasks.len() - plan.publishers;
    let (_, window_cost, servers, redis, ()) = tokio::join!(
        tasks.collect::<Vec<()>>(),
        measure_window(window, None),
        measure_processes(window, &plan.server_pids),
        measure_run_time(window, plan.redis_pid),
        progress::show_rate(bar, window, &tally.all.deliveries),
    );
    let costs = Costs {
        window: window_cost,
        servers: servers.into_iter().flatten().collect(),
        redis,
    };
    Ok(summarize(
        plan,
        subscribers,
        &placement,
        &sent,
        &tally,
        costs,
    ))
}

/// `stream` as a line member's connection: as it is, or after a TLS
/// handshake with `tls` (checking the certificate against `host`).
async fn line_stream(
    stream: TcpStream,
    tls: Option<&Arc<ClientConfig>>,
    host: &str,
) -> io::Result<MaybeTlsStream<TcpStream>> {
    let Some(tls) = tls else {
        return Ok(MaybeTlsStream::Plain(stream));
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let connector = TlsConnector::from(Arc::clone(tls));
    match connector.connect(name, stream).await {
        Ok(session) => Ok(MaybeTlsStream::Rustls(session)),
        Err(err) => Err(io::Error::other(describe_tls_io(&err))),
    }
}

/// Greets a connection and joins the room, over the node's protocol.
async fn join(stream: TcpStream, node: &ChatNode, room: &str) -> io::Result<Member> {
    let handshake = async {
        match &node.protocol {
            ChatProtocol::Line(tls) => {
                let stream = line_stream(stream, tls.as_ref(), &node.target.host).await?;
                Member::join_line(stream, room).await
            }
            ChatProtocol::Json(server) => Member::join_ws(stream, server, room).await,
            ChatProtocol::SocketIo(server) => Member::join_socketio(stream, server, room).await,
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

/// Where a subscriber is, to tell same-node from cross-node deliveries.
#[derive(Clone, Copy)]
struct Subscriber<'a> {
    /// Its node.
    node: usize,
    /// Each publisher's node.
    publisher_nodes: &'a [usize],
}

/// Receives the room's messages until the drain period ends, recording
/// latency, order and count for messages sent inside the window.
async fn subscribe(
    mut member: Member,
    at: Subscriber<'_>,
    window: Window,
    clock: Instant,
    tally: &Tally,
) {
    let mut last_seq = vec![0u64; at.publisher_nodes.len()];
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
        let mut all = tally.all.latencies.borrow_mut();
        let mut same_node = tally.same_node.latencies.borrow_mut();
        let mut cross_node = tally.cross_node.latencies.borrow_mut();
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
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                all.saturating_record(micros);
                tally.all.deliveries.set(tally.all.deliveries.get() + 1);
                let (kind, latencies) = if at.publisher_nodes[publisher] == at.node {
                    (&tally.same_node, &mut same_node)
                } else {
                    (&tally.cross_node, &mut cross_node)
                };
                latencies.saturating_record(micros);
                kind.deliveries.set(kind.deliveries.get() + 1);
            }
        });
    }
}

/// What the measured window cost the client, the servers and Redis.
struct Costs {
    /// The client's CPU and the machine's steal.
    window: WindowCost,
    /// Each `--pid` that could be read.
    servers: Vec<ServerCost>,
    /// `--redis-pid`, when it could be read.
    redis: Option<RedisCost>,
}

/// Adds up what the publishers sent and the subscribers received.
fn summarize(
    plan: &ChatPlan,
    subscribers: usize,
    placement: &Placement,
    sent: &Sent,
    tally: &Tally,
    costs: Costs,
) -> ChatReport {
    let Costs {
        window,
        mut servers,
        mut redis,
    } = costs;
    let sent_by: Vec<u64> = sent
        .ranges
        .borrow()
        .iter()
        .map(|range| range.map_or(0, |(first, last)| last - first + 1))
        .collect();
    let messages: u64 = sent_by.iter().sum();
    let deliveries = tally.all.deliveries.get();
    let expected = messages * subscribers as u64;
    // Same-node deliveries expected: each message, by every subscriber on
    // its publisher's node.
    let expected_same_node: u64 = sent_by
        .iter()
        .zip(&placement.publisher_nodes)
        .map(|(count, node)| count * placement.subscribers_per_node[*node] as u64)
        .sum();
    let seconds = plan.duration.as_secs_f64();
    let mut server = ServerCost::sum(&servers);
    for cost in servers.iter_mut().chain(server.as_mut()) {
        cost.spread_over(deliveries);
    }
    if let Some(redis) = redis.as_mut() {
        redis.spread_over(messages);
    }
    let several = plan.nodes.len() > 1;
    let nodes = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| NodeShare {
            target: node.name.clone(),
            subscribers: placement.subscribers_per_node[index],
            publishers: placement
                .publisher_nodes
                .iter()
                .filter(|n| **n == index)
                .count(),
        })
        .collect();
    let names: Vec<&str> = plan.nodes.iter().map(|node| node.name.as_str()).collect();
    ChatReport {
        mode: "chat",
        target: names.join(" "),
        nodes,
        subscribers,
        publishers: plan.publishers,
        offered_per_sec: plan.rate,
        in_step: plan.in_step,
        seconds,
        messages,
        deliveries,
        deliveries_per_sec: deliveries as f64 / seconds,
        latency: Latency::of(&tally.all.latencies.borrow()),
        same_node: several.then(|| tally.same_node.share(seconds, expected_same_node)),
        cross_node: several.then(|| {
            tally
                .cross_node
                .share(seconds, expected - expected_same_node)
        }),
        lost: expected.saturating_sub(deliveries),
        out_of_order: tally.out_of_order.get(),
        errors: tally.errors.get(),
        client_cpu_percent: window.client_cpu_seconds / seconds * 100.0,
        steal_percent: window.steal_percent,
        server,
        servers,
        redis,
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
