//! The log kept in memory (`serve --memory`): ids and the newest messages of
//! each room, up to `--keep-messages` (10,000 by default) and `--keep-bytes`
//! (16 MiB by default), gone when the process ends. Direct messages get ids
//! but are not kept: nothing reads them back, and memory is the one thing
//! this engine must not grow. A room the hub evicts under `--max-rooms`
//! ([`MessageLog::forget`]) is forgotten, so the history held is at most
//! `--max-rooms` times the cap of one room (docs/PROTOCOL.md 5.5).
//!
//! Everything happens inside [`MemoryLog::append`], under one short lock:
//! the id is given, the message kept and handed to the hub before the lock
//! is released, so deliveries leave in id order.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use crate::log::{
    Committed, Deliver, Draft, LogError, LogFuture, MessageLog, Query, Receipt, Retention, RoomLog,
};
use crate::model::{ChatMessage, DirectMessage, RoomName};

/// How many messages a room keeps when `--keep-messages` is not given.
pub const DEFAULT_KEEP_MESSAGES: u64 = 10_000;

/// How many bytes of messages a room keeps when `--keep-bytes` is not given.
pub const DEFAULT_KEEP_BYTES: usize = 16 * 1024 * 1024;

/// What a kept message costs besides its text and sender: the message's
/// `Arc` and fields (88 bytes), the text's `Arc` counts and the queue's slot,
/// rounded up for the allocator.
const MESSAGE_OVERHEAD: usize = 128;

/// How many slots remember the last ids of forgotten rooms (8 KiB).
const FLOORS: usize = 1024;

/// One room's kept messages, their cost in bytes, and the last id it gave.
#[derive(Debug, Default)]
struct RoomHistory {
    messages: VecDeque<Arc<ChatMessage>>,
    bytes: usize,
    last_id: u64,
}

impl RoomHistory {
    /// Keeps `message` as the newest.
    fn push(&mut self, message: Arc<ChatMessage>) {
        self.bytes += cost(&message);
        self.messages.push_back(message);
    }

    /// Drops the oldest message.
    fn pop(&mut self) {
        if let Some(message) = self.messages.pop_front() {
            self.bytes -= cost(&message);
        }
    }
}

/// What `message` costs to keep, in bytes.
fn cost(message: &ChatMessage) -> usize {
    message.text.len() + message.from.as_str().len() + MESSAGE_OVERHEAD
}

/// What the lock guards.
#[derive(Debug)]
struct State {
    rooms: HashMap<RoomName, RoomHistory>,
    last_direct_id: u64,
    closed: bool,
    /// The highest last id of the forgotten rooms, by a hash of their name
    /// into [`FLOORS`] slots: a room made again gives ids above its old ones
    /// without its name being kept.
    floors: Box<[u64]>,
    hasher: RandomState,
}

impl Default for State {
    fn default() -> Self {
        Self {
            rooms: HashMap::new(),
            last_direct_id: 0,
            closed: false,
            floors: vec![0; FLOORS].into_boxed_slice(),
            hasher: RandomState::new(),
        }
    }
}

impl State {
    /// `room`'s slot in [`State::floors`].
    fn floor(&mut self, room: &RoomName) -> &mut u64 {
        let hash = self.hasher.hash_one(room);
        let slot = usize::try_from(hash % FLOORS as u64).unwrap_or(0);
        &mut self.floors[slot]
    }
}

/// The in-memory message log.
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
    deliver: OnceLock<Arc<dyn Deliver>>,
    keep_messages: usize,
    keep_bytes: usize,
    retention: Retention,
}

impl MemoryLog {
    /// An empty log keeping what `retention` allows, and at most
    /// [`DEFAULT_KEEP_MESSAGES`] a room when it sets no count, and
    /// [`DEFAULT_KEEP_BYTES`] a room ([`Self::keep_bytes`]).
    pub fn new(retention: Retention) -> Self {
        let keep = retention.keep_messages.unwrap_or(DEFAULT_KEEP_MESSAGES);
        Self {
            state: Arc::default(),
            deliver: OnceLock::new(),
            keep_messages: usize::try_from(keep).unwrap_or(usize::MAX).max(1),
            keep_bytes: DEFAULT_KEEP_BYTES,
            retention,
        }
    }

    /// Keeps at most `bytes` of messages a room (text, sender and about 128
    /// bytes each), dropping the oldest first; a room always keeps its
    /// newest message.
    #[must_use]
    pub fn keep_bytes(mut self, bytes: usize) -> Self {
        self.keep_bytes = bytes;
        self
    }

    /// Gives `draft` its id and time and keeps it.
    fn commit(&self, state: &mut State, draft: Draft) -> Committed {
        let ts = SystemTime::now();
        match draft {
            Draft::Room { room, from, text } => {
                if !state.rooms.contains_key(&room) {
                    let last_id = *state.floor(&room);
                    let fresh = RoomHistory {
                        last_id,
                        ..RoomHistory::default()
                    };
                    state.rooms.insert(room.clone(), fresh);
                }
                let history = state.rooms.entry(room.clone()).or_default();
                history.last_id += 1;
                let message = Arc::new(ChatMessage {
                    room,
                    id: history.last_id,
                    from,
                    text,
                    ts,
                });
                history.push(Arc::clone(&message));
                self.prune(history, ts);
                Committed::Room(message)
            }
            Draft::Direct { from, to, text } => {
                state.last_direct_id += 1;
                Committed::Direct(Arc::new(DirectMessage {
                    id: state.last_direct_id,
                    from,
                    to,
                    text,
                    ts,
                }))
            }
        }
    }

    /// Drops what retention no longer keeps from the front of `history`.
    fn prune(&self, history: &mut RoomHistory, now: SystemTime) {
        while history.messages.len() > self.keep_messages
            || (history.bytes > self.keep_bytes && history.messages.len() > 1)
        {
            history.pop();
        }
        if let Some(cutoff) = self.retention.keep_for.and_then(|d| now.checked_sub(d)) {
            while history.messages.front().is_some_and(|m| m.ts < cutoff) {
                history.pop();
            }
        }
    }
}

/// The state, even if a panicking thread poisoned the lock (every change
/// leaves it consistent).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MessageLog for MemoryLog {
    fn attach(&self, deliver: Arc<dyn Deliver>) {
        let _ = self.deliver.set(deliver);
    }

    fn append(&self, draft: Draft) -> Receipt {
        let mut state = lock(&self.state);
        if state.closed {
            return Receipt::ready(Err(LogError::Closed));
        }
        let committed = self.commit(&mut state, draft);
        // Delivered under the lock, so deliveries leave in id order.
        if let Some(deliver) = self.deliver.get() {
            deliver.deliver(std::slice::from_ref(&committed));
        }
        Receipt::ready(Ok(committed))
    }

    fn read(&self, query: Query) -> LogFuture<Vec<Arc<ChatMessage>>> {
        let state = lock(&self.state);
        let page = match &query {
            Query::After {
                room,
                after,
                up_to,
                limit,
            } => state.rooms.get(room).map(|history| {
                let start = history.messages.partition_point(|m| m.id <= *after);
                history
                    .messages
                    .range(start..)
                    .take_while(|m| m.id <= *up_to)
                    .take(*limit)
                    .cloned()
                    .collect()
            }),
            Query::Latest { room, limit } => state.rooms.get(room).map(|history| {
                let skip = history.messages.len().saturating_sub(*limit);
                history.messages.range(skip..).cloned().collect()
            }),
        };
        let page = page.unwrap_or_default();
        Box::pin(async move { Ok(page) })
    }

    fn rooms(&self) -> LogFuture<Vec<RoomLog>> {
        let rooms = lock(&self.state)
            .rooms
            .iter()
            .map(|(room, history)| RoomLog {
                room: room.clone(),
                last_id: history.last_id,
            })
            .collect();
        Box::pin(async move { Ok(rooms) })
    }

    fn forgets_rooms(&self) -> bool {
        true
    }

    fn forget(&self, room: &RoomName, last_id: u64) {
        let mut state = lock(&self.state);
        if state.rooms.get(room).is_some_and(|h| h.last_id == last_id) {
            state.rooms.remove(room);
            let floor = state.floor(room);
            *floor = (*floor).max(last_id);
        }
    }

    fn health(&self) -> Result<(), LogError> {
        Ok(())
    }

    fn close(&self) -> LogFuture<()> {
        lock(&self.state).closed = true;
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Nick;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    /// Says `text` in `room`; its id.
    async fn say(log: &MemoryLog, room_name: &str, text: &str) -> u64 {
        let draft = Draft::Room {
            room: room(room_name),
            from: Nick::parse("bob").unwrap(),
            text: text.into(),
        };
        match log.append(draft).await.unwrap() {
            Committed::Room(message) => message.id,
            Committed::Direct(_) => unreachable!("a room message"),
        }
    }

    /// The ids `room` keeps.
    async fn kept(log: &MemoryLog, room_name: &str) -> Vec<u64> {
        let query = Query::Latest {
            room: room(room_name),
            limit: 1000,
        };
        log.read(query)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    }

    #[tokio::test]
    async fn a_room_keeps_the_newest_messages_that_fit_its_bytes() {
        // Each costs 300 + 3 + 128 = 431 bytes: two fit in 1,000.
        let log = MemoryLog::new(Retention::default()).keep_bytes(1000);
        for _ in 0..10 {
            say(&log, "big", &"x".repeat(300)).await;
        }
        assert_eq!(kept(&log, "big").await, [9, 10]);
        say(&log, "big", &"y".repeat(5000)).await;
        assert_eq!(kept(&log, "big").await, [11], "the newest is always kept");
        assert_eq!(lock(&log.state).rooms[&room("big")].bytes, 5000 + 3 + 128);
    }

    #[tokio::test]
    async fn a_forgotten_room_frees_its_history_and_never_gives_an_id_twice() {
        let log = MemoryLog::new(Retention::default());
        for _ in 0..3 {
            say(&log, "gone", "hello").await;
        }
        log.forget(&room("gone"), 2);
        assert_eq!(kept(&log, "gone").await, [1, 2, 3], "said since: kept");
        log.forget(&room("gone"), 3);
        assert!(kept(&log, "gone").await.is_empty());
        assert!(log.rooms().await.unwrap().is_empty());
        assert_eq!(say(&log, "gone", "back").await, 4);
    }
}
