//! Reads: history pages and the room list, on a small pool of read-only
//! connections used from `tokio::task::spawn_blocking`, beside the writer
//! (WAL lets readers see the last commit while the next one is written).
//! At most [`READERS`] reads run at once; the others wait asynchronously for
//! a turn, so neither a slow disk nor a burst of reads blocks the runtime.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};
use tokio::sync::Semaphore;

use crate::log::sqlite::schema;
use crate::log::{LogError, LogFuture, Query, RoomLog};
use crate::model::{ChatMessage, Nick, RoomName};

/// The most reads at once, and the most connections kept open for them.
const READERS: usize = 4;

/// The pool of read-only connections.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    turns: Arc<Semaphore>,
}

impl Readers {
    /// A pool reading the database at `path`; connections open on first use.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::with_capacity(READERS)),
            turns: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Runs `read` on a pooled connection in a blocking task.
    pub fn run<T, F>(self: &Arc<Self>, read: F) -> LogFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        Box::pin(async move {
            // Held until the read ends, even if its caller stops waiting.
            let turn = Arc::clone(&pool.turns)
                .acquire_owned()
                .await
                .map_err(|_| LogError::Closed)?;
            tokio::task::spawn_blocking(move || {
                let outcome = pool.read_now(read);
                drop(turn);
                outcome
            })
            .await
            .map_err(|err| LogError::Read(format!("the read stopped: {err}")))?
        })
    }

    /// Runs `read` here, on an idle connection or a new one.
    fn read_now<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LogError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => schema::open_reader(&self.path).map_err(|err| {
                LogError::Read(format!("cannot open {}: {err}", self.path.display()))
            })?,
        };
        let outcome = read(&conn).map_err(|err| LogError::Read(err.to_string()));
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        outcome
    }
}

/// The page `query` asks for, oldest first.
///
/// # Errors
/// The SQLite error, or a row that is not a valid message.
pub fn page(conn: &Connection, query: &Query) -> rusqlite::Result<Vec<Arc<ChatMessage>>> {
    match query {
        Query::After {
            room,
            after,
            up_to,
            limit,
        } => {
            let Ok(after) = i64::try_from(*after) else {
                return Ok(Vec::new());
            };
            let mut statement = conn.prepare_cached(
                "SELECT id, sender, text, ts FROM messages
                 WHERE room = (SELECT key FROM rooms WHERE name = ?1) AND id > ?2 AND id <= ?3
                 ORDER BY id LIMIT ?4",
            )?;
            let rows = statement.query_map(
                params![room.as_str(), after, clamp(*up_to), clamp(*limit)],
                |row| message(room, row),
            )?;
            rows.collect()
        }
        Query::Latest { room, limit } => {
            let mut statement = conn.prepare_cached(
                "SELECT id, sender, text, ts FROM messages
                 WHERE room = (SELECT key FROM rooms WHERE name = ?1)
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![room.as_str(), clamp(*limit)], |row| {
                message(room, row)
            })?;
            let mut page = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            page.reverse();
            Ok(page)
        }
    }
}

/// Every room with its last id.
///
/// # Errors
/// The SQLite error, or a room name that is not valid.
pub fn rooms(conn: &Connection) -> rusqlite::Result<Vec<RoomLog>> {
    let mut statement = conn.prepare_cached("SELECT name, last_id FROM rooms")?;
    let rows = statement.query_map([], |row| {
        let name: String = row.get(0)?;
        Ok(RoomLog {
            room: RoomName::parse(&name).map_err(|err| {
                rusqlite::Error::FromSqlConversionFailure(0, Type::Text, err.into())
            })?,
            last_id: row.get(1)?,
        })
    })?;
    rows.collect()
}

/// A message of `room` from a row of `id, sender, text, ts`.
fn message(room: &RoomName, row: &Row<'_>) -> rusqlite::Result<Arc<ChatMessage>> {
    let sender: String = row.get(1)?;
    let text: String = row.get(2)?;
    let ts: u64 = row.get(3)?;
    Ok(Arc::new(ChatMessage {
        room: room.clone(),
        id: row.get(0)?,
        from: Nick::parse(&sender)
            .map_err(|err| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, err.into()))?,
        text: text.into(),
        ts: UNIX_EPOCH + Duration::from_millis(ts),
    }))
}

/// `n` as an SQL integer, the largest one if it is larger.
fn clamp<N: TryInto<i64>>(n: N) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
