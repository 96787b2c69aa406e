//! The messages people send: said in a room ([`ChatMessage`]) or to one
//! person ([`DirectMessage`]), each with the id and time the message log
//! gave it when it committed it (docs/PROTOCOL.md, "Ids and order").

use std::sync::Arc;
use std::time::SystemTime;

use crate::model::names::{Nick, RoomName};

/// A message said in a room, as committed to the log.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// The room it was said in.
    pub room: RoomName,
    /// Its id: strictly growing within the room, never used twice.
    pub id: u64,
    /// Who said it.
    pub from: Nick,
    /// What was said.
    pub text: Arc<str>,
    /// When the log committed it.
    pub ts: SystemTime,
}

/// A direct message from one user to another, as committed to the log.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectMessage {
    /// Its id: strictly growing across all direct messages, never used twice.
    pub id: u64,
    /// The sender.
    pub from: Nick,
    /// The recipient.
    pub to: Nick,
    /// What was said.
    pub text: Arc<str>,
    /// When the log committed it.
    pub ts: SystemTime,
}
