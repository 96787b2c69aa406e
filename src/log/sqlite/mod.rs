//! The log kept in SQLite (the default engine): one database file in the
//! data directory, written by one writer thread with group commit
//! (`writer`), checkpointed beside it (`checkpoint`), read by a small pool
//! of read-only connections (`read`), pruned in small steps (`retention`),
//! guarded against a second server (`lock`), and checked and migrated at
//! open (`schema`).
//!
//! Schema (version 1):
//! - `rooms (key, name, last_id)`: every room that ever had a message, with
//!   the last id it gave, so ids continue after a restart and are never
//!   given twice, even once retention deleted all of a room's messages;
//! - `messages (seq, room, id, sender, text, ts)`: room messages, `room`
//!   being the room's key (an integer: a name repeated in every row and in
//!   the index made the file 23% larger and inserts 16% slower with
//!   12-character names, 84% and 26% with 40), `ts` the commit time in ms
//!   since the Unix epoch; `seq` is the commit order across rooms (the age
//!   limit deletes from its start) and the index `messages_by_room (room,
//!   id)` serves history pages and the count limit;
//! - `direct_messages (id, sender, recipient, text, ts)`, and `counters`,
//!   which keeps the last direct-message id.

mod checkpoint;
mod delivery;
mod lock;
mod read;
mod retention;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::describe_io;
use crate::log::{
    Deliver, Draft, LogError, LogFuture, MessageLog, Query, Receipt, Retention, RoomLog, receipt,
};
use crate::model::ChatMessage;
use checkpoint::Checkpointer;
use lock::DirLock;
use read::Readers;
use writer::{DeliverSlot, Failure, Request, Writer, WriterThread};

pub use lock::LOCK_FILE;
pub use schema::SCHEMA_VERSION;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "switchboard.db";

/// How hard a commit tries to reach the disk (`PRAGMA synchronous`, in WAL
/// mode).
///
/// The default is [`Durability::Normal`]: its commits cost no fsync, so an
/// acknowledgement waits for neither the disk nor its flush latency (which
/// ranges from ~0.2 ms on this project's VMs to 10 ms and more on other
/// disks), and a process crash, the common failure, loses nothing. Measured
/// at 10,000 messages/s on a shared 2-core VM: p99 acknowledgement 0.5-2.2
/// ms with `Normal`, 1.2-8.3 ms with `Full`; at full speed, in process,
/// ~310,000 messages/s with `Normal`, ~120,000-170,000 with `Full`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// A commit is written to the WAL but not synced: it survives the
    /// process crashing (even `kill -9`), but the last commits may be lost
    /// if the machine loses power or the kernel crashes, and their ids are
    /// then given again. The file stays consistent either way.
    #[default]
    Normal,
    /// Every commit is synced to disk (one fsync per batch) before it is
    /// acknowledged: it survives a power loss too.
    Full,
}

impl Durability {
    /// The `PRAGMA synchronous` value.
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// Where and how the SQLite log keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The data directory, created if missing: holds [`DATABASE_FILE`], its
    /// WAL files and [`LOCK_FILE`].
    pub dir: PathBuf,
    /// How durable a commit is before it is acknowledged.
    pub sync: Durability,
    /// How long history is kept.
    pub retention: Retention,
}

/// The message log kept in SQLite.
pub struct SqliteLog {
    writer: Arc<WriterThread>,
    /// The delivery task, awaited on close once the writer has stopped.
    delivery: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    closed: AtomicBool,
    deliver: DeliverSlot,
    failure: Failure,
    readers: Arc<Readers>,
}

impl SqliteLog {
    /// Opens the log in `options.dir`: creates the directory if missing,
    /// locks it, opens (or creates) and checks the database, migrates it and
    /// starts the writer thread.
    ///
    /// # Errors
    /// [`LogError::Open`] naming the directory when it cannot be created or
    /// written, or another switchboard uses it; naming the database file
    /// when it is not a database, is corrupt, or comes from a newer
    /// switchboard.
    pub fn open(options: SqliteOptions) -> Result<Self, LogError> {
        let dir = &options.dir;
        let dir_error = |reason: String| LogError::Open {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|err| {
            dir_error(format!(
                "cannot create the directory: {}",
                describe_io(&err)
            ))
        })?;
        let lock = DirLock::acquire(dir)?;
        let path = dir.join(DATABASE_FILE);
        let mut conn = schema::open_writer(&path, options.sync)?;
        let checkpointer = schema::open_checkpointer(&path)
            .map_err(io::Error::other)
            .and_then(|other| Checkpointer::start(other, &mut conn))
            .map_err(|err| LogError::Open {
                path: path.display().to_string(),
                reason: format!("cannot start the checkpointer: {err}"),
            })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            dir_error("the message log must be opened inside a tokio runtime".into())
        })?;
        let deliver = DeliverSlot::default();
        let failure = Failure::default();
        let (handoff, delivery) = delivery::start(&runtime, Arc::clone(&deliver));
        let writer = Writer::load(
            conn,
            options.retention,
            handoff,
            Arc::clone(&failure),
            checkpointer,
            lock,
        )
        .map_err(|err| LogError::Open {
            path: path.display().to_string(),
            reason: format!("cannot read the rooms and counters: {err}"),
        })?;
        let (requests, receiver) = sync_channel(writer::QUEUE);
        let thread = writer
            .spawn(receiver)
            .map_err(|err| dir_error(format!("cannot start the writer thread: {err}")))?;
        Ok(Self {
            writer: Arc::new(WriterThread::new(requests, thread)),
            delivery: Arc::new(std::sync::Mutex::new(Some(delivery))),
            closed: AtomicBool::new(false),
            deliver,
            failure,
            readers: Arc::new(Readers::new(path)),
        })
    }
}

impl MessageLog for SqliteLog {
    fn attach(&self, deliver: Arc<dyn Deliver>) {
        let _ = self.deliver.set(deliver);
    }

    fn append(&self, draft: Draft) -> Receipt {
        if self.closed.load(Ordering::Acquire) {
            return Receipt::ready(Err(LogError::Closed));
        }
        let (sender, receipt) = receipt();
        match self.writer.submit(Request::Append(draft, sender)) {
            Ok(()) => receipt,
            Err(TrySendError::Full(_)) => Receipt::ready(Err(LogError::Busy)),
            Err(TrySendError::Disconnected(_)) => Receipt::ready(Err(LogError::Closed)),
        }
    }

    fn read(&self, query: Query) -> LogFuture<Vec<Arc<ChatMessage>>> {
        self.readers.run(move |conn| read::page(conn, &query))
    }

    fn rooms(&self) -> LogFuture<Vec<RoomLog>> {
        self.readers.run(read::rooms)
    }

    fn health(&self) -> Result<(), LogError> {
        if let Some(reason) = writer::failure(&self.failure).clone() {
            return Err(LogError::Write(reason));
        }
        if self.closed.load(Ordering::Acquire) || !self.writer.is_running() {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    fn close(&self) -> LogFuture<()> {
        self.closed.store(true, Ordering::Release);
        let writer = Arc::clone(&self.writer);
        let delivery = self
            .delivery
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        Box::pin(async move {
            let closing_failed = |err: tokio::task::JoinError| {
                LogError::Write(format!("closing the message log failed: {err}"))
            };
            tokio::task::spawn_blocking(move || writer.stop())
                .await
                .map_err(closing_failed)??;
            // The writer passed its last batch on before it stopped.
            if let Some(delivery) = delivery {
                delivery.await.map_err(closing_failed)?;
            }
            Ok(())
        })
    }
}

/// `time` in whole milliseconds since the Unix epoch, as the `ts` columns
/// keep it (0 before the epoch).
fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

impl Drop for SqliteLog {
    /// Stops the writer as [`MessageLog::close`] does, waiting for it here:
    /// what was submitted is committed before the data directory is unlocked.
    fn drop(&mut self) {
        if let Err(err) = self.writer.stop() {
            tracing::error!("{err}");
        }
    }
}
