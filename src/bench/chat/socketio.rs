//! The few Engine.IO v4 / Socket.IO v5 packets `bench chat` speaks to a
//! Socket.IO server over WebSocket, read from bytes and written as text; no
//! I/O here.
//!
//! Over WebSocket each text message is one Engine.IO packet: a type digit and
//! its data. `0{…}` opens the session, `1` closes it, the server's ping `2` is
//! answered with a pong `3`, and `4…` carries a Socket.IO packet: `40` asks to
//! connect to the main namespace (and `40{"sid":…}` says it did), `41` is a
//! disconnect, `44{…}` a refused connect, and `42["name",args…]` an event
//! (with an optional `/namespace,` and ack id before the JSON array).

use serde_json::Value;

/// Where a Socket.IO server answers unless configured otherwise.
pub const DEFAULT_PATH: &str = "/socket.io/";

/// The query that asks for Engine.IO v4 straight over WebSocket (no
/// long-polling first).
pub const WEBSOCKET_QUERY: &str = "EIO=4&transport=websocket";

/// Connects to the main namespace (`/`), sent once the session is open.
pub const CONNECT: &str = "40";

/// The answer to the server's ping.
pub const PONG: &str = "3";

/// An Engine.IO packet, as far as the benchmark tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{…}`: the session is open.
    Open,
    /// `1`: the server closes the session.
    Close,
    /// `2`: the server's ping, to be answered with [`PONG`].
    Ping,
    /// `40…`: connected to the namespace.
    Connected,
    /// `41…`: disconnected from the namespace.
    Disconnected,
    /// `44{…}`: the namespace refused the connection; the server's JSON reason.
    ConnectError(&'a [u8]),
    /// `42[…]`: an event: its name as written in the JSON string (escapes
    /// left as they are) and the JSON of its arguments after the name
    /// (empty when it has none).
    Event {
        /// The event's name.
        name: &'a [u8],
        /// The arguments, comma-separated JSON values.
        args: &'a [u8],
    },
    /// A well-formed packet the benchmark does not act on (pong, noop,
    /// acknowledgement, binary event, …).
    Other,
}

/// Reads one Engine.IO packet (one WebSocket text message); `None` when it
/// is not a packet of the protocol.
pub fn parse(packet: &[u8]) -> Option<Packet<'_>> {
    let (&kind, data) = packet.split_first()?;
    match kind {
        b'0' => data.starts_with(b"{").then_some(Packet::Open),
        b'1' => Some(Packet::Close),
        b'2' => Some(Packet::Ping),
        b'3' | b'5' | b'6' => Some(Packet::Other),
        b'4' => parse_socket_io(data),
        _ => None,
    }
}

/// Reads the Socket.IO packet inside an Engine.IO message (`4…`).
fn parse_socket_io(packet: &[u8]) -> Option<Packet<'_>> {
    let (&kind, rest) = packet.split_first()?;
    let data = after_namespace(rest)?;
    match kind {
        b'0' => Some(Packet::Connected),
        b'1' => Some(Packet::Disconnected),
        b'2' => {
            let ack_id_len = data.iter().take_while(|b| b.is_ascii_digit()).count();
            parse_event(&data[ack_id_len..])
        }
        b'4' => Some(Packet::ConnectError(data)),
        b'3' | b'5' | b'6' => Some(Packet::Other),
        _ => None,
    }
}

/// What follows a packet's namespace: `/chat,…` names one; the main
/// namespace `/` is written as nothing.
fn after_namespace(data: &[u8]) -> Option<&[u8]> {
    if data.first() == Some(&b'/') {
        let comma = memchr::memchr(b',', data)?;
        Some(&data[comma + 1..])
    } else {
        Some(data)
    }
}

/// Splits an event's JSON array `["name",args…]` into its name and arguments.
fn parse_event(array: &[u8]) -> Option<Packet<'_>> {
    let inner = array.strip_prefix(b"[\"")?.strip_suffix(b"]")?;
    let name_len = string_length(inner)?;
    let (name, after) = (&inner[..name_len], &inner[name_len + 1..]);
    let args = match after.split_first() {
        None => after,
        Some((b',', args)) if !args.is_empty() => args,
        Some(_) => return None,
    };
    Some(Packet::Event { name, args })
}

/// The length of a JSON string's contents up to its closing quote, which
/// must be there; escaped quotes inside are skipped.
fn string_length(string: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        match *string.get(at)? {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The Engine.IO message that emits event `name` with one argument.
pub fn event(name: &str, arg: &Value) -> String {
    format!("42[{},{arg}]", Value::from(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn engine_io_packets_are_told_apart() {
        let open = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(parse(open), Some(Packet::Open));
        assert_eq!(parse(b"0"), None, "an open packet carries its handshake");
        assert_eq!(parse(b"1"), Some(Packet::Close));
        assert_eq!(parse(b"2"), Some(Packet::Ping));
        assert_eq!(parse(b"3"), Some(Packet::Other));
        assert_eq!(parse(b"6"), Some(Packet::Other));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"9"), None);
        assert_eq!(parse(b"hello"), None);
    }

    #[test]
    fn socket_io_packets_are_read_inside_messages() {
        assert_eq!(
            parse(br#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            Some(Packet::Connected)
        );
        assert_eq!(parse(b"40"), Some(Packet::Connected));
        assert_eq!(parse(b"41"), Some(Packet::Disconnected));
        assert_eq!(parse(b"41/admin,"), Some(Packet::Disconnected));
        assert_eq!(
            parse(br#"44{"message":"Not authorized"}"#),
            Some(Packet::ConnectError(br#"{"message":"Not authorized"}"#))
        );
        assert_eq!(parse(b"43"), Some(Packet::Other), "an acknowledgement");
        assert_eq!(parse(b"4"), None);
        assert_eq!(parse(b"49"), None);
        assert_eq!(parse(b"42/admin"), None, "a namespace ends with a comma");
    }

    #[test]
    fn events_give_their_name_and_arguments() {
        assert_eq!(
            parse(br#"42["message",{"room":"bench","from":"x","text":"p0:1:2"}]"#),
            Some(Packet::Event {
                name: b"message",
                args: br#"{"room":"bench","from":"x","text":"p0:1:2"}"#
            })
        );
        assert_eq!(
            parse(br#"42["joined","bench"]"#),
            Some(Packet::Event {
                name: b"joined",
                args: br#""bench""#
            })
        );
        assert_eq!(
            parse(br#"42["tick"]"#),
            Some(Packet::Event {
                name: b"tick",
                args: b""
            })
        );
        assert_eq!(
            parse(br#"4212["hi",1,2]"#),
            Some(Packet::Event {
                name: b"hi",
                args: b"1,2"
            }),
            "with an ack id"
        );
        assert_eq!(
            parse(br#"42/chat,7["hi",true]"#),
            Some(Packet::Event {
                name: b"hi",
                args: b"true"
            }),
            "in a namespace"
        );
        assert_eq!(
            parse(br#"42["say \"hi\"",1]"#),
            Some(Packet::Event {
                name: br#"say \"hi\""#,
                args: b"1"
            }),
            "escaped quotes stay inside the name"
        );
        for broken in [
            &br#"42"#[..],
            br#"42[]"#,
            br#"42["message""#,
            br#"42["message",]"#,
            br#"42["message"x]"#,
            br#"42["unterminated]"#,
            br#"42["ends in escape\"#,
            br#"42{"type":"message"}"#,
        ] {
            assert_eq!(parse(broken), None, "{:?}", String::from_utf8_lossy(broken));
        }
    }

    #[test]
    fn events_are_written_as_engine_io_messages() {
        assert_eq!(event("join", &json!("bench")), r#"42["join","bench"]"#);
        let say = event("say", &json!({"room": "bench", "text": "p0:1:2"}));
        assert_eq!(say, r#"42["say",{"room":"bench","text":"p0:1:2"}]"#);
        assert_eq!(
            parse(say.as_bytes()),
            Some(Packet::Event {
                name: b"say",
                args: br#"{"room":"bench","text":"p0:1:2"}"#
            })
        );
        assert_eq!(
            event("a\"b", &json!(null)),
            r#"42["a\"b",null]"#,
            "names are JSON strings"
        );
    }
}
