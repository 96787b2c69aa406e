//! What a benchmark run found, as a table for people and JSON for machines.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::procfs::ProcessSample;

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// The slowest seen.
    pub max_us: u64,
}

impl Latency {
    /// The percentiles of a histogram recorded in microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// What the measured window cost the server process (`--pid`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServerCost {
    /// The server's process id.
    pub pid: u32,
    /// CPU seconds (user + system) the server used in the window.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel.
    pub system_cpu_seconds: f64,
    /// CPU microseconds per message (echo) or per delivery (chat).
    pub cpu_us_per_message: Option<f64>,
    /// The part of `cpu_us_per_message` spent in the kernel: on loopback
    /// mostly the TCP path of each write, which no server can avoid.
    pub kernel_us_per_message: Option<f64>,
    /// Resident memory at the start, KiB.
    pub rss_kib_before: u64,
    /// Resident memory at the end, KiB.
    pub rss_kib_after: u64,
}

impl ServerCost {
    /// The cost of process `pid` between two samples, when both were taken.
    pub fn between(
        pid: Option<u32>,
        before: Option<ProcessSample>,
        after: Option<ProcessSample>,
    ) -> Option<Self> {
        let (pid, before, after) = (pid?, before?, after?);
        Some(Self {
            pid,
            cpu_seconds: after.cpu_seconds_since(&before),
            system_cpu_seconds: after.system_seconds_since(&before),
            cpu_us_per_message: None,
            kernel_us_per_message: None,
            rss_kib_before: before.rss_kib,
            rss_kib_after: after.rss_kib,
        })
    }

    /// Several processes' costs added up, as if they were one (the nodes of
    /// a cluster); the first one's `pid`. `None` for none.
    pub fn sum(costs: &[Self]) -> Option<Self> {
        let (first, rest) = costs.split_first()?;
        let mut total = *first;
        for cost in rest {
            total.cpu_seconds += cost.cpu_seconds;
            total.system_cpu_seconds += cost.system_cpu_seconds;
            total.rss_kib_before += cost.rss_kib_before;
            total.rss_kib_after += cost.rss_kib_after;
        }
        Some(total)
    }

    /// Shares the window's CPU time out over the `count` messages (or
    /// deliveries) it carried.
    pub fn spread_over(&mut self, count: u64) {
        let per = |seconds: f64| (count > 0).then(|| seconds * 1e6 / count as f64);
        self.cpu_us_per_message = per(self.cpu_seconds);
        self.kernel_us_per_message = per(self.system_cpu_seconds);
    }

    /// One line for the table: `unit` is what a message is called.
    pub fn line(&self, unit: &str) -> String {
        self.line_for(&format!("server (pid {})", self.pid), unit)
    }

    /// One line for the table, for the process(es) `who` names.
    pub fn line_for(&self, who: &str, unit: &str) -> String {
        let per = match (self.cpu_us_per_message, self.kernel_us_per_message) {
            (Some(all), Some(kernel)) => {
                format!("{all:.2} µs CPU per {unit} ({kernel:.2} µs in the kernel)")
            }
            _ => format!("n/a CPU per {unit}"),
        };
        format!(
            "{who}: {:.2} CPU s, {per}, RSS {} KiB\n",
            self.cpu_seconds, self.rss_kib_after
        )
    }
}

/// What the measured window cost the Redis server that joins a cluster's
/// nodes (`--redis-pid`), per message published.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RedisCost {
    /// Its process id.
    pub pid: u32,
    /// CPU seconds it ran in the window, all its threads, to the nanosecond
    /// (from schedstat: it uses too little for clock ticks to tell).
    pub cpu_seconds: f64,
    /// CPU microseconds per message published in the window.
    pub cpu_us_per_message: Option<f64>,
    /// Resident memory at the window's end, KiB.
    pub rss_kib: u64,
}

impl RedisCost {
    /// Shares the window's CPU time out over the `messages` published in it.
    pub fn spread_over(&mut self, messages: u64) {
        self.cpu_us_per_message = (messages > 0).then(|| self.cpu_seconds * 1e6 / messages as f64);
    }

    /// One line for the table.
    pub fn line(&self) -> String {
        let per = self
            .cpu_us_per_message
            .map_or_else(|| "n/a".into(), |us| format!("{us:.2} µs"));
        format!(
            "redis (pid {}): {:.3} CPU s, {per} CPU per message, RSS {} KiB\n",
            self.pid, self.cpu_seconds, self.rss_kib
        )
    }
}

/// The server's resident memory over a measured window, sampled at its
/// start, about once a second and at its end: whether a long run stays flat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServerMemory {
    /// At the window's start, KiB.
    pub rss_kib_start: u64,
    /// At the window's end, KiB.
    pub rss_kib_end: u64,
    /// The most of any sample, KiB.
    pub rss_kib_peak: u64,
    /// How many samples were taken.
    pub samples: u64,
}

impl ServerMemory {
    /// The first sample, at the window's start.
    pub fn starting_at(rss_kib: u64) -> Self {
        Self {
            rss_kib_start: rss_kib,
            rss_kib_end: rss_kib,
            rss_kib_peak: rss_kib,
            samples: 1,
        }
    }

    /// Adds a later sample: the latest one is the end so far.
    pub fn record(&mut self, rss_kib: u64) {
        self.rss_kib_end = rss_kib;
        self.rss_kib_peak = self.rss_kib_peak.max(rss_kib);
        self.samples += 1;
    }

    /// One line for the table.
    pub fn line(&self) -> String {
        format!(
            "server memory: RSS {} KiB at the start, {} KiB at the end, peak {} KiB ({} samples)\n",
            thousands(self.rss_kib_start as f64),
            thousands(self.rss_kib_end as f64),
            thousands(self.rss_kib_peak as f64),
            self.samples
        )
    }
}

/// The result of `bench echo`.
#[derive(Clone, Debug, Serialize)]
pub struct EchoReport {
    /// Always `"echo"`.
    pub mode: &'static str,
    /// The server benchmarked.
    pub target: String,
    /// Connections that took part.
    pub connections: usize,
    /// Request size in bytes.
    pub size: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Replies completed in the window.
    pub messages: u64,
    /// Replies per second.
    pub messages_per_sec: f64,
    /// Payload echoed per second, in MB (10^6 bytes), one direction.
    pub mb_per_sec: f64,
    /// Request-to-reply latency.
    pub latency: Latency,
    /// Connections that failed to open or broke, and replies that made no sense.
    pub errors: u64,
    /// The load client's own CPU use in the window, percent of one core.
    pub client_cpu_percent: f64,
    /// The share of the machine's CPU time stolen by the hypervisor in the
    /// window, percent.
    pub steal_percent: Option<f64>,
    /// The server's cost, with `--pid`.
    pub server: Option<ServerCost>,
}

/// The last line of a report: the client's CPU and, on a virtual machine
/// that reports it, the CPU time the hypervisor took.
pub fn client_line(client_cpu_percent: f64, steal_percent: Option<f64>) -> String {
    match steal_percent {
        Some(steal) => format!(
            "client: {client_cpu_percent:.0}% of one core; machine: {steal:.1}% of CPU time stolen by the hypervisor\n"
        ),
        None => format!("client: {client_cpu_percent:.0}% of one core\n"),
    }
}

impl EchoReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench echo {}: {} connections, {} B requests, pipeline {}, {:.1} s measured",
            self.target, self.connections, self.size, self.pipeline, self.seconds
        );
        let _ = writeln!(
            out,
            "{:>11} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "connections", "messages/s", "MB/s", "p50", "p90", "p99", "p99.9", "max", "errors"
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "{:>11} {:>12} {:>9.2} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            self.connections,
            thousands(self.messages_per_sec),
            self.mb_per_sec,
            micros(l.p50_us),
            micros(l.p90_us),
            micros(l.p99_us),
            micros(l.p999_us),
            micros(l.max_us),
            self.errors
        );
        if let Some(server) = &self.server {
            out.push_str(&server.line("message"));
        }
        out.push_str(&client_line(self.client_cpu_percent, self.steal_percent));
        out
    }
}

/// The result of `bench idle`.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    /// Always `"idle"`.
    pub mode: &'static str,
    /// The server benchmarked.
    pub target: String,
    /// Connections asked for.
    pub requested: usize,
    /// Connections that opened and answered a first echo.
    pub established: usize,
    /// Connections still answering at the end of the hold.
    pub alive_after_hold: usize,
    /// Connections that failed to open, answer, or stay.
    pub errors: u64,
    /// Seconds it took to open and check every connection.
    pub setup_seconds: f64,
    /// Seconds the connections were held idle.
    pub hold_seconds: f64,
    /// Growth of the machine's listen-queue overflow counter during setup.
    pub listen_overflows: Option<u64>,
    /// Server memory per established connection, bytes (with `--pid`).
    pub server_bytes_per_connection: Option<f64>,
    /// The server's cost, with `--pid`.
    pub server: Option<ServerCost>,
}

impl IdleReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench idle {}: {} connections held {:.1} s",
            self.target, self.requested, self.hold_seconds
        );
        let _ = writeln!(
            out,
            "{:>11} {:>11} {:>7} {:>8} {:>10} {:>16}",
            "established", "alive", "errors", "setup s", "overflows", "server B/conn"
        );
        let _ = writeln!(
            out,
            "{:>11} {:>11} {:>7} {:>8.2} {:>10} {:>16}",
            self.established,
            self.alive_after_hold,
            self.errors,
            self.setup_seconds,
            self.listen_overflows
                .map_or_else(|| "n/a".into(), |n| n.to_string()),
            self.server_bytes_per_connection
                .map_or_else(|| "n/a".into(), |b| format!("{b:.0}")),
        );
        out
    }
}

/// A rate with thousands separators: `212,345`.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Microseconds as a short human duration: `87µs`, `1.25ms`, `2.1s`.
pub(crate) fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.1}s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(thousands(212_345.4), "212,345");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(micros(87), "87µs");
        assert_eq!(micros(1_250), "1.25ms");
        assert_eq!(micros(2_100_000), "2.1s");
    }

    #[test]
    fn server_memory_keeps_start_end_and_peak() {
        let mut memory = ServerMemory::starting_at(1000);
        for rss in [1200, 1500, 1100] {
            memory.record(rss);
        }
        assert_eq!(
            memory,
            ServerMemory {
                rss_kib_start: 1000,
                rss_kib_end: 1100,
                rss_kib_peak: 1500,
                samples: 4
            }
        );
        assert_eq!(
            memory.line(),
            "server memory: RSS 1,000 KiB at the start, 1,100 KiB at the end, peak 1,500 KiB (4 samples)\n"
        );
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000 {
            histogram.record(us).unwrap();
        }
        let latency = Latency::of(&histogram);
        assert_eq!((latency.p50_us, latency.max_us), (500, 1000));
        assert!(latency.p99_us >= 989 && latency.p99_us <= 991);
    }
}
