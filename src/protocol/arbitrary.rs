//! proptest strategies for the protocol tests: names, peer text, `ref`
//! values and every kind of [`Event`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

use crate::hub::event::{ErrorCode, Event, Reference};
use crate::model::{ChatMessage, DirectMessage, Nick, RoomName};

/// Every error code.
pub const CODES: [ErrorCode; 18] = [
    ErrorCode::BadJson,
    ErrorCode::UnknownType,
    ErrorCode::MissingField,
    ErrorCode::BadField,
    ErrorCode::UnknownCommand,
    ErrorCode::InvalidNick,
    ErrorCode::NickTaken,
    ErrorCode::InvalidRoom,
    ErrorCode::NotInRoom,
    ErrorCode::NoSuchNick,
    ErrorCode::RateLimited,
    ErrorCode::TooLong,
    ErrorCode::NotUtf8,
    ErrorCode::EmptyText,
    ErrorCode::Unauthorized,
    ErrorCode::TooManyRooms,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

/// A valid nick.
pub fn nick() -> impl Strategy<Value = Nick> {
    "[A-Za-z0-9_-]{1,32}".prop_map(|name| Nick::parse(&name).expect("a valid nick"))
}

/// A valid room name.
pub fn room() -> impl Strategy<Value = RoomName> {
    "#?[A-Za-z0-9_-]{1,64}".prop_map(|name| RoomName::parse(&name).expect("a valid room"))
}

/// Text a peer may send: any characters, often the ones that could forge a
/// line or drive a terminal (newlines, escapes, NEL, line separators).
pub fn text() -> impl Strategy<Value = String> {
    let tricky = select(vec![
        '\n', '\r', '\t', '\u{1b}', '\0', '\u{7f}', '\u{85}', '\u{2028}', '/', ' ', '"', '\\', 'a',
    ]);
    let char = prop_oneof![any::<char>(), tricky];
    proptest::collection::vec(char, 0..24).prop_map(|chars| chars.into_iter().collect())
}

/// A time the log may have given: mostly 1970 to 2100 with nanoseconds,
/// sometimes one `humantime` cannot write (before 1970, after 9999).
pub fn time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        8 => (0..4_102_444_800_u64, 0..1_000_000_000_u32)
            .prop_map(|(secs, nanos)| UNIX_EPOCH + Duration::new(secs, nanos)),
        1 => (1..u64::from(u32::MAX)).prop_map(|secs| UNIX_EPOCH - Duration::from_secs(secs)),
        1 => (253_402_300_800..1_000_000_000_000_u64)
            .prop_map(|secs| UNIX_EPOCH + Duration::from_secs(secs)),
    ]
}

/// Any JSON value whose text parses back to the same value: integers of
/// `i64` or `u64` and finite floats (a bigger integer comes back as a float).
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((text(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A request's `ref`: none, or any JSON value (`null` included).
pub fn reference() -> impl Strategy<Value = Reference> {
    proptest::option::of(json_value())
}

/// A message said in a room.
fn chat_message() -> impl Strategy<Value = Arc<ChatMessage>> {
    (room(), any::<u64>(), nick(), text(), time()).prop_map(|(room, id, from, text, ts)| {
        Arc::new(ChatMessage {
            room,
            id,
            from,
            text: text.into(),
            ts,
        })
    })
}

/// A direct message.
fn direct_message() -> impl Strategy<Value = Arc<DirectMessage>> {
    (any::<u64>(), nick(), nick(), text(), time()).prop_map(|(id, from, to, text, ts)| {
        Arc::new(DirectMessage {
            id,
            from,
            to,
            text: text.into(),
            ts,
        })
    })
}

/// Any event the hub can send, with peer text wherever a peer's text goes.
pub fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (nick(), any::<i32>()).prop_map(|(nick, fd)| Event::Welcome { nick, fd }),
        chat_message().prop_map(Event::Message),
        direct_message().prop_map(Event::Dm),
        direct_message().prop_map(Event::DmSent),
        (
            reference(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(nick())
        )
            .prop_map(|(reference, id, nick)| Event::Ack {
                reference,
                id,
                nick
            }),
        (room(), nick(), reference()).prop_map(|(room, nick, reference)| Event::Joined {
            room,
            nick,
            reference
        }),
        (room(), nick(), reference()).prop_map(|(room, nick, reference)| Event::Parted {
            room,
            nick,
            reference
        }),
        (nick(), nick()).prop_map(|(old, new)| Event::NickChanged { old, new }),
        (
            room(),
            proptest::collection::vec(chat_message(), 0..4),
            reference()
        )
            .prop_map(|(room, messages, reference)| Event::History {
                room,
                messages,
                reference
            }),
        (room(), proptest::collection::vec(nick(), 0..4), reference()).prop_map(
            |(room, nicks, reference)| Event::Who {
                room,
                nicks,
                reference
            }
        ),
        proptest::collection::vec((room(), any::<usize>()), 0..4).prop_map(Event::Rooms),
        text().prop_map(Event::Notice),
        (select(CODES.to_vec()), text(), reference()).prop_map(|(code, message, reference)| {
            Event::Error {
                code,
                message,
                reference,
            }
        }),
    ]
}
