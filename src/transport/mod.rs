//! The edges of the chat hub: turning bytes from a kind of client into hub
//! requests, and hub events into bytes. [`line`] serves raw TCP clients
//! ([`framing`] splits their input into lines), [`ws`] WebSocket clients and
//! [`http`] short-lived HTTP requests.

pub mod framing;
pub mod http;
pub mod line;
pub mod ws;

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Whether a connection's idle timer fired after a real silence of `timeout`.
/// The timer is not moved on every bit of traffic (that would cost a timer
/// update per message); when it fires early, it is moved to
/// `last_traffic + timeout` and this says no.
fn silent_for(timer: Pin<&mut Sleep>, last_traffic: Instant, timeout: Duration) -> bool {
    let quiet_until = last_traffic + timeout;
    if Instant::now() < quiet_until {
        timer.reset(quiet_until);
        return false;
    }
    true
}
