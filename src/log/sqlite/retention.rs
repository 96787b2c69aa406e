//! Retention: deleting what `--keep-messages` and `--keep-days` no longer
//! keep, a few hundred rows per step, so a large delete never holds up the
//! appends queued behind it. The writer runs a step when it is idle (and now
//! and then between batches when it never is); each step is one short
//! `DELETE` in its own transaction.
//!
//! Rooms keep their last ids (the `rooms` table is never pruned), so ids
//! continue after every message of a room was deleted. The count limit
//! applies per room (and keeps at least one message, as the memory engine
//! does); the age limit to room and direct messages alike, in
//! commit order (the writer keeps `ts` from going backwards, so the oldest
//! rows are the first ones).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};

use crate::log::Retention;
use crate::log::sqlite::unix_ms;

/// The most rows one `DELETE` of a step deletes.
const STEP_ROWS: u64 = 500;

/// How often the age limit is looked at once nothing is left to delete.
const AGE_CHECK_EVERY: Duration = Duration::from_secs(60);

/// How long pruning waits after a step failed before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What a room's count limit needs to know.
#[derive(Clone, Copy, Debug)]
struct RoomIds {
    /// The last id given in the room.
    last_id: u64,
    /// No message below this id is left in the room.
    floor: u64,
}

/// What is left to prune, and the steps that prune it.
#[derive(Debug)]
pub struct Pruner {
    /// The newest messages kept per room, at least one.
    keep_messages: Option<u64>,
    /// How long a message is kept.
    keep_for: Option<Duration>,
    /// Every room's ids, by room key (only with a count limit).
    rooms: HashMap<i64, RoomIds>,
    /// The rooms holding more than the count limit.
    over: BTreeSet<i64>,
    /// When the age limit is next looked at (only with an age limit).
    age_due: Option<Instant>,
    /// No step before this, after one failed.
    retry_at: Option<Instant>,
}

impl Pruner {
    /// A pruner for `retention` over `rooms` (room key and last id), all of
    /// which may hold too much; the age limit is looked at first thing.
    pub fn new(retention: Retention, rooms: impl IntoIterator<Item = (i64, u64)>) -> Self {
        let mut pruner = Self {
            keep_messages: retention.keep_messages.map(|keep| keep.max(1)),
            keep_for: retention.keep_for,
            rooms: HashMap::new(),
            over: BTreeSet::new(),
            age_due: retention.keep_for.map(|_| Instant::now()),
            retry_at: None,
        };
        for (room, last_id) in rooms {
            pruner.touched(room, last_id);
        }
        pruner
    }

    /// Notes that `room` now has `last_id` (after a commit).
    pub fn touched(&mut self, room: i64, last_id: u64) {
        let Some(keep) = self.keep_messages else {
            return;
        };
        let ids = self
            .rooms
            .entry(room)
            .or_insert(RoomIds { last_id, floor: 1 });
        ids.last_id = last_id;
        if last_id.saturating_sub(keep) >= ids.floor {
            self.over.insert(room);
        }
    }

    /// How long from `now` until the next step has work: `None` when there
    /// is none, zero when there is some now.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        let due = if self.over.is_empty() {
            self.age_due?
        } else {
            now
        };
        let due = self.retry_at.map_or(due, |retry| due.max(retry));
        Some(due.saturating_duration_since(now))
    }

    /// Deletes a few hundred rows ([`STEP_ROWS`] per `DELETE`) that retention no longer keeps at
    /// `now` (wall clock, for the age limit; `at` is the same moment on the
    /// monotonic clock, for scheduling). Rooms over the count limit go first.
    ///
    /// # Errors
    /// The SQLite error of the `DELETE`; the pruner then waits a little
    /// before its next step.
    pub fn step(
        &mut self,
        conn: &Connection,
        now: SystemTime,
        at: Instant,
    ) -> rusqlite::Result<()> {
        let outcome = self.try_step(conn, now, at);
        self.retry_at = outcome.is_err().then(|| at + RETRY_AFTER);
        outcome
    }

    /// [`Pruner::step`] without the retry delay.
    fn try_step(
        &mut self,
        conn: &Connection,
        now: SystemTime,
        at: Instant,
    ) -> rusqlite::Result<()> {
        if let (Some(keep), Some(&room)) = (self.keep_messages, self.over.first()) {
            return self.prune_room(conn, room, keep);
        }
        let (Some(keep_for), Some(due)) = (self.keep_for, self.age_due) else {
            return Ok(());
        };
        if due > at {
            return Ok(());
        }
        let cutoff = now.checked_sub(keep_for).map_or(0, unix_ms);
        let messages = conn
            .prepare_cached(
                "DELETE FROM messages WHERE seq IN (
                     SELECT seq FROM (SELECT seq, ts FROM messages ORDER BY seq LIMIT ?1)
                     WHERE ts < ?2)",
            )?
            .execute(params![STEP_ROWS, cutoff])? as u64;
        // Direct messages once the room messages are done.
        let direct = if messages < STEP_ROWS {
            conn.prepare_cached(
                "DELETE FROM direct_messages WHERE id IN (
                     SELECT id FROM (SELECT id, ts FROM direct_messages ORDER BY id LIMIT ?1)
                     WHERE ts < ?2)",
            )?
            .execute(params![STEP_ROWS, cutoff])? as u64
        } else {
            0
        };
        let finished = messages < STEP_ROWS && direct < STEP_ROWS;
        self.age_due = Some(if finished {
            at + keep_for.min(AGE_CHECK_EVERY)
        } else {
            at
        });
        Ok(())
    }

    /// Deletes the oldest messages of `room` beyond the newest `keep`.
    fn prune_room(&mut self, conn: &Connection, room: i64, keep: u64) -> rusqlite::Result<()> {
        let Some(ids) = self.rooms.get_mut(&room) else {
            self.over.remove(&room);
            return Ok(());
        };
        let cut = ids.last_id.saturating_sub(keep);
        let deleted = conn
            .prepare_cached(
                "DELETE FROM messages WHERE seq IN (
                     SELECT seq FROM messages WHERE room = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)",
            )?
            .execute(params![room, cut, STEP_ROWS])? as u64;
        if deleted < STEP_ROWS {
            ids.floor = cut + 1;
            self.over.remove(&room);
        }
        Ok(())
    }
}
