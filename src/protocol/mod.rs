//! The chat hub's wire formats: the [`line`] protocol of `nc` users and the
//! [`json`] protocol of WebSocket clients (and of line clients after `/json`).
//! Pure functions from text to requests and from events to bytes: no I/O.

#[cfg(test)]
mod arbitrary;
pub mod json;
pub mod line;

use bytes::Bytes;

use crate::hub::event::{Event, Format, Outgoing};
use crate::hub::session::Request;

/// What one line or text message from a client asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A request for the hub.
    Request(Request),
    /// `/json`: switch this connection to the JSON protocol.
    SwitchToJson,
    /// `/quit`: say goodbye and close.
    Quit,
    /// `/help`: list the commands.
    Help,
    /// An empty line: nothing to do.
    Nothing,
    /// `/auth TOKEN`: the server's token (`--token`), before anything else.
    Auth(String),
}

/// Parses one line (without its newline) or text message in `format`.
///
/// # Errors
/// The error event to send back.
pub fn parse(format: Format, text: &str) -> Result<Input, Event> {
    match format {
        Format::Line => line::parse(text),
        Format::Json if text.trim().is_empty() => Ok(Input::Nothing),
        Format::Json => json::parse(text).map(Input::Request),
    }
}

/// The bytes of `outgoing` in `format`, encoded once and shared by every
/// connection that receives it.
pub fn encoded(outgoing: &Outgoing, format: Format) -> Bytes {
    match format {
        Format::Line => outgoing.encoded(format, line::encode),
        Format::Json => outgoing.encoded(format, json::encode),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text in either format: no panic; a blank JSON line is nothing
        /// to do (as an empty line is in the line protocol).
        #[test]
        fn any_text_in_either_format_is_an_input_or_an_error(text in arbitrary::text()) {
            let _ = parse(Format::Line, &text);
            let json = parse(Format::Json, &text);
            if text.trim().is_empty() {
                prop_assert_eq!(json, Ok(Input::Nothing));
            }
        }
    }
}
