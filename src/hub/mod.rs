//! The hub: connections, nicks, rooms, presence and routing, whatever the
//! transport. It knows nothing of sockets, and it neither gives ids nor
//! stores: a message goes to the [`MessageLog`], which commits it and hands
//! it back to the [`registry`] to fan out, room by room in id order
//! (docs/ARCHITECTURE.md). Transports talk to it through a
//! [`session::Session`] and drain each connection's [`Mailbox`].
//!
//! Queues are bounded: a member whose queue is full is kicked (its task
//! learns it from the queue), never buffered further.

pub mod event;
pub mod queue;
pub mod rate;
pub mod registry;
pub mod session;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::cluster::{Directory, DirectoryError, Member, Notices, Snapshot};
use crate::log::{Committed, Deliver, Draft, LogError, MessageLog, Query};
use crate::model::{ChatMessage, DirectMessage, Nick, RoomName};
use queue::Inbox;
use registry::{Evicted, Registry};

/// A connection's number inside the hub.
pub type ConnId = u64;

/// How a connection reached the hub: the protocol it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Raw TCP, line or JSON protocol.
    Tcp,
    /// WebSocket.
    Ws,
    /// Short-lived HTTP requests (listed in the diary, never in a room).
    Http,
}

impl Transport {
    /// The transport as named in the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ws => "ws",
            Self::Http => "http",
        }
    }
}

/// Where a connection comes from, for the file-descriptor diary.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    /// The connection's file descriptor on the server.
    pub fd: i32,
    /// The peer's address.
    pub peer: SocketAddr,
    /// How it connected.
    pub transport: Transport,
    /// Whether it came over TLS.
    pub tls: bool,
    /// When it connected.
    pub since: SystemTime,
}

impl ConnectionInfo {
    /// A connection opening now.
    pub fn now(fd: i32, peer: SocketAddr, transport: Transport, tls: bool) -> Self {
        Self {
            fd,
            peer,
            transport,
            tls,
            since: SystemTime::now(),
        }
    }

    /// The transport as the diary names it (docs/PROTOCOL.md 5.3): `tcp`,
    /// `ws` and `http`, or `tls`, `wss` and `https` over TLS.
    pub fn diary_name(&self) -> &'static str {
        match (self.transport, self.tls) {
            (Transport::Tcp, false) => "tcp",
            (Transport::Tcp, true) => "tls",
            (Transport::Ws, false) => "ws",
            (Transport::Ws, true) => "wss",
            (Transport::Http, false) => "http",
            (Transport::Http, true) => "https",
        }
    }
}

/// Byte counters a transport updates without locking the hub.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes received from the peer.
    pub bytes_in: AtomicU64,
    /// Bytes sent to the peer.
    pub bytes_out: AtomicU64,
}

impl Traffic {
    /// Counts `bytes` received.
    pub fn received(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts `bytes` sent.
    pub fn sent(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One line of the file-descriptor diary: a live connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiaryEntry {
    /// Names the connection for the server's life (file descriptors are reused).
    pub id: ConnId,
    /// File descriptor.
    pub fd: i32,
    /// The node (server process) the connection is on.
    pub node: String,
    /// Peer `IP:PORT`.
    pub peer: String,
    /// `tcp`, `tls`, `ws`, `wss`, `http` or `https`.
    pub transport: &'static str,
    /// Current nick; `None` for a connection that is not in the chat (HTTP).
    pub nick: Option<String>,
    /// Rooms it is in, without `#`.
    pub rooms: Vec<String>,
    /// When it connected (RFC 3339).
    pub since: String,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// HTTP only: the method and path of the request being (or last) served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// A change in the diary, as a live diary hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiaryChange {
    /// A connection opened.
    Opened(DiaryEntry),
    /// A connection changed (an HTTP connection took a new request).
    Changed(DiaryEntry),
    /// A connection closed; its entry as it was last.
    Closed(DiaryEntry),
}

/// How many rooms may exist at once when `--max-rooms` is not given.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;

/// Tunable hub behaviour.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Rooms larger than this get no join/part/nick notices.
    pub presence_limit: usize,
    /// Events queued per connection before it counts as too slow.
    pub queue: usize,
    /// This node's name (`--node-name`), in the diary.
    pub node: Arc<str>,
    /// The most rooms at once (`--max-rooms`, docs/PROTOCOL.md 5.5).
    pub max_rooms: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            presence_limit: 100,
            queue: 1024,
            node: "localhost".into(),
            max_rooms: DEFAULT_MAX_ROOMS,
        }
    }
}

/// Why the hub refused a request.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Someone else has that nick.
    #[error("nick {0} is taken")]
    NickTaken(Nick),
    /// The connection is not in that room.
    #[error("you are not in {0}")]
    NotInRoom(RoomName),
    /// Nobody has that nick.
    #[error("no such nick: {0}")]
    NoSuchNick(Nick),
    /// The connection is gone (a race with its disconnect).
    #[error("connection closed")]
    Gone,
    /// The message log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The nick is one the server gives to guests.
    #[error("{0} is a name the server gives to guests: choose another")]
    Reserved(Nick),
    /// The other nodes could not be asked.
    #[error(transparent)]
    Cluster(DirectoryError),
    /// A new room would pass `--max-rooms` (docs/PROTOCOL.md 5.5).
    #[error("too many rooms (limit {0}): join one that exists")]
    TooManyRooms(usize),
}

/// What a transport holds for one registered connection.
#[derive(Debug)]
pub struct Mailbox {
    /// The connection's id.
    pub id: ConnId,
    /// The nick it was given.
    pub nick: Nick,
    /// Events for the connection, in order, and the hub's kick when it drops
    /// the connection (too slow, or the server stops).
    pub events: Inbox,
}

/// The result of joining a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The last id assigned in the room when the connection joined: later
    /// messages arrive live, earlier ones come from history.
    pub last_id: u64,
    /// Whether the connection was already a member.
    pub already_member: bool,
}

/// The shared hub; cheap to clone (one pointer, which every session holds).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// What every clone of the hub shares.
struct Inner {
    registry: Arc<Registry>,
    log: Arc<dyn MessageLog>,
    /// The other nodes' view, when this node is one of several.
    cluster: Option<Arc<dyn Directory>>,
}

impl Hub {
    /// A hub over `log`, one node of a cluster when `cluster` is given: it
    /// learns the rooms the log holds history for and becomes where the log
    /// delivers what it commits (and where other nodes' notices arrive).
    ///
    /// # Errors
    /// [`LogError`] when the log cannot list its rooms.
    pub async fn open(
        log: Arc<dyn MessageLog>,
        cluster: Option<Arc<dyn Directory>>,
        config: HubConfig,
    ) -> Result<Self, LogError> {
        let rooms = log.rooms().await?;
        let registry = Arc::new(Registry::new(config, rooms, log.forgets_rooms()));
        log.attach(Arc::clone(&registry) as Arc<dyn Deliver>);
        if let Some(cluster) = &cluster {
            let snapshot = Arc::clone(&registry);
            cluster.attach(
                Arc::clone(&registry) as Arc<dyn Notices>,
                Arc::new(move || -> Snapshot { snapshot.snapshot() }),
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                log,
                cluster,
            }),
        })
    }

    /// Registers a connection under a fresh `guest-N` nick (unique across
    /// the cluster, when there is one); `heard` says whether it has spoken
    /// already (a line client has not, see [`Self::hear`]).
    pub fn register(&self, info: ConnectionInfo, heard: bool) -> Mailbox {
        let transport = info.transport.as_str();
        metrics::gauge!("switchboard_connections", "transport" => transport).increment(1.0);
        metrics::counter!("switchboard_connections_total", "transport" => transport).increment(1);
        let cluster = self.inner.cluster.as_ref();
        let guest = cluster.map(|c| c.guest_number());
        let mailbox = self.inner.registry.register(info, heard, guest);
        if let Some(cluster) = cluster.filter(|_| heard) {
            cluster.has(&mailbox.nick);
        }
        mailbox
    }

    /// Marks a connection as having said its first line (docs/PROTOCOL.md
    /// 5): from now on others (on any node) can send it direct messages.
    pub fn hear(&self, id: ConnId) {
        self.inner.registry.hear(id);
        if let Some(cluster) = &self.inner.cluster
            && let Ok(nick) = self.inner.registry.nick_of(id)
        {
            cluster.has(&nick);
        }
    }

    /// Lists an HTTP connection in the diary for as long as the returned
    /// [`Visit`] lives.
    pub fn visit(&self, info: ConnectionInfo) -> Visit {
        let traffic = Arc::new(Traffic::default());
        let id = self.inner.registry.visit(info, Arc::clone(&traffic));
        Visit {
            registry: Arc::clone(&self.inner.registry),
            id,
            traffic,
        }
    }

    /// Connections opening and closing from now on, for a live diary.
    pub fn watch_diary(&self) -> tokio::sync::broadcast::Receiver<Arc<DiaryChange>> {
        self.inner.registry.watch()
    }

    /// Kicks every connection, now and later, because the server is stopping:
    /// each says goodbye to its client and leaves.
    pub fn stop(&self) {
        self.inner.registry.stop();
    }

    /// Lets go of this node's place in the cluster, then commits what the
    /// log still holds and stops it; called once every connection is gone.
    pub async fn close(&self) {
        if let Some(cluster) = &self.inner.cluster
            && let Err(err) = cluster.close().await
        {
            tracing::warn!("{err}");
        }
        if let Err(err) = self.inner.log.close().await {
            tracing::error!("{err}");
        }
    }

    /// Removes a connection: it leaves its rooms (members are told) and frees
    /// its nick. Safe to call again.
    pub fn unregister(&self, id: ConnId) {
        let Some(left) = self.inner.registry.unregister(id) else {
            return;
        };
        let transport = left.info.transport.as_str();
        metrics::gauge!("switchboard_connections", "transport" => transport).decrement(1.0);
        if let Some(cluster) = &self.inner.cluster {
            for room in &left.rooms {
                cluster.parted(Member(id), &left.nick, room);
            }
            cluster.release(&left.nick);
        }
    }

    /// Changes a connection's nick (claimed across the cluster first, when
    /// there is one) and tells the members of its rooms; returns the old nick.
    ///
    /// # Errors
    /// [`HubError::NickTaken`] when someone else has it, [`HubError::Reserved`]
    /// for a `guest-N` name, [`HubError::Cluster`] when the cluster cannot
    /// be asked.
    pub async fn set_nick(&self, id: ConnId, nick: Nick) -> Result<Nick, HubError> {
        let registry = &self.inner.registry;
        if nick.is_guest() && registry.nick_of(id)?.key() != nick.key() {
            return Err(HubError::Reserved(nick));
        }
        registry.nick_free(id, &nick)?;
        let member = Member(id);
        if let Some(cluster) = &self.inner.cluster {
            cluster.claim(&nick).await.map_err(|err| match err {
                DirectoryError::Taken(nick) => HubError::NickTaken(nick),
                other => HubError::Cluster(other),
            })?;
        }
        let (old, rooms) = registry.set_nick(id, nick.clone())?;
        if let Some(cluster) = &self.inner.cluster
            && old.key() != nick.key()
        {
            cluster.renamed(member, &old, &nick, &rooms);
            cluster.release(&old);
        }
        Ok(old)
    }

    /// Adds a connection to a room (made if it is new) and tells the other
    /// members.
    ///
    /// # Errors
    /// [`HubError::Gone`] when the connection has left,
    /// [`HubError::TooManyRooms`] when a new room would pass the bound.
    pub fn join(&self, id: ConnId, room: &RoomName) -> Result<Joined, HubError> {
        let (joined, evicted) = self.inner.registry.join(id, room)?;
        self.forget(evicted);
        if let Some(cluster) = &self.inner.cluster
            && !joined.already_member
        {
            cluster.joined(Member(id), &self.inner.registry.nick_of(id)?, room);
        }
        Ok(joined)
    }

    /// Removes a connection from a room and tells the other members.
    ///
    /// # Errors
    /// [`HubError::NotInRoom`] when it was not a member.
    pub fn part(&self, id: ConnId, room: &RoomName) -> Result<(), HubError> {
        let nick = self.inner.registry.nick_of(id)?;
        self.inner.registry.part(id, room)?;
        if let Some(cluster) = &self.inner.cluster {
            cluster.parted(Member(id), &nick, room);
        }
        Ok(())
    }

    /// Says `text` in `room` as connection `id`, which must be a member;
    /// returns the id once the message is committed and delivered.
    ///
    /// # Errors
    /// [`HubError::NotInRoom`], or [`HubError::Log`] when it was not stored.
    pub async fn say(&self, id: ConnId, room: &RoomName, text: &str) -> Result<u64, HubError> {
        let from = self.inner.registry.member_nick(id, room)?;
        self.append(room, from, text).await
    }

    /// Says `text` in `room` as `from` without being connected (HTTP `POST`),
    /// making the room if it is new; returns the id once the message is
    /// committed and delivered.
    ///
    /// # Errors
    /// [`HubError::TooManyRooms`] when a new room would pass the bound,
    /// [`HubError::Log`] when it was not stored.
    pub async fn post(&self, room: &RoomName, from: Nick, text: &str) -> Result<u64, HubError> {
        let evicted = self.inner.registry.reserve(room)?;
        self.forget(evicted);
        let posted = self.append(room, from, text).await;
        if posted.is_err() {
            self.inner.registry.release(room);
        }
        posted
    }

    /// Lets the log forget the history of a room the registry evicted.
    fn forget(&self, evicted: Option<Evicted>) {
        if let Some(Evicted { room, last_id }) = evicted {
            self.inner.log.forget(&room, last_id);
        }
    }

    /// Hands a room message to the log; its id once committed and delivered.
    async fn append(&self, room: &RoomName, from: Nick, text: &str) -> Result<u64, HubError> {
        let draft = Draft::Room {
            room: room.clone(),
            from,
            text: text.into(),
        };
        match self.inner.log.append(draft).await? {
            Committed::Room(message) => Ok(message.id),
            Committed::Direct(message) => Ok(message.id),
        }
    }

    /// Sends a direct message to whoever has the nick `to`, on any node;
    /// returns it once committed and delivered (the sender's copy is the
    /// caller's to show).
    ///
    /// # Errors
    /// [`HubError::NoSuchNick`] when nobody has that nick, [`HubError::Log`]
    /// when it was not stored.
    pub async fn dm(
        &self,
        id: ConnId,
        to: &Nick,
        text: &str,
    ) -> Result<Arc<DirectMessage>, HubError> {
        let (from, to) = match &self.inner.cluster {
            None => self.inner.registry.correspondents(id, to)?,
            Some(cluster) => {
                let from = self.inner.registry.nick_of(id)?;
                let owner = cluster.owner(to).await.map_err(HubError::Cluster)?;
                (from, owner.ok_or_else(|| HubError::NoSuchNick(to.clone()))?)
            }
        };
        let draft = Draft::Direct {
            from,
            to,
            text: text.into(),
        };
        match self.inner.log.append(draft).await? {
            Committed::Direct(message) => Ok(message),
            Committed::Room(_) => Err(HubError::Gone),
        }
    }

    /// A page of a room's history.
    ///
    /// # Errors
    /// [`HubError::Log`] when it cannot be read.
    pub async fn history(&self, query: Query) -> Result<Vec<Arc<ChatMessage>>, HubError> {
        Ok(self.inner.log.read(query).await?)
    }

    /// Whether messages can be stored and the cluster reached now.
    ///
    /// # Errors
    /// Why not.
    pub fn health(&self) -> Result<(), HubError> {
        self.inner.log.health()?;
        if let Some(cluster) = &self.inner.cluster {
            cluster.health().map_err(HubError::Cluster)?;
        }
        Ok(())
    }

    /// The nick as its live holder spells it, on any node, if someone has it.
    ///
    /// # Errors
    /// [`HubError::Cluster`] when the cluster cannot be asked.
    pub async fn holder(&self, nick: &Nick) -> Result<Option<Nick>, HubError> {
        match &self.inner.cluster {
            None => Ok(self.inner.registry.holder(nick)),
            Some(cluster) => cluster.owner(nick).await.map_err(HubError::Cluster),
        }
    }

    /// The nicks in `room` on every node, sorted (empty for a room nobody is in).
    ///
    /// # Errors
    /// [`HubError::Cluster`] when the cluster cannot be asked.
    pub async fn who(&self, room: &RoomName) -> Result<Vec<Nick>, HubError> {
        match &self.inner.cluster {
            None => Ok(self.inner.registry.who(room)),
            Some(cluster) => cluster.who(room).await.map_err(HubError::Cluster),
        }
    }

    /// The rooms with members or history, with their member counts (on
    /// every node) and last ids, sorted by name.
    ///
    /// # Errors
    /// [`HubError::Cluster`] when the cluster cannot be asked.
    pub async fn rooms(&self) -> Result<Vec<(RoomName, usize, u64)>, HubError> {
        let mut rooms = self.inner.registry.rooms();
        if let Some(cluster) = &self.inner.cluster {
            let names = rooms.iter().map(|(room, _, _)| room.clone()).collect();
            let counts = cluster
                .member_counts(names)
                .await
                .map_err(HubError::Cluster)?;
            for (room, members, _) in &mut rooms {
                *members = counts.get(room).copied().unwrap_or(*members);
            }
        }
        Ok(rooms)
    }

    /// The file-descriptor diary: every live connection, by file descriptor.
    pub fn diary(&self) -> Vec<DiaryEntry> {
        self.inner.registry.diary()
    }
}

/// An HTTP connection's place in the diary; it leaves the diary when dropped.
#[derive(Debug)]
pub struct Visit {
    registry: Arc<Registry>,
    id: ConnId,
    traffic: Arc<Traffic>,
}

impl Visit {
    /// The counters its bytes go in.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }

    /// Notes the request the connection is serving now (method and path).
    pub fn serving(&self, request: String) {
        self.registry.serving(self.id, request);
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        self.registry.leave_visit(self.id);
    }
}
