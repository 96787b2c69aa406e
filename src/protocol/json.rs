//! The JSON protocol (docs/PROTOCOL.md 5.2), spoken over WebSocket and by line clients
//! after `/json`: one object per message. Parsing turns an object into a
//! request or into the `error` to send back; encoding writes events.

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::hub::event::{ErrorCode, Event, Reference};
use crate::hub::session::{Command, Request};
use crate::model::{ChatMessage, DirectMessage};

/// Parses one JSON request.
///
/// # Errors
/// The `error` event to send back (malformed JSON, unknown `type`, a missing
/// or mistyped field), carrying the request's `ref` when it had one.
pub fn parse(text: &str) -> Result<Request, Event> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Event::error(ErrorCode::BadJson, format!("not valid JSON: {e}"), None))?;
    let Value::Object(mut fields) = value else {
        return Err(Event::error(
            ErrorCode::BadJson,
            "expected a JSON object",
            None,
        ));
    };
    let reference = fields.remove("ref");
    let fields = Fields {
        map: &fields,
        reference: &reference,
    };
    let command = match fields.string("type")?.as_str() {
        "nick" => Command::Nick(fields.string("nick")?),
        "join" => Command::Join {
            room: fields.string("room")?,
            since: fields.optional_number("since")?,
        },
        "part" => Command::Part(Some(fields.string("room")?)),
        "say" => Command::Say {
            room: Some(fields.string("room")?),
            text: fields.string("text")?,
        },
        "dm" => Command::Dm {
            to: fields.string("to")?,
            text: fields.string("text")?,
        },
        "history" => Command::History {
            room: Some(fields.string("room")?),
            since: fields.optional_number("since")?,
            limit: fields
                .optional_number("limit")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        },
        "who" => Command::Who(Some(fields.string("room")?)),
        other => {
            return Err(Event::error(
                ErrorCode::UnknownType,
                format!("unknown type '{other}'"),
                reference,
            ));
        }
    };
    Ok(Request { command, reference })
}

/// A request object's fields, with its `ref` for the errors.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    reference: &'a Reference,
}

impl Fields<'_> {
    /// A required string field.
    fn string(&self, name: &str) -> Result<String, Event> {
        match self.map.get(name) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(self.error(
                ErrorCode::BadField,
                format!("field '{name}' must be a string"),
            )),
            None => Err(self.error(ErrorCode::MissingField, format!("missing field '{name}'"))),
        }
    }

    /// An optional non-negative integer field.
    fn optional_number(&self, name: &str) -> Result<Option<u64>, Event> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                self.error(
                    ErrorCode::BadField,
                    format!("field '{name}' must be a non-negative integer"),
                )
            }),
        }
    }

    /// An error carrying the request's `ref`.
    fn error(&self, code: ErrorCode, message: String) -> Event {
        Event::error(code, message, self.reference.clone())
    }
}

/// Writes `event` as one JSON object (no trailing newline).
pub fn encode(event: &Event) -> Bytes {
    let value = match event {
        Event::Welcome { nick, fd } => json!({"type": "welcome", "nick": nick.as_str(), "fd": fd}),
        Event::Message(m) => message(m),
        Event::Dm(m) | Event::DmSent(m) => direct(m),
        Event::Ack {
            reference,
            id,
            nick,
        } => {
            let mut ack = json!({"type": "ack"});
            if let Some(id) = id {
                ack["id"] = json!(id);
            }
            if let Some(nick) = nick {
                ack["nick"] = json!(nick.as_str());
            }
            with_reference(ack, reference)
        }
        Event::Joined {
            room,
            nick,
            reference,
        } => with_reference(
            json!({"type": "joined", "room": room.as_str(), "nick": nick.as_str()}),
            reference,
        ),
        Event::Parted {
            room,
            nick,
            reference,
        } => with_reference(
            json!({"type": "parted", "room": room.as_str(), "nick": nick.as_str()}),
            reference,
        ),
        Event::NickChanged { old, new } => {
            json!({"type": "nick", "from": old.as_str(), "nick": new.as_str()})
        }
        Event::History {
            room,
            messages,
            reference,
        } => with_reference(
            json!({
                "type": "history",
                "room": room.as_str(),
                "messages": messages.iter().map(|m| message(m)).collect::<Vec<_>>(),
            }),
            reference,
        ),
        Event::Who {
            room,
            nicks,
            reference,
        } => with_reference(
            json!({
                "type": "who",
                "room": room.as_str(),
                "nicks": nicks.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            }),
            reference,
        ),
        Event::Rooms(rooms) => json!({
            "type": "rooms",
            "rooms": rooms
                .iter()
                .map(|(room, members)| json!({"room": room.as_str(), "members": members}))
                .collect::<Vec<_>>(),
        }),
        Event::Notice(text) => json!({"type": "notice", "text": text}),
        Event::Error {
            code,
            message,
            reference,
        } => with_reference(
            json!({"type": "error", "code": code.as_str(), "message": message}),
            reference,
        ),
    };
    Bytes::from(value.to_string())
}

/// A room message as JSON.
pub fn message(m: &ChatMessage) -> Value {
    json!({
        "type": "message",
        "room": m.room.as_str(),
        "id": m.id,
        "from": m.from.as_str(),
        "text": &*m.text,
        "ts": timestamp(m.ts),
    })
}

/// A direct message as JSON.
fn direct(m: &DirectMessage) -> Value {
    json!({
        "type": "dm",
        "id": m.id,
        "from": m.from.as_str(),
        "to": m.to.as_str(),
        "text": &*m.text,
        "ts": timestamp(m.ts),
    })
}

/// `value` with `"ref"` added when the request carried one.
fn with_reference(mut value: Value, reference: &Reference) -> Value {
    if let Some(reference) = reference {
        value["ref"] = reference.clone();
    }
    value
}

/// An RFC 3339 timestamp with milliseconds, in UTC.
pub fn timestamp(ts: SystemTime) -> String {
    humantime::format_rfc3339_millis(ts).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::names::{Nick, RoomName};

    fn parsed(text: &str) -> Request {
        parse(text).unwrap_or_else(|e| panic!("{text} gave {e:?}"))
    }

    fn error_code(text: &str) -> (ErrorCode, Reference) {
        match parse(text) {
            Err(Event::Error {
                code, reference, ..
            }) => (code, reference),
            other => panic!("{text} gave {other:?}"),
        }
    }

    #[test]
    fn every_request_type_parses() {
        assert_eq!(
            parsed(r#"{"type":"nick","nick":"al"}"#).command,
            Command::Nick("al".into())
        );
        let join = parsed(r#"{"type":"join","room":"lobby","since":41,"ref":"j1"}"#);
        assert_eq!(
            join.command,
            Command::Join {
                room: "lobby".into(),
                since: Some(41)
            }
        );
        assert_eq!(join.reference, Some(json!("j1")));
        assert_eq!(
            parsed(r#"{"type":"say","room":"x","text":"hi"}"#).command,
            Command::Say {
                room: Some("x".into()),
                text: "hi".into()
            }
        );
        assert_eq!(
            parsed(r#"{"type":"dm","to":"bob","text":"psst"}"#).command,
            Command::Dm {
                to: "bob".into(),
                text: "psst".into()
            }
        );
        assert_eq!(
            parsed(r#"{"type":"history","room":"x","limit":5}"#).command,
            Command::History {
                room: Some("x".into()),
                since: None,
                limit: Some(5)
            }
        );
        assert_eq!(
            parsed(r#"{"type":"who","room":"x"}"#).command,
            Command::Who(Some("x".into()))
        );
        assert_eq!(
            parsed(r#"{"type":"part","room":"x"}"#).command,
            Command::Part(Some("x".into()))
        );
    }

    #[test]
    fn malformed_requests_get_the_right_error_and_keep_their_ref() {
        assert_eq!(error_code("{nope").0, ErrorCode::BadJson);
        assert_eq!(error_code("[1,2]").0, ErrorCode::BadJson);
        assert_eq!(
            error_code(r#"{"type":"dance","ref":7}"#),
            (ErrorCode::UnknownType, Some(json!(7)))
        );
        assert_eq!(
            error_code(r#"{"type":"say","room":"x","ref":[1]}"#),
            (ErrorCode::MissingField, Some(json!([1])))
        );
        assert_eq!(error_code(r#"{"room":"x"}"#).0, ErrorCode::MissingField);
        assert_eq!(
            error_code(r#"{"type":"join","room":5}"#).0,
            ErrorCode::BadField
        );
        assert_eq!(
            error_code(r#"{"type":"join","room":"x","since":-1}"#).0,
            ErrorCode::BadField
        );
    }

    #[test]
    fn events_encode_as_the_spec_says() {
        let message = Arc::new(ChatMessage {
            room: RoomName::parse("lobby").unwrap(),
            id: 42,
            from: Nick::parse("alice").unwrap(),
            text: "hi".into(),
            ts: SystemTime::UNIX_EPOCH,
        });
        let value: Value = serde_json::from_slice(&encode(&Event::Message(message))).unwrap();
        assert_eq!(
            value,
            json!({"type":"message","room":"lobby","id":42,"from":"alice","text":"hi","ts":"1970-01-01T00:00:00.000Z"})
        );
        let ack = Event::Ack {
            reference: Some(json!("r")),
            id: Some(42),
            nick: None,
        };
        let value: Value = serde_json::from_slice(&encode(&ack)).unwrap();
        assert_eq!(value, json!({"type":"ack","ref":"r","id":42}));
        let error = Event::error(ErrorCode::NotInRoom, "you are not in #x", Some(json!(1)));
        let value: Value = serde_json::from_slice(&encode(&error)).unwrap();
        assert_eq!(
            value,
            json!({"type":"error","code":"not_in_room","message":"you are not in #x","ref":1})
        );
    }
}
