//! The message log kept in Redis (`serve --redis URL`): any number of
//! switchboard processes share ids, history and delivery through it
//! (docs/PROTOCOL.md 5.6, docs/ARCHITECTURE.md "Several nodes").
//!
//! An append runs one Lua script ([`store`]): it gives the room's next id,
//! adds the message to the room's stream and publishes it, atomically, so
//! every node sees the same ids in the same order. A node delivers what it
//! hears on the channel ([`subscriber`]), room by room in id order, filling
//! any gap from the stream first; its own messages come back the same way,
//! and their senders are acknowledged once they are delivered ([`cursor`]).
//! While Redis is unreachable, appends fail (never an ack for a message Redis
//! does not have) and `health` says so; the subscriber reconnects with
//! backoff and catches up from the streams.

mod cursor;
mod store;
mod subscriber;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::{
    Committed, Deliver, Draft, LogError, LogFuture, MessageLog, Query, Receipt, Retention, RoomLog,
    receipt,
};
use crate::model::ChatMessage;
use cursor::{Cursors, Sequence};
use store::{AppendError, Scripts};

/// Appends waiting to be sent to Redis; past this, appends are refused
/// with [`LogError::Busy`].
const QUEUE: usize = 16_384;

/// The most appends one pipeline sends.
const PIPELINE: usize = 512;

/// Pipelines sent to Redis and not yet answered, at most.
const PIPELINES: usize = 16;

/// How long Redis may take to answer before a request counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection attempt to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the first appends wait for the subscriber's first subscription
/// (so that even they are delivered before they are acknowledged).
const FIRST_SUBSCRIPTION: Duration = Duration::from_secs(5);

/// Where and how the Redis log keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]HOST:PORT[/DB]`, or `rediss://` for TLS.
    pub url: String,
    /// How long history is kept.
    pub retention: Retention,
}

/// The message log kept in Redis.
pub struct RedisLog {
    shared: Arc<Shared>,
    /// Where appends go; taken on close, which ends the submitter.
    appends: Mutex<Option<mpsc::Sender<(Draft, receipt::Sender)>>>,
    /// The submitter, the subscriber and the pruner.
    tasks: TaskTracker,
    /// Stops the subscriber and the pruner.
    stop: CancellationToken,
    closed: AtomicBool,
}

/// What the engine's tasks share.
struct Shared {
    client: redis::Client,
    connection: ConnectionManager,
    scripts: Scripts,
    /// The epoch this node writes under (see [`store`]).
    epoch: Mutex<String>,
    /// Held while this node adopts a new epoch, so it does so once.
    adopting: tokio::sync::Mutex<()>,
    cursors: Mutex<Cursors>,
    /// Set once the subscriber has subscribed and caught up the first time.
    subscribed_once: tokio::sync::watch::Sender<bool>,
    deliver: OnceLock<Arc<dyn Deliver>>,
    retention: Retention,
    /// Why the last append failed, while no later one has succeeded.
    failure: Mutex<Option<String>>,
    /// The URL without its password, for messages.
    target: String,
}

impl RedisLog {
    /// Connects to Redis at `options.url` and starts the submitter. The
    /// subscriber starts once the hub is attached.
    ///
    /// # Errors
    /// [`LogError::Open`] naming the URL when it is malformed or Redis cannot
    /// be reached.
    pub async fn open(options: RedisOptions) -> Result<Self, LogError> {
        let target = redacted(&options.url);
        let open_error = |reason: String| LogError::Open {
            path: target.clone(),
            reason,
        };
        let client = redis::Client::open(options.url.as_str())
            .map_err(|err| open_error(format!("not a Redis URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|err| open_error(format!("cannot connect: {err}")))?;
        let scripts = Scripts::default();
        scripts
            .load(&mut connection)
            .await
            .map_err(|err| open_error(format!("cannot load the scripts: {err}")))?;
        let epoch = scripts
            .establish_epoch(&mut connection, &new_epoch())
            .await
            .map_err(|err| open_error(format!("cannot read the epoch: {err}")))?;
        let direct = store::last_direct(&mut connection)
            .await
            .map_err(|err| open_error(format!("cannot read the counters: {err}")))?;
        let shared = Arc::new(Shared {
            client,
            connection,
            scripts,
            epoch: Mutex::new(epoch),
            adopting: tokio::sync::Mutex::new(()),
            cursors: Mutex::new(Cursors::starting_at([], direct)),
            subscribed_once: tokio::sync::watch::Sender::new(false),
            deliver: OnceLock::new(),
            retention: options.retention,
            failure: Mutex::new(None),
            target,
        });
        let (appends, drafts) = mpsc::channel(QUEUE);
        let tasks = TaskTracker::new();
        tasks.spawn(submit(Arc::clone(&shared), drafts));
        Ok(Self {
            shared,
            appends: Mutex::new(Some(appends)),
            tasks,
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
        })
    }
}

impl RedisLog {
    /// The Redis this log is in, as named in messages (without a password).
    pub fn target(&self) -> &str {
        &self.shared.target
    }
}

impl MessageLog for RedisLog {
    fn attach(&self, deliver: Arc<dyn Deliver>) {
        if self.shared.deliver.set(deliver).is_err() {
            return;
        }
        self.tasks
            .spawn(subscriber::run(Arc::clone(&self.shared), self.stop.clone()));
        if let Some(keep_for) = self.shared.retention.keep_for {
            self.tasks
                .spawn(prune(Arc::clone(&self.shared), keep_for, self.stop.clone()));
        }
    }

    fn append(&self, draft: Draft) -> Receipt {
        let appends = lock(&self.appends).clone();
        let Some(appends) = appends else {
            return Receipt::ready(Err(LogError::Closed));
        };
        let (sender, receipt) = receipt::receipt();
        match appends.try_send((draft, sender)) {
            Ok(()) => receipt,
            Err(mpsc::error::TrySendError::Full(_)) => Receipt::ready(Err(LogError::Busy)),
            Err(mpsc::error::TrySendError::Closed(_)) => Receipt::ready(Err(LogError::Closed)),
        }
    }

    fn read(&self, query: Query) -> LogFuture<Vec<Arc<ChatMessage>>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut connection = shared.connection.clone();
            let page = match &query {
                Query::After {
                    room,
                    after,
                    up_to,
                    limit,
                } => store::room_range(&mut connection, room, *after, *up_to, *limit).await,
                Query::Latest { room, limit } => {
                    store::room_latest(&mut connection, room, *limit).await
                }
            };
            page.map_err(|err| LogError::Read(format!("Redis at {}: {err}", shared.target)))
        })
    }

    /// The rooms with history; delivery starts from these last ids (the hub
    /// starts from the same list).
    fn rooms(&self) -> LogFuture<Vec<RoomLog>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut connection = shared.connection.clone();
            let rooms = store::rooms(&mut connection)
                .await
                .map_err(|err| LogError::Read(format!("Redis at {}: {err}", shared.target)))?;
            let mut cursors = lock(&shared.cursors);
            for (room, last_id) in &rooms {
                cursors.delivered(Sequence::Room(room), *last_id);
            }
            Ok(rooms
                .into_iter()
                .map(|(room, last_id)| RoomLog { room, last_id })
                .collect())
        })
    }

    fn health(&self) -> Result<(), LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        if let Some(reason) = lock(&self.shared.failure).clone() {
            return Err(LogError::Write(reason));
        }
        if !lock(&self.shared.cursors).subscribed() {
            return Err(LogError::Write(format!(
                "not connected to Redis at {}",
                self.shared.target
            )));
        }
        Ok(())
    }

    fn close(&self) -> LogFuture<()> {
        self.closed.store(true, Ordering::Release);
        // Dropping the sender ends the submitter once what was sent is answered.
        lock(&self.appends).take();
        let tasks = self.tasks.clone();
        let stop = self.stop.clone();
        Box::pin(async move {
            tasks.close();
            // The subscriber stays until the submitter is done, so the last
            // messages are delivered before it stops.
            let submitted = tasks.wait();
            tokio::pin!(submitted);
            tokio::select! {
                () = &mut submitted => {}
                () = tokio::time::sleep(RESPONSE_TIMEOUT) => {}
            }
            stop.cancel();
            submitted.await;
            Ok(())
        })
    }
}

impl Drop for RedisLog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sends appends to Redis as they come: whatever is waiting goes out as one
/// pipeline, and a pipeline is sent before the next one is taken, so
/// messages run in Redis in the order they were submitted. Several
/// pipelines may wait for their answers at once.
async fn submit(shared: Arc<Shared>, mut drafts: mpsc::Receiver<(Draft, receipt::Sender)>) {
    let mut subscribed = shared.subscribed_once.subscribe();
    let _ = tokio::time::timeout(FIRST_SUBSCRIPTION, subscribed.wait_for(|done| *done)).await;
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            first = drafts.recv(), if open && in_flight.len() < PIPELINES => match first {
                Some(first) => {
                    let mut batch = vec![first];
                    while batch.len() < PIPELINE {
                        match drafts.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let mut pipeline = Box::pin(commit(Arc::clone(&shared), batch));
                    // Polled once here, which sends it, before anything else is taken.
                    if futures_util::poll!(pipeline.as_mut()).is_pending() {
                        in_flight.push(pipeline);
                    }
                }
                None => open = false,
            },
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

/// Commits `batch` and settles each receipt: once its message is delivered
/// here, or at once with the error.
async fn commit(shared: Arc<Shared>, batch: Vec<(Draft, receipt::Sender)>) {
    let started = Instant::now();
    let drafts: Vec<&Draft> = batch.iter().map(|(draft, _)| draft).collect();
    let outcome = append_all(&shared, &drafts).await;
    metrics::histogram!("switchboard_redis_rtt_seconds").record(started.elapsed().as_secs_f64());
    let outcomes = match outcome {
        Ok(outcomes) => outcomes,
        Err(err) => vec![Err(err.to_string()); batch.len()],
    };
    for ((_, sender), outcome) in batch.into_iter().zip(outcomes) {
        match outcome {
            Ok(message) => {
                if lock(&shared.failure).take().is_some() {
                    tracing::info!("Redis at {} takes messages again", shared.target);
                }
                let due = {
                    let (sequence, id) = sequence_of(&message);
                    lock(&shared.cursors).committed(sequence, id, sender, message.clone())
                };
                if let Some((sender, message)) = due {
                    sender.send(Ok(message));
                }
            }
            Err(err) => {
                let reason = format!("Redis at {}: {err}", shared.target);
                if lock(&shared.failure).replace(reason.clone()).is_none() {
                    tracing::error!("messages are refused until Redis takes them again: {reason}");
                }
                sender.send(Err(LogError::Write(reason)));
            }
        }
    }
}

/// Runs the append script for each of `drafts`, in order; the message each
/// became, or why it did not. Redis having lost its data (a new epoch) or
/// its scripts (a restart) is mended, and those appends are sent again, in
/// their order.
async fn append_all(
    shared: &Shared,
    drafts: &[&Draft],
) -> Result<Vec<Result<Committed, String>>, redis::RedisError> {
    let mut connection = shared.connection.clone();
    let keep = shared.retention.keep_messages;
    let mut outcomes: Vec<Option<Result<Committed, String>>> = vec![None; drafts.len()];
    let mut pending: Vec<usize> = (0..drafts.len()).collect();
    for _ in 0..3 {
        let epoch = lock(&shared.epoch).clone();
        let sent: Vec<&Draft> = pending.iter().map(|&at| drafts[at]).collect();
        let replies = shared
            .scripts
            .append_all(&mut connection, &epoch, &sent, keep)
            .await?;
        let (mut new_epoch, mut reload, mut again) = (false, false, Vec::new());
        for (&at, reply) in pending.iter().zip(replies) {
            match reply {
                Ok(message) => outcomes[at] = Some(Ok(message)),
                Err(AppendError::EpochChanged) => {
                    new_epoch = true;
                    again.push(at);
                }
                Err(AppendError::NoScript) => {
                    reload = true;
                    again.push(at);
                }
                Err(AppendError::Redis(err)) => outcomes[at] = Some(Err(err.to_string())),
            }
        }
        if again.is_empty() {
            break;
        }
        if reload {
            shared.scripts.load(&mut connection).await?;
        }
        if new_epoch {
            adopt_epoch(shared, &epoch).await?;
        }
        pending = again;
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err("Redis's data keeps changing".into())))
        .collect())
}

/// Redis's data is not the epoch `seen`: it restarted without it (or it was
/// flushed). Takes the epoch in force (setting one if there is none) and
/// moves the id counters up to what this node has delivered, so ids go on
/// above them instead of starting again. Clients that ask for history from
/// before are told it is lost (the gap shows in the replay).
async fn adopt_epoch(shared: &Shared, seen: &str) -> Result<(), redis::RedisError> {
    let _adopting = shared.adopting.lock().await;
    if *lock(&shared.epoch) != seen {
        // Adopted meanwhile by another append.
        return Ok(());
    }
    let mut connection = shared.connection.clone();
    let epoch = shared
        .scripts
        .establish_epoch(&mut connection, &new_epoch())
        .await?;
    let (rooms, direct) = {
        let cursors = lock(&shared.cursors);
        let rooms: Vec<_> = cursors.rooms().map(|(r, id)| (r.clone(), id)).collect();
        (rooms, cursors.direct())
    };
    shared
        .scripts
        .reseed(&mut connection, &rooms, direct)
        .await?;
    shared.scripts.load(&mut connection).await?;
    tracing::warn!(
        "Redis at {} lost its data (its epoch changed): ids go on above those this node had seen",
        shared.target
    );
    *lock(&shared.epoch) = epoch;
    Ok(())
}

/// Deletes messages older than `keep_for` from every room this node knows,
/// a page at a time, now and then.
async fn prune(shared: Arc<Shared>, keep_for: Duration, stop: CancellationToken) {
    let every = (keep_for / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(cutoff) = SystemTime::now().checked_sub(keep_for) else {
            continue;
        };
        let rooms: Vec<_> = lock(&shared.cursors)
            .rooms()
            .map(|(r, _)| r.clone())
            .collect();
        let mut connection = shared.connection.clone();
        for room in rooms {
            if let Err(err) = store::prune_older_than(&mut connection, &room, cutoff).await {
                tracing::warn!("pruning old messages in Redis failed (retrying later): {err}");
                break;
            }
        }
    }
}

/// The sequence a committed message belongs to, and its id.
fn sequence_of(message: &Committed) -> (Sequence<'_>, u64) {
    match message {
        Committed::Room(m) => (Sequence::Room(&m.room), m.id),
        Committed::Direct(m) => (Sequence::Direct, m.id),
    }
}

/// A fresh epoch name: the time and the process, unique enough to tell one
/// set of data from the next.
fn new_epoch() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_string(),
    }
}

/// A lock, even if a panicking thread poisoned it (every section leaves
/// its data consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://***@10.0.0.1:6379/2"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
