//! History kept in memory (`serve --memory`): the newest messages of each
//! room, up to a cap, gone when the process ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hub::event::ChatMessage;
use crate::hub::names::RoomName;
use crate::storage::{History, StorageError};

/// How many messages a room keeps by default.
pub const DEFAULT_PER_ROOM: usize = 10_000;

/// One room's kept messages and the highest id it has seen.
#[derive(Debug, Default)]
struct RoomLog {
    messages: VecDeque<Arc<ChatMessage>>,
    last_id: u64,
}

/// In-memory history: the newest `per_room` messages of each room.
#[derive(Debug)]
pub struct MemoryHistory {
    rooms: Mutex<HashMap<RoomName, RoomLog>>,
    per_room: usize,
}

impl MemoryHistory {
    /// An empty history keeping at most `per_room` messages a room.
    pub fn new(per_room: usize) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            per_room: per_room.max(1),
        }
    }

    /// The rooms, even if a panicking thread poisoned the lock (the data stays consistent:
    /// every change is a single push or pop).
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomName, RoomLog>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        Self::new(DEFAULT_PER_ROOM)
    }
}

impl History for MemoryHistory {
    fn append(&self, message: &Arc<ChatMessage>) -> Result<(), StorageError> {
        let mut rooms = self.rooms();
        let log = rooms.entry(message.room.clone()).or_default();
        log.last_id = log.last_id.max(message.id);
        log.messages.push_back(Arc::clone(message));
        if log.messages.len() > self.per_room {
            log.messages.pop_front();
        }
        Ok(())
    }

    fn range(
        &self,
        room: &RoomName,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<Arc<ChatMessage>>, StorageError> {
        let rooms = self.rooms();
        let Some(log) = rooms.get(room) else {
            return Ok(Vec::new());
        };
        let start = log.messages.partition_point(|m| m.id <= after);
        Ok(log
            .messages
            .range(start..)
            .take_while(|m| m.id <= up_to)
            .take(limit)
            .cloned()
            .collect())
    }

    fn latest(&self, room: &RoomName, limit: usize) -> Result<Vec<Arc<ChatMessage>>, StorageError> {
        let rooms = self.rooms();
        let Some(log) = rooms.get(room) else {
            return Ok(Vec::new());
        };
        let skip = log.messages.len().saturating_sub(limit);
        Ok(log.messages.range(skip..).cloned().collect())
    }

    fn last_id(&self, room: &RoomName) -> Result<u64, StorageError> {
        Ok(self.rooms().get(room).map_or(0, |log| log.last_id))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::hub::names::Nick;

    fn message(room: &RoomName, id: u64) -> Arc<ChatMessage> {
        Arc::new(ChatMessage {
            room: room.clone(),
            id,
            from: Nick::parse("alice").unwrap(),
            text: format!("m{id}").into(),
            ts: SystemTime::UNIX_EPOCH,
        })
    }

    fn ids(messages: &[Arc<ChatMessage>]) -> Vec<u64> {
        messages.iter().map(|m| m.id).collect()
    }

    #[test]
    fn ranges_are_exclusive_below_and_inclusive_above() {
        let history = MemoryHistory::new(100);
        let room = RoomName::parse("lobby").unwrap();
        for id in 1..=10 {
            history.append(&message(&room, id)).unwrap();
        }
        assert_eq!(ids(&history.range(&room, 3, 6, 100).unwrap()), [4, 5, 6]);
        assert_eq!(ids(&history.range(&room, 8, u64::MAX, 1).unwrap()), [9]);
        assert_eq!(ids(&history.latest(&room, 3).unwrap()), [8, 9, 10]);
        assert_eq!(history.last_id(&room).unwrap(), 10);
    }

    #[test]
    fn keeps_the_newest_messages_and_the_last_id() {
        let history = MemoryHistory::new(3);
        let room = RoomName::parse("lobby").unwrap();
        for id in 1..=5 {
            history.append(&message(&room, id)).unwrap();
        }
        assert_eq!(ids(&history.latest(&room, 10).unwrap()), [3, 4, 5]);
        assert_eq!(history.last_id(&room).unwrap(), 5);
        let empty = RoomName::parse("empty").unwrap();
        assert_eq!(history.last_id(&empty).unwrap(), 0);
        assert!(history.range(&empty, 0, 9, 9).unwrap().is_empty());
    }
}
