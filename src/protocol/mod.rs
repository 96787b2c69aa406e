//! The chat hub's wire formats: the [`line`] protocol of `nc` users and the
//! [`json`] protocol of WebSocket clients (and of line clients after `/json`).
//! Pure functions from text to requests and from events to bytes: no I/O.

pub mod json;
pub mod line;

use bytes::Bytes;

use crate::hub::event::{Format, Outgoing};

/// The bytes of `outgoing` in `format`, encoded once and shared by every
/// connection that receives it.
pub fn encoded(outgoing: &Outgoing, format: Format) -> Bytes {
    match format {
        Format::Line => outgoing.encoded(format, line::encode),
        Format::Json => outgoing.encoded(format, json::encode),
    }
}
