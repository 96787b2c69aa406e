//! The log kept in memory (`serve --memory`): ids and the newest messages of
//! each room, up to `--keep-messages` (10,000 by default), gone when the
//! process ends. Direct messages get ids but are not kept: nothing reads them
//! back, and memory is the one thing this engine must not grow.
//!
//! Everything happens inside [`MemoryLog::append`], under one short lock:
//! the id is given, the message kept and handed to the hub before the lock
//! is released, so deliveries leave in id order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use crate::log::{
    Committed, Deliver, Draft, LogError, LogFuture, MessageLog, Query, Receipt, Retention, RoomLog,
};
use crate::model::{ChatMessage, DirectMessage, RoomName};

/// How many messages a room keeps when `--keep-messages` is not given.
pub const DEFAULT_KEEP_MESSAGES: u64 = 10_000;

/// One room's kept messages and the last id it gave.
#[derive(Debug, Default)]
struct RoomHistory {
    messages: VecDeque<Arc<ChatMessage>>,
    last_id: u64,
}

/// What the lock guards.
#[derive(Debug, Default)]
struct State {
    rooms: HashMap<RoomName, RoomHistory>,
    last_direct_id: u64,
    closed: bool,
}

/// The in-memory message log.
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
    deliver: OnceLock<Arc<dyn Deliver>>,
    keep_messages: usize,
    retention: Retention,
}

impl MemoryLog {
    /// An empty log keeping what `retention` allows, and at most
    /// [`DEFAULT_KEEP_MESSAGES`] a room when it sets no count.
    pub fn new(retention: Retention) -> Self {
        let keep = retention.keep_messages.unwrap_or(DEFAULT_KEEP_MESSAGES);
        Self {
            state: Arc::default(),
            deliver: OnceLock::new(),
            keep_messages: usize::try_from(keep).unwrap_or(usize::MAX).max(1),
            retention,
        }
    }

    /// Gives `draft` its id and time and keeps it.
    fn commit(&self, state: &mut State, draft: Draft) -> Committed {
        let ts = SystemTime::now();
        match draft {
            Draft::Room { room, from, text } => {
                let history = state.rooms.entry(room.clone()).or_default();
                history.last_id += 1;
                let message = Arc::new(ChatMessage {
                    room,
                    id: history.last_id,
                    from,
                    text,
                    ts,
                });
                history.messages.push_back(Arc::clone(&message));
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
        while history.messages.len() > self.keep_messages {
            history.messages.pop_front();
        }
        if let Some(cutoff) = self.retention.keep_for.and_then(|d| now.checked_sub(d)) {
            while history.messages.front().is_some_and(|m| m.ts < cutoff) {
                history.messages.pop_front();
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

    fn health(&self) -> Result<(), LogError> {
        Ok(())
    }

    fn close(&self) -> LogFuture<()> {
        lock(&self.state).closed = true;
        Box::pin(async { Ok(()) })
    }
}
