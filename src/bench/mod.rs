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

/// The slowest latency recorded, in microseconds; anything slower is clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram: 1 µs to 60 s at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}
