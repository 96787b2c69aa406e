//! What the hub sends to connections, independent of any wire format.
//!
//! An [`Outgoing`] wraps one [`Event`] with a cache of its encodings: a message
//! fanned out to 10,000 members is one `Arc<Outgoing>`, encoded at most once
//! per wire format (line, JSON) no matter how many members receive it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::model::{ChatMessage, DirectMessage, Nick, RoomName};

/// The client's own request tag, echoed in the reply it causes (JSON `ref`).
pub type Reference = Option<Value>;

/// Everything a connection can be told.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The greeting: your nick and your file descriptor.
    Welcome {
        /// The connection's nick.
        nick: Nick,
        /// The connection's file descriptor on the server.
        fd: i32,
    },
    /// A message in a room you are in (your own included).
    Message(Arc<ChatMessage>),
    /// A direct message to you.
    Dm(Arc<DirectMessage>),
    /// Your copy of a direct message you sent.
    DmSent(Arc<DirectMessage>),
    /// Your request was done; `id` names the message it created.
    Ack {
        /// The request's `ref`.
        reference: Reference,
        /// The id of the message created, if any.
        id: Option<u64>,
        /// Your nick after a nick change.
        nick: Option<Nick>,
    },
    /// Someone (or you) joined a room.
    Joined {
        /// The room.
        room: RoomName,
        /// Who joined.
        nick: Nick,
        /// The `ref` of your own join request.
        reference: Reference,
    },
    /// Someone (or you) left a room.
    Parted {
        /// The room.
        room: RoomName,
        /// Who left.
        nick: Nick,
        /// The `ref` of your own part request.
        reference: Reference,
    },
    /// Someone in one of your rooms changed nick.
    NickChanged {
        /// The old nick.
        old: Nick,
        /// The new nick.
        new: Nick,
    },
    /// Stored messages of a room, oldest first.
    History {
        /// The room.
        room: RoomName,
        /// The messages.
        messages: Vec<Arc<ChatMessage>>,
        /// The request's `ref`.
        reference: Reference,
    },
    /// Who is in a room.
    Who {
        /// The room.
        room: RoomName,
        /// Its members' nicks, sorted.
        nicks: Vec<Nick>,
        /// The request's `ref`.
        reference: Reference,
    },
    /// The live rooms and their member counts.
    Rooms(Vec<(RoomName, usize)>),
    /// Information in words (help, goodbyes).
    Notice(String),
    /// Your last request failed.
    Error {
        /// A stable machine-readable code.
        code: ErrorCode,
        /// What went wrong, in words.
        message: String,
        /// The request's `ref`.
        reference: Reference,
    },
}

/// Stable codes for [`Event::Error`], as clients match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The input was not valid JSON, or not an object.
    BadJson,
    /// The request's `type` is not one we know.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an invalid value.
    BadField,
    /// An unknown `/command` on a line connection.
    UnknownCommand,
    /// Not a valid nick.
    InvalidNick,
    /// The nick belongs to someone else.
    NickTaken,
    /// Not a valid room name.
    InvalidRoom,
    /// You are not in that room (or in none).
    NotInRoom,
    /// Nobody has that nick.
    NoSuchNick,
    /// More messages than the rate limit allows.
    RateLimited,
    /// A line or message over the size limit.
    TooLong,
    /// A line that is not UTF-8.
    NotUtf8,
    /// An empty message.
    EmptyText,
    /// A token is required first.
    Unauthorized,
    /// A new room would pass `--max-rooms`.
    TooManyRooms,
    /// Messages a replay asked for are no longer stored (retention deleted
    /// them, or the store lost its data).
    HistoryLost,
    /// The message log could not store or read it now (disk full, …):
    /// nothing was stored, try again.
    Unavailable,
    /// The server could not do it.
    Internal,
}

impl ErrorCode {
    /// The code as sent to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownType => "unknown_type",
            Self::MissingField => "missing_field",
            Self::BadField => "bad_field",
            Self::UnknownCommand => "unknown_command",
            Self::InvalidNick => "invalid_nick",
            Self::NickTaken => "nick_taken",
            Self::InvalidRoom => "invalid_room",
            Self::NotInRoom => "not_in_room",
            Self::NoSuchNick => "no_such_nick",
            Self::RateLimited => "rate_limited",
            Self::TooLong => "too_long",
            Self::NotUtf8 => "not_utf8",
            Self::EmptyText => "empty_text",
            Self::Unauthorized => "unauthorized",
            Self::TooManyRooms => "too_many_rooms",
            Self::HistoryLost => "history_lost",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl Event {
    /// An error reply, counted in the `switchboard_errors_total` metric by code.
    pub fn error(code: ErrorCode, message: impl Into<String>, reference: Reference) -> Self {
        metrics::counter!("switchboard_errors_total", "code" => code.as_str()).increment(1);
        Self::Error {
            code,
            message: message.into(),
            reference,
        }
    }
}

/// The wire formats an event can be encoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The line protocol of `nc` users.
    Line,
    /// One JSON object a line (or a WebSocket text message).
    Json,
}

/// An event on its way to one or many connections, with its encodings cached.
#[derive(Debug)]
pub struct Outgoing {
    /// The event.
    pub event: Event,
    line: OnceLock<Bytes>,
    json: OnceLock<Bytes>,
}

impl Outgoing {
    /// Wraps an event for sending.
    pub fn new(event: Event) -> Arc<Self> {
        Arc::new(Self {
            event,
            line: OnceLock::new(),
            json: OnceLock::new(),
        })
    }

    /// The event in `format`, encoded by `encode` the first time it is asked for.
    pub fn encoded(&self, format: Format, encode: impl FnOnce(&Event) -> Bytes) -> Bytes {
        let slot = match format {
            Format::Line => &self.line,
            Format::Json => &self.json,
        };
        slot.get_or_init(|| encode(&self.event)).clone()
    }
}
