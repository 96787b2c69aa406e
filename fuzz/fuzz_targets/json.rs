//! The JSON protocol (src/protocol/json.rs): any text, no panic and only the
//! errors of a malformed request, carrying its `ref`; a request parsed,
//! written back as a client writes it, parses to the same request; and its
//! `ref` and text come back unchanged in the events that carry them, each
//! one line of one JSON object.
#![no_main]

use std::sync::Arc;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use switchboard::hub::event::{ErrorCode, Event, Format};
use switchboard::hub::session::{Command, Request};
use switchboard::model::{ChatMessage, Nick, RoomName};
use switchboard::protocol::{self, Input, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = json::parse(text);
    if !text.trim().is_empty() {
        assert_eq!(
            protocol::parse(Format::Json, text),
            parsed.clone().map(Input::Request)
        );
    }
    match parsed {
        Ok(request) => {
            let again = client_json(&request);
            assert_eq!(json::parse(&again).as_ref(), Ok(&request), "{again}");
            check_events(&request);
        }
        Err(Event::Error {
            code, reference, ..
        }) => {
            assert!(
                matches!(
                    code,
                    ErrorCode::BadJson
                        | ErrorCode::UnknownType
                        | ErrorCode::MissingField
                        | ErrorCode::BadField
                ),
                "{code:?}"
            );
            if code != ErrorCode::BadJson {
                let sent: Value = serde_json::from_str(text).expect("parsed once");
                assert_eq!(reference.as_ref(), sent.get("ref"));
            }
        }
        Err(other) => panic!("{text:?} gave {other:?}"),
    }
});

/// `request` as the JSON object a client sends.
fn client_json(request: &Request) -> String {
    let mut object = match &request.command {
        Command::Nick(nick) => json!({"type": "nick", "nick": nick}),
        Command::Join { room, since } => json!({"type": "join", "room": room, "since": since}),
        Command::Part(room) => json!({"type": "part", "room": room}),
        Command::Say { room, text } => json!({"type": "say", "room": room, "text": text}),
        Command::Dm { to, text } => json!({"type": "dm", "to": to, "text": text}),
        Command::History { room, since, limit } => {
            json!({"type": "history", "room": room, "since": since, "limit": limit})
        }
        Command::Who(room) => json!({"type": "who", "room": room}),
        Command::Rooms => unreachable!("no JSON request lists the rooms"),
    };
    if let Some(reference) = &request.reference {
        object["ref"] = reference.clone();
    }
    object.to_string()
}

/// The request's `ref` in the reply it gets, and its text in a message:
/// each back exactly as sent, in one line of one JSON object.
fn check_events(request: &Request) {
    let ack = Event::Ack {
        reference: request.reference.clone(),
        id: Some(1),
        nick: None,
    };
    let reply = read(&json::encode(&ack));
    assert_eq!(reply.get("ref"), request.reference.as_ref(), "{reply}");
    if let Command::Say { text, .. } | Command::Dm { text, .. } = &request.command {
        let (Ok(from), Ok(room)) = (Nick::parse("alice"), RoomName::parse("lobby")) else {
            unreachable!("valid names");
        };
        let message = Arc::new(ChatMessage {
            room,
            id: 1,
            from,
            text: text.as_str().into(),
            ts: SystemTime::now(),
        });
        let value = read(&json::encode(&Event::Message(message)));
        assert_eq!(value["text"], json!(text));
    }
}

/// One line of one JSON object.
fn read(bytes: &[u8]) -> Value {
    assert!(!bytes.contains(&b'\n'), "{bytes:?} is more than one line");
    let value: Value = serde_json::from_slice(bytes).expect("the server writes JSON");
    assert!(value.is_object() && value["type"].is_string(), "{value}");
    value
}
