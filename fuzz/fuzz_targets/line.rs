//! The line protocol (src/protocol/line.rs): any line, no panic; a line not
//! starting with `/` is said as it is; a refusal is `unknown_command`; and
//! the line as a peer's text in every event that carries one is written as
//! one line with no control character but tab, reading back as it was with
//! its control characters as `�`.
#![no_main]

use std::sync::Arc;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use switchboard::hub::event::{ErrorCode, Event, Format};
use switchboard::hub::session::{Command, Request};
use switchboard::model::{ChatMessage, DirectMessage, Nick, RoomName};
use switchboard::protocol::{self, Input, line};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = line::parse(text);
    assert_eq!(parsed, protocol::parse(Format::Line, text));
    match parsed {
        Ok(Input::Request(Request {
            command:
                Command::Say {
                    room: None,
                    text: said,
                },
            reference: None,
        })) if !text.starts_with('/') => assert_eq!(said, text),
        Ok(input) => assert!(
            text.starts_with('/') || (text.is_empty() && input == Input::Nothing),
            "{text:?} gave {input:?}"
        ),
        Err(Event::Error {
            code: ErrorCode::UnknownCommand,
            reference: None,
            ..
        }) => {}
        Err(other) => panic!("{text:?} gave {other:?}"),
    }
    check_events(text);
});

/// Every event that carries a peer's text, with `text` as that text.
fn check_events(text: &str) {
    let (Ok(nick), Ok(room)) = (Nick::parse("alice"), RoomName::parse("lobby")) else {
        unreachable!("valid names");
    };
    let message = Arc::new(ChatMessage {
        room: room.clone(),
        id: 1,
        from: nick.clone(),
        text: text.into(),
        ts: SystemTime::now(),
    });
    let direct = Arc::new(DirectMessage {
        id: 1,
        from: nick.clone(),
        to: nick,
        text: text.into(),
        ts: SystemTime::now(),
    });
    let events = [
        (Event::Message(Arc::clone(&message)), "[#lobby] alice: "),
        (Event::Dm(Arc::clone(&direct)), "[dm] alice: "),
        (Event::DmSent(direct), "* dm to alice: "),
        (Event::Notice(text.to_string()), "* "),
        (
            Event::Error {
                code: ErrorCode::BadField,
                message: text.to_string(),
                reference: None,
            },
            "! ",
        ),
    ];
    for (event, head) in events {
        let bytes = line::encode(&event);
        let out = std::str::from_utf8(&bytes).expect("lines are UTF-8");
        let shown = out
            .strip_suffix('\n')
            .and_then(|out| out.strip_prefix(head))
            .unwrap_or_else(|| panic!("{out:?} is not one line starting {head:?}"));
        assert!(!shown.contains('\n'), "{out:?} is more than one line");
        assert_eq!(shown.chars().count(), text.chars().count(), "{out:?}");
        for (s, t) in shown.chars().zip(text.chars()) {
            let hidden = t.is_control() && t != '\t';
            assert!(if hidden { s == '\u{fffd}' } else { s == t }, "{out:?}");
        }
    }
    let history = Event::History {
        room,
        messages: vec![Arc::clone(&message), message],
        reference: None,
    };
    assert_eq!(
        line::encode(&history)
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        3
    );
}
