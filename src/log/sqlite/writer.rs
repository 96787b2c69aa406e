//! The writer thread: the one place ids are given and rows written.
//!
//! Appends arrive on a bounded channel. The writer takes one, then whatever
//! else is waiting (up to [`MAX_BATCH`]), gives the batch its ids and one
//! commit time, writes it in one transaction and commits: idle, a message
//! commits alone at once; under load, batches grow and one commit (one
//! fsync with `synchronous=FULL`) covers many messages. Only after the commit
//! does it pass the batch to the [delivery task](super::delivery), which
//! hands it to the hub's [`Deliver`](crate::log::Deliver) and then resolves
//! the receipts.
//!
//! A failed commit rolls the whole batch back: every receipt in it gets
//! [`LogError::Write`], none of its ids counts as given (nobody saw them, so
//! the next batch gives them again), and the log reports itself unhealthy
//! until a later commit succeeds. Between batches, when idle, it prunes
//! ([`retention`](super::retention)).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::log::sqlite::checkpoint::Checkpointer;
use crate::log::sqlite::delivery::{Batch, Handoff};
use crate::log::sqlite::lock::DirLock;
use crate::log::sqlite::retention::Pruner;
use crate::log::sqlite::unix_ms;
use crate::log::{Committed, Deliver, Draft, LogError, Retention, receipt};
use crate::model::{ChatMessage, DirectMessage, RoomName};

/// The most appends one transaction takes.
const MAX_BATCH: usize = 4096;

/// The most appends waiting for the writer; past this, appends are refused
/// with [`LogError::Busy`] rather than queued.
pub const QUEUE: usize = 16_384;

/// When the writer is never idle, it still prunes a step this often.
const PRUNE_WHEN_BUSY_EVERY: Duration = Duration::from_millis(100);

/// What the writer is asked to do.
pub enum Request {
    /// Commit a message and resolve its receipt.
    Append(Draft, receipt::Sender),
    /// Something to do between two batches.
    Control(Control),
}

/// What the writer does between two batches, after committing what came
/// before.
pub enum Control {
    /// Stop.
    Close,
    /// Run a function on the writer's connection.
    #[cfg(test)]
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// The hub to deliver to, once attached.
pub type DeliverSlot = Arc<OnceLock<Arc<dyn Deliver>>>;

/// Why the last commit failed, while no later one has succeeded.
pub type Failure = Arc<Mutex<Option<String>>>;

/// The failure, even if a panicking thread poisoned its lock.
pub fn failure(failure: &Failure) -> MutexGuard<'_, Option<String>> {
    failure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A room as the writer knows it.
#[derive(Clone, Copy, Debug)]
struct Room {
    /// Its key in the `rooms` table.
    key: i64,
    /// The last id given in it.
    last_id: u64,
}

/// The writer thread's state: its connection and every counter it gives.
pub struct Writer {
    conn: Connection,
    rooms: HashMap<RoomName, Room>,
    last_direct_id: u64,
    /// The latest commit time given, in ms since the epoch: the next one is
    /// never earlier, so `ts` grows with the id even if the clock steps back.
    last_ts: i64,
    pruner: Pruner,
    last_prune: Instant,
    handoff: Handoff,
    failure: Failure,
    /// Whether `failure` is set (so a healthy commit does not lock it).
    failing: bool,
    /// The checkpointer thread, stopped once `conn` is closed.
    checkpointer: Checkpointer,
    /// The data directory's lock, held as long as the writer runs.
    lock: DirLock,
}

/// What a committed batch changed, applied to the writer once it committed.
struct Changes {
    committed: Vec<Committed>,
    rooms: HashMap<RoomName, Room>,
    last_direct_id: u64,
    ts: i64,
}

impl Writer {
    /// A writer over `conn`, a database the schema module opened, loading
    /// the rooms' last ids, the last direct-message id and the latest time.
    ///
    /// # Errors
    /// The SQLite error when the counters cannot be read.
    pub fn load(
        conn: Connection,
        retention: Retention,
        handoff: Handoff,
        failure: Failure,
        checkpointer: Checkpointer,
        lock: DirLock,
    ) -> rusqlite::Result<Self> {
        let mut rooms = HashMap::new();
        {
            let mut statement = conn.prepare("SELECT key, name, last_id FROM rooms")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let name: String = row.get(1)?;
                let room = RoomName::parse(&name).map_err(|err| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        err.into(),
                    )
                })?;
                rooms.insert(
                    room,
                    Room {
                        key: row.get(0)?,
                        last_id: row.get(2)?,
                    },
                );
            }
        }
        let last_direct_id = conn.query_row(
            "SELECT value FROM counters WHERE name = 'direct_messages'",
            [],
            |row| row.get(0),
        )?;
        let newest = |sql: &str| -> rusqlite::Result<i64> {
            Ok(conn
                .query_row(sql, [], |row| row.get(0))
                .optional()?
                .unwrap_or(0))
        };
        let last_ts = newest("SELECT ts FROM messages ORDER BY seq DESC LIMIT 1")?.max(newest(
            "SELECT ts FROM direct_messages ORDER BY id DESC LIMIT 1",
        )?);
        let pruner = Pruner::new(retention, rooms.values().map(|r| (r.key, r.last_id)));
        Ok(Self {
            conn,
            rooms,
            last_direct_id,
            last_ts,
            pruner,
            last_prune: Instant::now(),
            handoff,
            failure,
            failing: false,
            checkpointer,
            lock,
        })
    }

    /// Starts the writer on its own thread, taking requests from `requests`.
    ///
    /// # Errors
    /// The I/O error when the thread cannot be started.
    pub fn spawn(self, requests: Receiver<Request>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || self.run(&requests))
    }

    /// Serves `requests`, then closes the database and its checkpointer
    /// before it unlocks the directory.
    fn run(mut self, requests: &Receiver<Request>) {
        self.serve(requests);
        let Self {
            conn,
            checkpointer,
            lock,
            ..
        } = self;
        // Closing the connection drops its WAL hook, which stops the
        // checkpointer.
        drop(conn);
        checkpointer.join();
        drop(lock);
    }

    /// Takes batches until asked to close or every sender is gone.
    fn serve(&mut self, requests: &Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut under_load = false;
        while let Some(first) = self.next_request(requests) {
            let mut control = None;
            match first {
                Request::Append(draft, sender) => batch.push((draft, sender)),
                Request::Control(first) => control = Some(first),
            }
            // Under load (the last batch was more than one message), let
            // the threads that submit run first: woken by the first message,
            // the writer would otherwise take the core from them at once and
            // commit batches of ~11 messages where ~98 were on their way (100
            // publishers, server on one core: 65.7k against 70.3k acked/s,
            // 15.0 against 14.1 µs of CPU per message, by `bench publish`).
            // A lone message is committed at once: yielding to a runtime busy
            // with a fan-out would hold it back by a scheduler tick.
            if under_load {
                std::thread::yield_now();
            }
            while control.is_none() && batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(Request::Append(draft, sender)) => batch.push((draft, sender)),
                    Ok(Request::Control(next)) => control = Some(next),
                    Err(_) => break,
                }
            }
            under_load = batch.len() > 1;
            if !batch.is_empty() {
                self.write(&mut batch);
            }
            if let Some(control) = control
                && !self.obey(control)
            {
                return;
            }
            let now = Instant::now();
            if self.pruner.wait(now) == Some(Duration::ZERO)
                && now.duration_since(self.last_prune) >= PRUNE_WHEN_BUSY_EVERY
            {
                self.prune();
            }
        }
    }

    /// The next request, pruning while none comes and there is pruning to
    /// do; `None` once every sender is gone.
    fn next_request(&mut self, requests: &Receiver<Request>) -> Option<Request> {
        loop {
            let received = match self.pruner.wait(Instant::now()) {
                None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(Duration::ZERO) => requests.try_recv().map_err(|err| match err {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                }),
                Some(wait) => requests.recv_timeout(wait),
            };
            match received {
                Ok(request) => return Some(request),
                Err(RecvTimeoutError::Timeout) => self.prune(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Does what `control` asks; `false` when the writer is to stop.
    fn obey(&mut self, control: Control) -> bool {
        match control {
            Control::Close => false,
            #[cfg(test)]
            Control::Run(function) => {
                function(&mut self.conn);
                true
            }
        }
    }

    /// One retention step; a failure is logged and retried later.
    fn prune(&mut self) {
        self.last_prune = Instant::now();
        if let Err(err) = self
            .pruner
            .step(&self.conn, SystemTime::now(), self.last_prune)
        {
            tracing::warn!("pruning old messages failed (retrying later): {err}");
        }
    }

    /// Commits `batch` (emptying it), delivers it and resolves its receipts.
    fn write(&mut self, batch: &mut Vec<(Draft, receipt::Sender)>) {
        match self.store(batch.iter().map(|(draft, _)| draft)) {
            Ok(changes) => {
                for room in changes.rooms.values() {
                    self.pruner.touched(room.key, room.last_id);
                }
                self.rooms.extend(changes.rooms);
                self.last_direct_id = changes.last_direct_id;
                self.last_ts = changes.ts;
                if self.failing {
                    self.failing = false;
                    *failure(&self.failure) = None;
                    tracing::info!("the message log commits again");
                }
                self.handoff.pass(Batch {
                    committed: changes.committed,
                    receipts: batch.drain(..).map(|(_, sender)| sender).collect(),
                });
            }
            Err(err) => {
                let reason = err.to_string();
                if !self.failing {
                    tracing::error!(
                        "the message log cannot commit, messages are refused until it can: {reason}"
                    );
                }
                self.failing = true;
                *failure(&self.failure) = Some(reason.clone());
                for (_, sender) in batch.drain(..) {
                    sender.send(Err(LogError::Write(reason.clone())));
                }
            }
        }
    }

    /// Writes `drafts` in one transaction with the next ids and one commit
    /// time; the writer's counters change only once the caller applies the
    /// returned changes (so a rolled-back batch leaves them as they were).
    fn store<'a>(
        &mut self,
        drafts: impl ExactSizeIterator<Item = &'a Draft>,
    ) -> rusqlite::Result<Changes> {
        let ts = unix_ms(SystemTime::now()).max(self.last_ts);
        let time = UNIX_EPOCH + Duration::from_millis(ts.unsigned_abs());
        let mut changes = Changes {
            committed: Vec::with_capacity(drafts.len()),
            rooms: HashMap::new(),
            last_direct_id: self.last_direct_id,
            ts,
        };
        // Dropped without commit (an error below), it rolls back.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert_message = tx.prepare_cached(
                "INSERT INTO messages (room, id, sender, text, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut insert_direct = tx.prepare_cached(
                "INSERT INTO direct_messages (id, sender, recipient, text, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for draft in drafts {
                let committed = match draft {
                    Draft::Room { room, from, text } => {
                        let entry = match changes.rooms.entry(room.clone()) {
                            Entry::Occupied(entry) => entry.into_mut(),
                            Entry::Vacant(entry) => match self.rooms.get(room) {
                                Some(known) => entry.insert(*known),
                                None => entry.insert(create_room(&tx, room)?),
                            },
                        };
                        entry.last_id += 1;
                        let (key, id) = (entry.key, entry.last_id);
                        insert_message.execute(params![key, id, from.as_str(), &**text, ts])?;
                        Committed::Room(Arc::new(ChatMessage {
                            room: room.clone(),
                            id,
                            from: from.clone(),
                            text: Arc::clone(text),
                            ts: time,
                        }))
                    }
                    Draft::Direct { from, to, text } => {
                        changes.last_direct_id += 1;
                        let id = changes.last_direct_id;
                        insert_direct.execute(params![
                            id,
                            from.as_str(),
                            to.as_str(),
                            &**text,
                            ts
                        ])?;
                        Committed::Direct(Arc::new(DirectMessage {
                            id,
                            from: from.clone(),
                            to: to.clone(),
                            text: Arc::clone(text),
                            ts: time,
                        }))
                    }
                };
                changes.committed.push(committed);
            }
        }
        for room in changes.rooms.values() {
            tx.prepare_cached("UPDATE rooms SET last_id = ?1 WHERE key = ?2")?
                .execute(params![room.last_id, room.key])?;
        }
        if changes.last_direct_id != self.last_direct_id {
            tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'direct_messages'")?
                .execute([changes.last_direct_id])?;
        }
        tx.commit()?;
        Ok(changes)
    }
}

/// Adds `room` to the `rooms` table; its key, and no id given yet.
fn create_room(conn: &Connection, room: &RoomName) -> rusqlite::Result<Room> {
    conn.prepare_cached("INSERT INTO rooms (name, last_id) VALUES (?1, 0)")?
        .execute([room.as_str()])?;
    Ok(Room {
        key: conn.last_insert_rowid(),
        last_id: 0,
    })
}

/// The handle on the writer thread that stops it.
pub struct WriterThread {
    requests: SyncSender<Request>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WriterThread {
    /// The handle on `thread`, which takes `requests`.
    pub fn new(requests: SyncSender<Request>, thread: JoinHandle<()>) -> Self {
        Self {
            requests,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `request` for the writer without waiting.
    ///
    /// # Errors
    /// The request back when the queue is full or the writer has stopped.
    pub fn submit(&self, request: Request) -> Result<(), TrySendError<Request>> {
        self.requests.try_send(request)
    }

    /// Whether the thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// Asks the writer to commit what it was sent and stop, and waits until
    /// it has; blocks, so async code calls it from a blocking task. A second
    /// call waits for the first.
    ///
    /// # Errors
    /// [`LogError::Write`] when the writer thread panicked.
    pub fn stop(&self) -> Result<(), LogError> {
        // The writer may be gone already: then nothing is left to commit.
        let _ = self.requests.send(Request::Control(Control::Close));
        let mut thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(LogError::Write(
                "the message log's writer thread stopped unexpectedly".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}
