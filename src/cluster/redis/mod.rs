//! The directory kept in Redis (`serve --redis URL`): nicks unique across
//! every node, rooms' members on every node, and presence notices between
//! them ([`store`] says what is kept where).
//!
//! Questions (`claim`, `who`, `owner`, member counts) go to Redis and wait
//! for the answer. Changes (a join, a part, a nick given or let go) are sent
//! in order by one writer task, in pipelines, without making the connection
//! that caused them wait. A heartbeat keeps this node alive in Redis (a dead
//! node's nicks free themselves within [`NODE_TTL`]), sweeps nodes that died,
//! and publishes this node's state again when Redis lost it. A subscriber
//! passes other nodes' notices to the hub.

mod store;

use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Directory, DirectoryError, DirectoryFuture, Member, Notices, Snapshot};
use crate::log::redis::redacted;
use crate::model::{Nick, RoomName};
use store::{Change, Scripts};

/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// How often the heartbeat runs.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// How many guest numbers a node takes at once.
const GUEST_BLOCK: u64 = 10_000;

/// Changes waiting for the writer; past this they are dropped and the whole
/// state is published again once Redis keeps up.
const CHANGES: usize = 65_536;

/// The most changes one pipeline sends.
const PIPELINE: usize = 512;

/// How long a connection attempt or a request may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The function that lists this node's members and nicks.
type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The directory in Redis.
pub struct RedisDirectory {
    shared: Arc<Shared>,
    tasks: TaskTracker,
    stop: CancellationToken,
    /// Ends the writer once taken (on close).
    changes: Mutex<Option<mpsc::Sender<Change>>>,
    /// The writer's end, until the directory is attached.
    pending: Mutex<Option<mpsc::Receiver<Change>>>,
}

/// What the directory's tasks share.
struct Shared {
    client: redis::Client,
    connection: ConnectionManager,
    scripts: Scripts,
    node: String,
    /// Guest numbers this node may give, block by block.
    guests: Mutex<VecDeque<RangeInclusive<u64>>>,
    notices: OnceLock<Arc<dyn Notices>>,
    snapshot: OnceLock<SnapshotFn>,
    /// Whether the last heartbeat reached Redis.
    reachable: AtomicBool,
    /// Changes were dropped: publish the whole state again.
    stale: AtomicBool,
    target: String,
}

impl RedisDirectory {
    /// Connects to Redis at `url` as node `node`.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis cannot be reached.
    pub async fn open(url: &str, node: &str) -> Result<Self, DirectoryError> {
        let target = &redacted(url);
        let unavailable = |err: redis::RedisError| {
            DirectoryError::Unavailable(format!("Redis at {target}: {err}"))
        };
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let scripts = Scripts::default();
        scripts.load(&mut connection).await.map_err(unavailable)?;
        store::heartbeat(&mut connection, node, NODE_TTL.as_secs())
            .await
            .map_err(unavailable)?;
        let last = store::guest_block(&mut connection, GUEST_BLOCK)
            .await
            .map_err(unavailable)?;
        let (changes, pending) = mpsc::channel(CHANGES);
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                connection,
                scripts,
                node: node.to_string(),
                guests: Mutex::new(VecDeque::from([last + 1 - GUEST_BLOCK..=last])),
                notices: OnceLock::new(),
                snapshot: OnceLock::new(),
                reachable: AtomicBool::new(true),
                stale: AtomicBool::new(false),
                target: target.to_string(),
            }),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            changes: Mutex::new(Some(changes)),
            pending: Mutex::new(Some(pending)),
        })
    }

    /// Queues `change` for the writer; when too many wait, drops it and
    /// marks the state for publishing again.
    fn send(&self, change: Change) {
        let sent = lock(&self.changes)
            .as_ref()
            .is_some_and(|changes| changes.try_send(change).is_ok());
        if !sent {
            self.shared.stale.store(true, Ordering::Release);
        }
    }
}

impl Directory for RedisDirectory {
    fn attach(&self, notices: Arc<dyn Notices>, snapshot: SnapshotFn) {
        if self.shared.notices.set(notices).is_err() {
            return;
        }
        let _ = self.shared.snapshot.set(snapshot);
        if let Some(changes) = lock(&self.pending).take() {
            self.tasks.spawn(write(Arc::clone(&self.shared), changes));
        }
        self.tasks
            .spawn(heartbeat(Arc::clone(&self.shared), self.stop.clone()));
        self.tasks
            .spawn(listen(Arc::clone(&self.shared), self.stop.clone()));
    }

    fn guest_number(&self) -> u64 {
        let mut guests = lock(&self.shared.guests);
        loop {
            let Some(block) = guests.front_mut() else {
                // Every block is used up before the heartbeat took the next
                // one: go on past the last (a block is 10,000 numbers, so
                // this takes thousands of connections in a few seconds).
                tracing::warn!("guest numbers ran out before the next block came");
                return u64::MAX / 2;
            };
            if let Some(number) = block.next() {
                return number;
            }
            guests.pop_front();
        }
    }

    fn claim(&self, nick: &Nick) -> DirectoryFuture<()> {
        let shared = Arc::clone(&self.shared);
        let nick = nick.clone();
        Box::pin(async move {
            let mut connection = shared.connection.clone();
            let claimed = shared
                .scripts
                .claim(&mut connection, &shared.node, &nick)
                .await
                .map_err(|err| shared.unavailable(&err))?;
            if claimed {
                Ok(())
            } else {
                Err(DirectoryError::Taken(nick))
            }
        })
    }

    fn has(&self, nick: &Nick) {
        self.send(Change::Has(nick.clone()));
    }

    fn release(&self, nick: &Nick) {
        self.send(Change::Release(nick.clone()));
    }

    fn joined(&self, member: Member, nick: &Nick, room: &RoomName) {
        self.send(Change::Joined(member, nick.clone(), room.clone()));
    }

    fn parted(&self, member: Member, nick: &Nick, room: &RoomName) {
        self.send(Change::Parted(member, nick.clone(), room.clone()));
    }

    fn renamed(&self, member: Member, old: &Nick, new: &Nick, rooms: &[RoomName]) {
        self.send(Change::Renamed(
            member,
            old.clone(),
            new.clone(),
            rooms.to_vec(),
        ));
    }

    fn who(&self, room: &RoomName) -> DirectoryFuture<Vec<Nick>> {
        let shared = Arc::clone(&self.shared);
        let room = room.clone();
        Box::pin(async move {
            let mut connection = shared.connection.clone();
            let mut nicks = shared
                .scripts
                .who(&mut connection, &room)
                .await
                .map_err(|err| shared.unavailable(&err))?;
            nicks.sort_by_key(Nick::key);
            Ok(nicks)
        })
    }

    fn member_counts(&self, rooms: Vec<RoomName>) -> DirectoryFuture<HashMap<RoomName, usize>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut connection = shared.connection.clone();
            let counts = store::member_counts(&mut connection, &rooms)
                .await
                .map_err(|err| shared.unavailable(&err))?;
            Ok(rooms.into_iter().zip(counts).collect())
        })
    }

    fn owner(&self, nick: &Nick) -> DirectoryFuture<Option<Nick>> {
        let shared = Arc::clone(&self.shared);
        let nick = nick.clone();
        Box::pin(async move {
            let mut connection = shared.connection.clone();
            shared
                .scripts
                .owner(&mut connection, &nick)
                .await
                .map_err(|err| shared.unavailable(&err))
        })
    }

    fn health(&self) -> Result<(), DirectoryError> {
        if self.shared.reachable.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(DirectoryError::Unavailable(format!(
                "Redis at {} is unreachable",
                self.shared.target
            )))
        }
    }

    fn close(&self) -> DirectoryFuture<()> {
        lock(&self.changes).take();
        let (shared, tasks, stop) = (
            Arc::clone(&self.shared),
            self.tasks.clone(),
            self.stop.clone(),
        );
        Box::pin(async move {
            stop.cancel();
            tasks.close();
            tasks.wait().await;
            let mut connection = shared.connection.clone();
            shared
                .scripts
                .forget(&mut connection, &shared.node)
                .await
                .map_err(|err| shared.unavailable(&err))?;
            redis::cmd("DEL")
                .arg(store::node_key(&shared.node))
                .query_async::<()>(&mut connection)
                .await
                .map_err(|err| shared.unavailable(&err))
        })
    }
}

impl Drop for RedisDirectory {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    /// The error for a request Redis did not answer.
    fn unavailable(&self, err: &redis::RedisError) -> DirectoryError {
        DirectoryError::Unavailable(format!("Redis at {}: {err}", self.target))
    }
}

/// Sends changes to Redis in the order they happened, a pipeline at a time.
/// A pipeline that fails marks the state for publishing again.
async fn write(shared: Arc<Shared>, mut changes: mpsc::Receiver<Change>) {
    let mut connection = shared.connection.clone();
    while let Some(first) = changes.recv().await {
        let mut pipeline = redis::pipe();
        shared.scripts.add(&mut pipeline, &shared.node, &first);
        let mut taken = 1;
        while taken < PIPELINE {
            match changes.try_recv() {
                Ok(change) => shared.scripts.add(&mut pipeline, &shared.node, &change),
                Err(_) => break,
            }
            taken += 1;
        }
        if let Err(err) = pipeline.query_async::<()>(&mut connection).await {
            tracing::warn!(
                "the cluster directory missed changes ({err}); it will publish them again"
            );
            shared.stale.store(true, Ordering::Release);
        }
    }
}

/// Keeps this node alive in Redis, takes guest numbers ahead, sweeps dead
/// nodes, and publishes this node's state again when Redis lost it.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut connection = shared.connection.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
        match beat(&shared, &mut connection).await {
            Ok(()) => {
                if !shared.reachable.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        "the cluster directory reaches Redis at {} again",
                        shared.target
                    );
                }
            }
            Err(err) => {
                if shared.reachable.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        "the cluster directory cannot reach Redis at {}: {err}",
                        shared.target
                    );
                }
                shared.stale.store(true, Ordering::Release);
            }
        }
    }
}

/// One heartbeat.
async fn beat(
    shared: &Shared,
    connection: &mut ConnectionManager,
) -> Result<(), redis::RedisError> {
    let kept = store::heartbeat(connection, &shared.node, NODE_TTL.as_secs()).await?;
    if !kept || shared.stale.swap(false, Ordering::AcqRel) {
        shared.scripts.load(connection).await?;
        republish(shared, connection).await?;
    }
    for dead in store::dead_nodes(connection).await? {
        tracing::info!("node {dead} stopped answering: its nicks and memberships are let go");
        shared.scripts.forget(connection, &dead).await?;
    }
    let left: u64 = lock(&shared.guests)
        .iter()
        .filter(|block| !block.is_empty())
        .map(|block| block.end() - block.start() + 1)
        .sum();
    let running_low = left < GUEST_BLOCK / 2;
    if running_low {
        let last = store::guest_block(connection, GUEST_BLOCK).await?;
        lock(&shared.guests).push_back(last + 1 - GUEST_BLOCK..=last);
    }
    Ok(())
}

/// Publishes this node's nicks and memberships again (Redis lost them, or
/// changes were dropped).
async fn republish(
    shared: &Shared,
    connection: &mut ConnectionManager,
) -> Result<(), redis::RedisError> {
    let Some(snapshot) = shared.snapshot.get() else {
        return Ok(());
    };
    let Snapshot { members } = snapshot();
    for chunk in members.chunks(PIPELINE) {
        let mut pipeline = redis::pipe();
        for (member, nick, rooms) in chunk {
            shared
                .scripts
                .add(&mut pipeline, &shared.node, &Change::Has(nick.clone()));
            for room in rooms {
                let joined = Change::Joined(*member, nick.clone(), room.clone());
                shared.scripts.add(&mut pipeline, &shared.node, &joined);
            }
        }
        pipeline.query_async::<()>(connection).await?;
    }
    Ok(())
}

/// Passes other nodes' notices to the hub, resubscribing after every lost
/// connection.
async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let subscription = async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(store::CHANNEL).await?;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some((node, notice)) = store::notice(message.get_payload_bytes()) else {
                    continue;
                };
                if node != shared.node
                    && let Some(notices) = shared.notices.get()
                {
                    notices.notice(&notice);
                }
            }
            Ok::<_, redis::RedisError>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            _ = subscription => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(HEARTBEAT / 3) => {}
        }
    }
}

/// A lock, even if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
