//! The message log: the one seam for ids, durability and history
//! (docs/ARCHITECTURE.md). The hub hands every message to a [`MessageLog`];
//! the engine gives it its id, makes it durable, and only then passes it to
//! the hub's [`Deliver`], which fans it out and lets the sender's
//! [`Receipt`] resolve. Reads (history, `since` replay, the HTTP history) go
//! through the same trait, a page at a time.
//!
//! Engines: [`memory`] (`serve --memory`), [`sqlite`] (the default) and, for
//! several nodes, Redis. Each passes the same test suite (`tests.rs`).

pub mod memory;
mod receipt;
pub mod redis;
pub mod sqlite;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{ChatMessage, DirectMessage, Nick, RoomName};

pub use receipt::{Receipt, Sender, receipt};

/// A boxed future an engine returns from a read: reads are rare next to
/// appends, so one allocation each keeps the trait object-safe for free.
pub type LogFuture<T> = Pin<Box<dyn Future<Output = Result<T, LogError>> + Send + 'static>>;

/// A message on its way into the log: everything but its id and time, which
/// the engine gives it when it commits.
#[derive(Clone, Debug, PartialEq)]
pub enum Draft {
    /// Said in a room.
    Room {
        /// The room.
        room: RoomName,
        /// Who said it.
        from: Nick,
        /// What was said.
        text: Arc<str>,
    },
    /// Sent to one person.
    Direct {
        /// The sender.
        from: Nick,
        /// The recipient.
        to: Nick,
        /// What was said.
        text: Arc<str>,
    },
}

/// A message the log has made durable, with its id and time.
#[derive(Clone, Debug, PartialEq)]
pub enum Committed {
    /// Said in a room.
    Room(Arc<ChatMessage>),
    /// Sent to one person.
    Direct(Arc<DirectMessage>),
}

/// Where an engine sends what it committed: the hub, which fans it out.
///
/// An engine calls [`Deliver::deliver`] from one thread or task at a time,
/// with each room's messages in id order, every id once and none skipped
/// (an engine whose messages arrive from elsewhere fills gaps first), and
/// with direct messages in id order. It calls it *before* resolving the
/// senders' receipts: by the time a sender learns its id, the message is
/// queued to every member, itself included, and written right after the ack.
pub trait Deliver: Send + Sync + 'static {
    /// Fans out `committed`, in order.
    fn deliver(&self, committed: &[Committed]);
}

/// A page of a room's history to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Messages with `after < id <= up_to`, oldest first, at most `limit`.
    After {
        /// The room.
        room: RoomName,
        /// Only ids above this.
        after: u64,
        /// Only ids up to this.
        up_to: u64,
        /// At most this many.
        limit: usize,
    },
    /// The newest `limit` messages, oldest first.
    Latest {
        /// The room.
        room: RoomName,
        /// At most this many.
        limit: usize,
    },
}

/// A room the log holds history for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomLog {
    /// The room.
    pub room: RoomName,
    /// The last id given in it: new ids continue from here.
    pub last_id: u64,
}

/// How long history is kept; `None` keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// The newest messages kept per room (`--keep-messages`).
    pub keep_messages: Option<u64>,
    /// How long a message is kept (`--keep-days`).
    pub keep_for: Option<Duration>,
}

/// Why the log could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The log could not be opened at start (not writable, corrupt, in use, …).
    #[error("could not open the message log {path}: {reason}")]
    Open {
        /// The file or directory concerned.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// A message could not be made durable (disk full, I/O error, …): it was
    /// not stored and must not be acknowledged.
    #[error("message not stored: {0}")]
    Write(String),
    /// History could not be read.
    #[error("history could not be read: {0}")]
    Read(String),
    /// More messages are waiting to be committed than the log takes at once.
    #[error("message not stored: the message log is overloaded, try again")]
    Busy,
    /// The log is shutting down.
    #[error("message not stored: the server is shutting down")]
    Closed,
}

/// The message log: assigns ids, makes messages durable, hands them to the
/// hub, and reads history back.
pub trait MessageLog: Send + Sync + 'static {
    /// Gives the log the hub to deliver committed messages to; called once,
    /// before the first [`MessageLog::append`].
    fn attach(&self, deliver: Arc<dyn Deliver>);

    /// Submits a message and returns at once; the receipt resolves once the
    /// message is durable and delivered (or with why it was not stored).
    fn append(&self, draft: Draft) -> Receipt;

    /// A page of a room's history.
    fn read(&self, query: Query) -> LogFuture<Vec<Arc<ChatMessage>>>;

    /// Every room with history, and its last id.
    fn rooms(&self) -> LogFuture<Vec<RoomLog>>;

    /// Whether the log keeps history in memory only, so that a memberless
    /// room may be evicted, history and all, to bound memory (`--max-rooms`);
    /// an engine that stores history elsewhere keeps every room.
    fn forgets_rooms(&self) -> bool {
        false
    }

    /// Forgets `room`'s history if its last id is still `last_id` (nothing
    /// was said there since the hub evicted it). Ids the room gives later
    /// stay above every id it gave before. A no-op for engines that keep
    /// every room.
    fn forget(&self, room: &RoomName, last_id: u64) {
        let _ = (room, last_id);
    }

    /// Whether the log takes messages now.
    ///
    /// # Errors
    /// Why not (the last write failed, the backend is unreachable).
    fn health(&self) -> Result<(), LogError>;

    /// Commits what was submitted before, then stops taking messages.
    fn close(&self) -> LogFuture<()>;
}
