//! What `/proc` says about a process (CPU time, resident memory) and the
//! machine (listen-queue overflows, CPU time stolen by the hypervisor), for
//! `bench`. Parsers are separate
//! from the file reads so they are tested on text.

use std::fs;

/// A process's CPU time and memory at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessSample {
    /// CPU time so far, in clock ticks.
    pub cpu: CpuTicks,
    /// Resident memory, in KiB.
    pub rss_kib: u64,
}

/// A process's CPU time, split where it was spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// In the program itself (`utime`).
    pub user: u64,
    /// In the kernel on its behalf (`stime`): system calls, and for a
    /// loopback socket the receiving side's network stack too.
    pub system: u64,
}

impl CpuTicks {
    /// User and system time together.
    pub fn total(&self) -> u64 {
        self.user + self.system
    }
}

impl ProcessSample {
    /// Samples process `pid` (`"self"` works too); `None` if it is gone.
    pub fn take(pid: &str) -> Option<Self> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Self {
            cpu: parse_cpu_ticks(&stat)?,
            rss_kib: parse_rss_kib(&status)?,
        })
    }

    /// CPU seconds (user and system) spent between `earlier` and this sample.
    pub fn cpu_seconds_since(&self, earlier: &Self) -> f64 {
        self.cpu.total().saturating_sub(earlier.cpu.total()) as f64 / ticks_per_second()
    }

    /// The part of [`Self::cpu_seconds_since`] spent in the kernel.
    pub fn system_seconds_since(&self, earlier: &Self) -> f64 {
        self.cpu.system.saturating_sub(earlier.cpu.system) as f64 / ticks_per_second()
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// `utime` and `stime` from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<CpuTicks> {
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name come state (field 3) … utime is field 14, stime field 15.
    let user = fields.nth(11)?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPU time process `pid` has run so far, in nanoseconds: the sum over
/// its threads of `/proc/PID/task/TID/schedstat`, far finer than the clock
/// ticks of `/proc/PID/stat`. A thread that has ended takes its time with it,
/// so this suits a process whose threads live as long as it does (Redis's);
/// `None` if the process is gone.
pub fn run_time_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .flatten()
            .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|text| parse_schedstat_ns(&text))
            .sum(),
    )
}

/// The time on a CPU, in nanoseconds, from the text of a `schedstat` file
/// (`run-ns wait-ns timeslices`).
pub fn parse_schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The machine's CPU time at one moment, from the `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineSample {
    /// All CPU time of all CPUs (user to steal), in clock ticks.
    pub total_ticks: u64,
    /// Time a virtual CPU wanted to run but the hypervisor ran something
    /// else, in clock ticks.
    pub steal_ticks: u64,
}

impl MachineSample {
    /// Samples the machine; `None` where `/proc/stat` cannot be read.
    pub fn take() -> Option<Self> {
        parse_machine_ticks(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// The share of the machine's CPU time stolen between `earlier` and this
    /// sample, in percent: on a virtual machine, the time nobody here could
    /// use, which shows up as latency.
    pub fn steal_percent_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total_ticks.checked_sub(earlier.total_ticks)?;
        let steal = self.steal_ticks.checked_sub(earlier.steal_ticks)?;
        (total > 0).then(|| steal as f64 * 100.0 / total as f64)
    }
}

/// Total and steal ticks from the text of `/proc/stat` (its first line,
/// `cpu  user nice system idle iowait irq softirq steal …`).
pub fn parse_machine_ticks(stat: &str) -> Option<MachineSample> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(MachineSample {
        total_ticks: ticks.iter().sum(),
        steal_ticks: *ticks.get(7)?,
    })
}

/// The machine's count of connections dropped because a listen queue was full.
pub fn listen_overflows() -> Option<u64> {
    let netstat = fs::read_to_string("/proc/net/netstat").ok()?;
    parse_netstat(&netstat, "TcpExt", "ListenOverflows")
}

/// One counter from `/proc/net/netstat`, which pairs a header line of names
/// with a line of values under the same prefix.
pub fn parse_netstat(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|line| line.starts_with(&prefix));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    names
        .zip(values)
        .find(|(n, _)| *n == name)
        .and_then(|(_, value)| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_odd_command_names() {
        let stat = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 180 0 0 0 1234 567 0 0 20 0 3 0";
        let ticks = CpuTicks {
            user: 1234,
            system: 567,
        };
        assert_eq!(parse_cpu_ticks(stat), Some(ticks));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn run_time_is_read_in_nanoseconds() {
        assert_eq!(
            parse_schedstat_ns("176327072 740341685 533\n"),
            Some(176_327_072)
        );
        assert_eq!(parse_schedstat_ns(""), None);
        assert_eq!(parse_schedstat_ns("-1 0 0"), None);
        assert!(run_time_ns(std::process::id()).is_some_and(|ns| ns > 0));
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tswitchboard\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(parse_rss_kib(status), Some(5120));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn steal_is_a_share_of_all_cpu_time() {
        let before = "cpu  100 0 50 800 0 0 10 40 0 0\ncpu0 50 0 25 400 0 0 5 20 0 0\n";
        let after = "cpu  150 0 70 900 0 0 20 60 0 0\ncpu0 75 0 35 450 0 0 10 30 0 0\n";
        let (before, after) = (
            parse_machine_ticks(before).unwrap(),
            parse_machine_ticks(after).unwrap(),
        );
        assert_eq!(before.total_ticks, 1000);
        assert_eq!(after.steal_percent_since(&before), Some(10.0));
        assert_eq!(parse_machine_ticks("cpu  1 2 3\n"), None, "no steal field");
        assert_eq!(parse_machine_ticks("intr 5\n"), None);
    }

    #[test]
    fn netstat_counters_pair_names_with_values() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 20\n\
                    IpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(parse_netstat(text, "TcpExt", "ListenOverflows"), Some(17));
        assert_eq!(parse_netstat(text, "TcpExt", "Missing"), None);
    }
}
