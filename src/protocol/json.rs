//! The JSON protocol (docs/PROTOCOL.md 5.2), spoken over WebSocket and by line clients
//! after `/json`: one object per message. Parsing turns an object into a
//! request or into the `error` to send back; encoding writes events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// An RFC 3339 timestamp with milliseconds, in UTC; a time before 1970 or
/// after 9999 (a clock set wrong, a database written by another tool) is
/// written as the nearest one that RFC 3339 and `humantime` can write.
pub fn timestamp(ts: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_millis(LAST_RFC3339_MILLIS);
    humantime::format_rfc3339_millis(ts.clamp(UNIX_EPOCH, last)).to_string()
}

/// 9999-12-31T23:59:59.999Z in milliseconds since 1970.
const LAST_RFC3339_MILLIS: u64 = 253_402_300_799_999;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::model::names::{Nick, RoomName};
    use crate::protocol::arbitrary;

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

    #[test]
    fn a_float_ref_comes_back_as_the_same_number() {
        // Found by proptest: without serde_json's float_roundtrip, this came
        // back as 4.4782083050943984e-166, a different f64.
        let request = parsed(r#"{"type":"nick","nick":"al","ref":4.478208305094398e-166}"#);
        let ack = Event::Ack {
            reference: request.reference,
            id: None,
            nick: None,
        };
        assert_eq!(
            &encode(&ack)[..],
            br#"{"type":"ack","ref":4.478208305094398e-166}"#
        );
    }

    #[test]
    fn times_out_of_rfc3339_range_are_written_as_the_nearest() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(timestamp(before), "1970-01-01T00:00:00.000Z");
        let after = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(timestamp(after), "9999-12-31T23:59:59.999Z");
    }

    /// `request` as the JSON object a client sends: its fields in `order`
    /// (indexes into them, extra ones ignored), an absent optional number
    /// written as `null` or left out as `nulls` says, and `extra` fields.
    fn client_json(
        request: &Request,
        order: &[usize],
        nulls: bool,
        extra: &Map<String, Value>,
    ) -> String {
        let optional = |name: &str, number: Option<u64>| {
            (number.is_some() || nulls).then(|| (name.to_string(), json!(number)))
        };
        let mut fields: Vec<(String, Value)> = match &request.command {
            Command::Nick(nick) => {
                vec![("type".into(), json!("nick")), ("nick".into(), json!(nick))]
            }
            Command::Join { room, since } => [
                Some(("type".into(), json!("join"))),
                Some(("room".into(), json!(room))),
                optional("since", *since),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Command::Part(room) => {
                vec![("type".into(), json!("part")), ("room".into(), json!(room))]
            }
            Command::Say { room, text } => vec![
                ("type".into(), json!("say")),
                ("room".into(), json!(room)),
                ("text".into(), json!(text)),
            ],
            Command::Dm { to, text } => vec![
                ("type".into(), json!("dm")),
                ("to".into(), json!(to)),
                ("text".into(), json!(text)),
            ],
            Command::History { room, since, limit } => [
                Some(("type".into(), json!("history"))),
                Some(("room".into(), json!(room))),
                optional("since", *since),
                optional("limit", limit.map(|n| n as u64)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Command::Who(room) => vec![("type".into(), json!("who")), ("room".into(), json!(room))],
            Command::Rooms => unreachable!("no JSON request lists the rooms"),
        };
        if let Some(reference) = &request.reference {
            fields.push(("ref".into(), reference.clone()));
        }
        let mut object = Map::new();
        for at in order {
            if !fields.is_empty() {
                let (name, value) = fields.remove(at % fields.len());
                object.insert(name, value);
            }
        }
        for (name, value) in fields.into_iter().chain(extra.clone()) {
            object.entry(name).or_insert(value);
        }
        Value::Object(object).to_string()
    }

    /// Every request the JSON protocol has, with any strings and numbers.
    fn request() -> impl Strategy<Value = Request> {
        let text = arbitrary::text;
        let since = || proptest::option::of(any::<u64>());
        let command = prop_oneof![
            text().prop_map(Command::Nick),
            (text(), since()).prop_map(|(room, since)| Command::Join { room, since }),
            text().prop_map(|room| Command::Part(Some(room))),
            (text(), text()).prop_map(|(room, text)| Command::Say {
                room: Some(room),
                text
            }),
            (text(), text()).prop_map(|(to, text)| Command::Dm { to, text }),
            (text(), since(), proptest::option::of(any::<usize>())).prop_map(
                |(room, since, limit)| Command::History {
                    room: Some(room),
                    since,
                    limit
                }
            ),
            text().prop_map(|room| Command::Who(Some(room))),
        ];
        (command, arbitrary::reference())
            .prop_map(|(command, reference)| Request { command, reference })
    }

    /// Fields a request object may carry, with values of any type.
    fn field_name() -> impl Strategy<Value = String> {
        let known = [
            "type", "nick", "room", "since", "text", "to", "limit", "ref",
        ];
        prop_oneof![
            select(known.to_vec()).prop_map(String::from),
            arbitrary::text()
        ]
    }

    /// A request type, a known one or not.
    fn type_name() -> impl Strategy<Value = Value> {
        let known = [
            "nick", "join", "part", "say", "dm", "history", "who", "rooms",
        ];
        prop_oneof![
            select(known.to_vec()).prop_map(Value::from),
            arbitrary::json_value(),
        ]
    }

    /// What `text` parsed as, or the code of the error and its `ref`.
    fn outcome(text: &str) -> Result<Request, (ErrorCode, Reference)> {
        parse(text).map_err(|error| match error {
            Event::Error {
                code, reference, ..
            } => (code, reference),
            other => panic!("{text:?} gave {other:?}"),
        })
    }

    proptest! {
        /// Any text: no panic, and only the errors of a malformed request.
        #[test]
        fn any_text_is_a_request_or_a_request_error(text in arbitrary::text()) {
            if let Err((code, _)) = outcome(&text) {
                let request_errors = [
                    ErrorCode::BadJson,
                    ErrorCode::UnknownType,
                    ErrorCode::MissingField,
                    ErrorCode::BadField,
                ];
                prop_assert!(request_errors.contains(&code), "{:?}", code);
            }
        }

        /// Any object of request fields with values of any type: a request
        /// or the error that names the problem, carrying the object's `ref`.
        #[test]
        fn any_object_is_a_request_or_an_error_with_its_ref(
            kind in type_name(),
            fields in proptest::collection::vec((field_name(), arbitrary::json_value()), 0..6),
        ) {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.entry("type").or_insert(kind);
            let text = Value::Object(object.clone()).to_string();
            match outcome(&text) {
                Ok(request) => prop_assert_eq!(request.reference, object.get("ref").cloned()),
                Err((code, reference)) => {
                    prop_assert!(
                        matches!(
                            code,
                            ErrorCode::UnknownType | ErrorCode::MissingField | ErrorCode::BadField
                        ),
                        "{:?}",
                        code
                    );
                    prop_assert_eq!(reference, object.get("ref").cloned());
                }
            }
        }

        /// A request written as a client writes it, fields in any order,
        /// with `null` for an absent number or not, unknown fields added:
        /// parsing gives the same request back.
        #[test]
        fn requests_written_by_a_client_parse_back(
            request in request(),
            order in proptest::collection::vec(any::<usize>(), 0..6),
            nulls in any::<bool>(),
            extra in proptest::collection::vec(("x-[a-z]{1,8}", arbitrary::json_value()), 0..3),
        ) {
            let extra: Map<String, Value> = extra.into_iter().collect();
            let text = client_json(&request, &order, nulls, &extra);
            prop_assert_eq!(outcome(&text), Ok(request), "{}", text);
        }

        /// Any event: one line of one JSON object whose `type` is a string,
        /// carrying the request's `ref` exactly when it has one (any value,
        /// back as sent), and a message's room, id, sender, text and time
        /// (to the millisecond, within what RFC 3339 can write) as they were.
        #[test]
        fn events_encode_as_one_object_that_reads_back(event in arbitrary::event()) {
            let bytes = encode(&event);
            prop_assert!(!bytes.contains(&b'\n'), "{:?}", bytes);
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| TestCaseError::fail(format!("{e}: {bytes:?}")))?;
            prop_assert!(value["type"].is_string(), "{}", value);
            let reference = match &event {
                Event::Ack { reference, .. }
                | Event::Joined { reference, .. }
                | Event::Parted { reference, .. }
                | Event::History { reference, .. }
                | Event::Who { reference, .. }
                | Event::Error { reference, .. } => reference.clone(),
                _ => None,
            };
            prop_assert_eq!(value.get("ref"), reference.as_ref());
            let messages = match &event {
                Event::Message(m) => vec![(&value, m)],
                Event::History { messages, .. } => value["messages"]
                    .as_array()
                    .map(|values| values.iter().zip(messages).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if let Event::History { messages: sent, .. } = &event {
                prop_assert_eq!(messages.len(), sent.len());
            }
            for (value, m) in messages {
                prop_assert_eq!(&value["room"], m.room.as_str());
                prop_assert_eq!(&value["id"], &json!(m.id));
                prop_assert_eq!(&value["from"], m.from.as_str());
                prop_assert_eq!(&value["text"], &*m.text);
                prop_assert_eq!(value["ts"].as_str().map(read_time), Some(to_millis(m.ts)));
            }
            if let Event::Dm(m) | Event::DmSent(m) = &event {
                prop_assert_eq!(&value["from"], m.from.as_str());
                prop_assert_eq!(&value["to"], m.to.as_str());
                prop_assert_eq!(&value["text"], &*m.text);
                prop_assert_eq!(value["ts"].as_str().map(read_time), Some(to_millis(m.ts)));
            }
        }
    }

    /// A timestamp as a client reads it.
    fn read_time(text: &str) -> Option<SystemTime> {
        humantime::parse_rfc3339(text).ok()
    }

    /// `ts` as a client can know it: to the millisecond, within RFC 3339.
    fn to_millis(ts: SystemTime) -> Option<SystemTime> {
        let millis = ts.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let millis = u64::try_from(millis)
            .unwrap_or(u64::MAX)
            .min(LAST_RFC3339_MILLIS);
        Some(UNIX_EPOCH + Duration::from_millis(millis))
    }
}
