//! `switchboard bench`: load generators that work against any server of the
//! kind, so switchboard and its peers are measured side by side.
//!
//! [`echo`] drives request/reply load, [`idle`] holds many quiet connections,
//! [`chat`] measures fan-out through a chat hub;
//! [`dialer`] opens connections fast, [`procfs`] reads the server's CPU and
//! memory, [`report`] and [`plot`] present the results.

pub mod chat;
pub mod dialer;
pub mod echo;
pub mod idle;
pub mod plot;
pub mod procfs;
pub mod progress;
pub mod report;

use hdrhistogram::Histogram;

use echo::Window;
use procfs::ProcessSample;
use report::ServerCost;

/// The slowest latency recorded, in microseconds; anything slower is clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram: 1 µs to 60 s at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Samples this process's and the server's CPU at the window's start and end:
/// the client's CPU seconds and the server's cost (with `server_pid`).
pub async fn measure_window(window: Window, server_pid: Option<u32>) -> (f64, Option<ServerCost>) {
    let pid = server_pid.map(|pid| pid.to_string());
    let sample = || {
        (
            ProcessSample::take("self"),
            pid.as_deref().and_then(ProcessSample::take),
        )
    };
    tokio::time::sleep_until(window.start).await;
    let (client_before, server_before) = sample();
    tokio::time::sleep_until(window.end).await;
    let (client_after, server_after) = sample();
    let client_cpu = client_before
        .zip(client_after)
        .map_or(0.0, |(before, after)| after.cpu_seconds_since(&before));
    (
        client_cpu,
        ServerCost::between(server_pid, server_before, server_after),
    )
}
