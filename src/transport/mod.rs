//! The edges of the chat hub: turning bytes from a kind of client into hub
//! requests, and hub events into bytes. [`line`] serves raw TCP clients
//! ([`framing`] splits their input into lines), [`ws`] WebSocket clients,
//! [`http`] short-lived HTTP requests (with [`prometheus`] for `/metrics`,
//! their posts rate-limited per address by [`address_rate`]) and [`diary`]
//! the live diary of them all; [`live`] holds the settings they read, which
//! SIGHUP replaces.

pub mod address_rate;
pub mod connection;
pub mod diary;
pub mod framing;
pub mod http;
pub mod line;
pub mod live;
pub mod prometheus;
pub mod ws;

use metrics::Counter;

/// A transport's per-message counters in `/metrics`, looked up once when the
/// server starts: `metrics::counter!` hashes its name and labels into the
/// registry on every call, and these two are counted for every write.
#[derive(Clone, Debug)]
pub struct Counters {
    /// Requests received (`switchboard_requests_total`).
    pub requests: Counter,
    /// Events written out (`switchboard_events_sent_total`).
    pub events_sent: Counter,
}

impl Counters {
    /// The counters labelled with `transport` (`tcp` or `ws`).
    pub fn of(transport: &'static str) -> Self {
        Self {
            requests: metrics::counter!("switchboard_requests_total", "transport" => transport),
            events_sent: metrics::counter!("switchboard_events_sent_total", "transport" => transport),
        }
    }
}
