//! Where room history lives: a trait, so the hub does not care whether it is
//! memory ([`memory::MemoryHistory`]) or, later, SQLite or Redis.

pub mod memory;

use std::sync::Arc;

use crate::hub::event::ChatMessage;
use crate::hub::names::RoomName;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend refused or failed.
    #[error("history storage failed: {0}")]
    Backend(String),
}

/// The history of every room: messages in id order.
pub trait History: Send + Sync + 'static {
    /// Stores `message`; ids arrive in increasing order per room.
    ///
    /// # Errors
    /// [`StorageError`] when the message could not be stored.
    fn append(&self, message: &Arc<ChatMessage>) -> Result<(), StorageError>;

    /// Messages of `room` with `after < id <= up_to`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StorageError`] when the history could not be read.
    fn range(
        &self,
        room: &RoomName,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<Arc<ChatMessage>>, StorageError>;

    /// The last `limit` messages of `room`, oldest first.
    ///
    /// # Errors
    /// [`StorageError`] when the history could not be read.
    fn latest(&self, room: &RoomName, limit: usize) -> Result<Vec<Arc<ChatMessage>>, StorageError>;

    /// The highest id ever stored for `room`, 0 when none: new ids continue from it.
    ///
    /// # Errors
    /// [`StorageError`] when the history could not be read.
    fn last_id(&self, room: &RoomName) -> Result<u64, StorageError>;
}
