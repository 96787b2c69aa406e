//! The hub: connections, nicks, rooms, direct messages, ids and presence.
//! It knows nothing of sockets; transports hand it commands (through a
//! [`session::Session`]) and drain each connection's [`Mailbox`].
//!
//! All shared state sits behind one std `Mutex`, held only for short,
//! synchronous sections and never across `.await`. Room ids are assigned and
//! the message is queued to every member inside the same section, so every
//! member sees a room's messages in id order. Queues are bounded: a member
//! whose queue is full is kicked (its task learns it from the queue), never
//! buffered further.

pub mod event;
pub mod names;
pub mod queue;
pub mod rate;
pub mod session;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

use crate::storage::{History, StorageError};
use event::{ChatMessage, DirectMessage, Event, Outgoing};
use names::{Nick, RoomName};
use queue::{Full, Inbox, Kick, Outbox};

/// A connection's number inside the hub.
pub type ConnId = u64;

/// How a connection reached the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Raw TCP, line or JSON protocol.
    Tcp,
    /// WebSocket.
    Ws,
}

impl Transport {
    /// The transport as named in the diary and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ws => "ws",
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
    /// When it connected.
    pub since: SystemTime,
}

impl ConnectionInfo {
    /// A connection opening now.
    pub fn now(fd: i32, peer: SocketAddr, transport: Transport) -> Self {
        Self {
            fd,
            peer,
            transport,
            since: SystemTime::now(),
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
#[derive(Clone, Debug, Serialize)]
pub struct DiaryEntry {
    /// File descriptor.
    pub fd: i32,
    /// Peer `IP:PORT`.
    pub peer: String,
    /// `tcp` or `ws`.
    pub transport: Transport,
    /// Current nick.
    pub nick: String,
    /// Rooms it is in, without `#`.
    pub rooms: Vec<String>,
    /// When it connected (RFC 3339).
    pub since: String,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// Tunable hub behaviour.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Rooms larger than this get no join/part/nick notices.
    pub presence_limit: usize,
    /// Events queued per connection before it counts as too slow.
    pub queue: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            presence_limit: 100,
            queue: 1024,
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
    /// History could not be stored or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
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

/// A live room.
#[derive(Debug)]
struct Room {
    members: HashSet<ConnId>,
    next_id: u64,
}

/// A registered connection.
#[derive(Debug)]
struct Conn {
    nick: Nick,
    info: ConnectionInfo,
    rooms: RoomSet,
    outbox: Outbox,
}

/// The rooms a connection is in, sorted: a vector sized to fit rather than a
/// `BTreeSet`, whose first node costs every connection about 190 bytes
/// though most are in one room.
#[derive(Debug, Default)]
struct RoomSet(Vec<RoomName>);

impl RoomSet {
    /// Adds `room`; `false` when it was there already.
    fn insert(&mut self, room: RoomName) -> bool {
        match self.0.binary_search(&room) {
            Ok(_) => false,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, room);
                true
            }
        }
    }

    /// Removes `room`; `false` when it was not there.
    fn remove(&mut self, room: &RoomName) -> bool {
        match self.0.binary_search(room) {
            Ok(at) => {
                self.0.remove(at);
                self.0.shrink_to_fit();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `room` is in the set.
    fn contains(&self, room: &RoomName) -> bool {
        self.0.binary_search(room).is_ok()
    }

    /// The rooms, sorted.
    fn iter(&self) -> std::slice::Iter<'_, RoomName> {
        self.0.iter()
    }
}

/// Everything behind the lock.
#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    nicks: HashMap<Arc<str>, ConnId>,
    rooms: HashMap<RoomName, Room>,
    next_conn: ConnId,
    next_guest: u64,
    next_dm: u64,
    /// Set by [`Hub::stop`]: connections registering later are kicked at once.
    stopping: bool,
}

/// The shared hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// What every clone of the hub shares.
struct Shared {
    state: Mutex<State>,
    history: Arc<dyn History>,
    config: HubConfig,
}

impl Hub {
    /// A hub storing room history in `history`.
    pub fn new(history: Arc<dyn History>, config: HubConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                history,
                config,
            }),
        }
    }

    /// The state; a poisoned lock is taken over (every section leaves it consistent).
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The history store.
    pub fn history(&self) -> &dyn History {
        self.shared.history.as_ref()
    }

    /// Registers a connection under a fresh `guest-N` nick.
    pub fn register(&self, info: ConnectionInfo) -> Mailbox {
        let (outbox, events) = queue::bounded(self.shared.config.queue);
        let mut state = self.state();
        if state.stopping {
            outbox.kick(Kick::ServerStopping);
        }
        let nick = loop {
            state.next_guest += 1;
            let candidate = format!("guest-{}", state.next_guest);
            if !state.nicks.contains_key(candidate.as_str()) {
                break Nick::parse(&candidate).expect("guest-N is a valid nick");
            }
        };
        state.next_conn += 1;
        let id = state.next_conn;
        state.nicks.insert(nick.key(), id);
        state.conns.insert(
            id,
            Conn {
                nick: nick.clone(),
                info,
                rooms: RoomSet::default(),
                outbox,
            },
        );
        metrics::gauge!("switchboard_connections", "transport" => info.transport.as_str())
            .increment(1.0);
        metrics::counter!("switchboard_connections_total", "transport" => info.transport.as_str())
            .increment(1);
        Mailbox { id, nick, events }
    }

    /// Kicks every connection, now and later, because the server is stopping:
    /// each says goodbye to its client and leaves.
    pub fn stop(&self) {
        let mut state = self.state();
        state.stopping = true;
        for conn in state.conns.values() {
            conn.outbox.kick(Kick::ServerStopping);
        }
    }

    /// Removes a connection: it leaves its rooms (members are told) and frees its nick.
    pub fn unregister(&self, id: ConnId) {
        let mut state = self.state();
        let Some(conn) = state.conns.remove(&id) else {
            return;
        };
        metrics::gauge!("switchboard_connections", "transport" => conn.info.transport.as_str())
            .decrement(1.0);
        state.nicks.remove(&conn.nick.key());
        for room in conn.rooms.iter() {
            leave(&mut state, &self.shared.config, id, &conn.nick, room);
        }
    }

    /// Changes a connection's nick and tells the members of its rooms; returns the old nick.
    ///
    /// # Errors
    /// [`HubError::NickTaken`] when another connection has it.
    pub fn set_nick(&self, id: ConnId, nick: Nick) -> Result<Nick, HubError> {
        let mut state = self.state();
        match state.nicks.get(&nick.key()) {
            Some(owner) if *owner != id => return Err(HubError::NickTaken(nick)),
            _ => {}
        }
        let conn = state.conns.get_mut(&id).ok_or(HubError::Gone)?;
        let old = std::mem::replace(&mut conn.nick, nick.clone());
        let rooms: Vec<RoomName> = conn.rooms.iter().cloned().collect();
        state.nicks.remove(&old.key());
        state.nicks.insert(nick.key(), id);
        let limit = self.shared.config.presence_limit;
        let mut told = HashSet::from([id]);
        let event = Outgoing::new(Event::NickChanged {
            old: old.clone(),
            new: nick,
        });
        for room in &rooms {
            let Some(room) = state.rooms.get(room).filter(|r| r.members.len() <= limit) else {
                continue;
            };
            let fresh: Vec<ConnId> = room
                .members
                .iter()
                .copied()
                .filter(|m| told.insert(*m))
                .collect();
            deliver(&state.conns, fresh, &event);
        }
        Ok(old)
    }

    /// Adds a connection to a room (created on first join) and tells the other members.
    ///
    /// # Errors
    /// [`HubError::Storage`] when the room's last id cannot be read.
    pub fn join(&self, id: ConnId, room: &RoomName) -> Result<Joined, HubError> {
        let mut state = self.state();
        self.open_room(&mut state, room)?;
        let state = &mut *state;
        let conn = state.conns.get_mut(&id).ok_or(HubError::Gone)?;
        let nick = conn.nick.clone();
        let already_member = !conn.rooms.insert(room.clone());
        let entry = state.rooms.get_mut(room).ok_or(HubError::Gone)?;
        entry.members.insert(id);
        let last_id = entry.next_id - 1;
        if !already_member && entry.members.len() <= self.shared.config.presence_limit {
            let event = Outgoing::new(Event::Joined {
                room: room.clone(),
                nick,
                reference: None,
            });
            let others = entry.members.iter().copied().filter(|m| *m != id);
            deliver(&state.conns, others, &event);
        }
        Ok(Joined {
            last_id,
            already_member,
        })
    }

    /// Removes a connection from a room and tells the other members.
    ///
    /// # Errors
    /// [`HubError::NotInRoom`] when it was not a member.
    pub fn part(&self, id: ConnId, room: &RoomName) -> Result<(), HubError> {
        let mut state = self.state();
        let conn = state.conns.get_mut(&id).ok_or(HubError::Gone)?;
        if !conn.rooms.remove(room) {
            return Err(HubError::NotInRoom(room.clone()));
        }
        let nick = conn.nick.clone();
        leave(&mut state, &self.shared.config, id, &nick, room);
        Ok(())
    }

    /// Says `text` in `room` as connection `id`, which must be a member.
    ///
    /// # Errors
    /// [`HubError::NotInRoom`], or [`HubError::Storage`] when it cannot be stored.
    pub fn say(&self, id: ConnId, room: &RoomName, text: &str) -> Result<u64, HubError> {
        let mut state = self.state();
        let conn = state.conns.get(&id).ok_or(HubError::Gone)?;
        if !conn.rooms.contains(room) {
            return Err(HubError::NotInRoom(room.clone()));
        }
        let from = conn.nick.clone();
        self.publish_locked(&mut state, room, from, text)
    }

    /// Says `text` in `room` as `from` without being connected (HTTP `POST`).
    ///
    /// # Errors
    /// [`HubError::Storage`] when it cannot be stored.
    pub fn post(&self, room: &RoomName, from: Nick, text: &str) -> Result<u64, HubError> {
        let mut state = self.state();
        self.open_room(&mut state, room)?;
        let id = self.publish_locked(&mut state, room, from, text);
        if state.rooms.get(room).is_some_and(|r| r.members.is_empty()) {
            state.rooms.remove(room);
        }
        id
    }

    /// Makes sure `room` is live, its ids continuing from what storage holds.
    /// Runs under the lock, so two first messages cannot both take the next id.
    fn open_room(&self, state: &mut State, room: &RoomName) -> Result<(), HubError> {
        if !state.rooms.contains_key(room) {
            let last_id = self.shared.history.last_id(room)?;
            state.rooms.insert(
                room.clone(),
                Room {
                    members: HashSet::new(),
                    next_id: last_id + 1,
                },
            );
        }
        Ok(())
    }

    /// Assigns the next id, stores the message and queues it to every member,
    /// all under the lock so ids and deliveries agree.
    fn publish_locked(
        &self,
        state: &mut State,
        room: &RoomName,
        from: Nick,
        text: &str,
    ) -> Result<u64, HubError> {
        let entry = state
            .rooms
            .get_mut(room)
            .ok_or(HubError::NotInRoom(room.clone()))?;
        let message = Arc::new(ChatMessage {
            room: room.clone(),
            id: entry.next_id,
            from,
            text: text.into(),
            ts: SystemTime::now(),
        });
        self.shared.history.append(&message)?;
        entry.next_id += 1;
        let event = Outgoing::new(Event::Message(Arc::clone(&message)));
        deliver(&state.conns, entry.members.iter().copied(), &event);
        metrics::counter!("switchboard_messages_total").increment(1);
        metrics::counter!("switchboard_deliveries_total").increment(entry.members.len() as u64);
        Ok(message.id)
    }

    /// Sends a direct message to `to`; returns it (the sender's copy is the caller's).
    ///
    /// # Errors
    /// [`HubError::NoSuchNick`] when nobody has that nick.
    pub fn dm(&self, id: ConnId, to: &Nick, text: &str) -> Result<Arc<DirectMessage>, HubError> {
        let mut state = self.state();
        let from = state.conns.get(&id).ok_or(HubError::Gone)?.nick.clone();
        let recipient = *state
            .nicks
            .get(&to.key())
            .ok_or_else(|| HubError::NoSuchNick(to.clone()))?;
        state.next_dm += 1;
        let to = state
            .conns
            .get(&recipient)
            .ok_or(HubError::Gone)?
            .nick
            .clone();
        let message = Arc::new(DirectMessage {
            id: state.next_dm,
            from,
            to,
            text: text.into(),
            ts: SystemTime::now(),
        });
        let event = Outgoing::new(Event::Dm(Arc::clone(&message)));
        deliver(&state.conns, [recipient], &event);
        Ok(message)
    }

    /// The nicks in `room`, sorted (empty for a room nobody is in).
    pub fn who(&self, room: &RoomName) -> Vec<Nick> {
        let state = self.state();
        let mut nicks: Vec<Nick> = state
            .rooms
            .get(room)
            .map(|r| {
                r.members
                    .iter()
                    .filter_map(|m| state.conns.get(m).map(|c| c.nick.clone()))
                    .collect()
            })
            .unwrap_or_default();
        nicks.sort_by_key(Nick::key);
        nicks
    }

    /// The live rooms with their member counts and last ids, sorted by name.
    pub fn rooms(&self) -> Vec<(RoomName, usize, u64)> {
        let state = self.state();
        let mut rooms: Vec<_> = state
            .rooms
            .iter()
            .map(|(name, room)| (name.clone(), room.members.len(), room.next_id - 1))
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        rooms
    }

    /// The file-descriptor diary: every live connection, by file descriptor.
    pub fn diary(&self) -> Vec<DiaryEntry> {
        let state = self.state();
        let mut entries: Vec<DiaryEntry> = state
            .conns
            .values()
            .map(|conn| DiaryEntry {
                fd: conn.info.fd,
                peer: conn.info.peer.to_string(),
                transport: conn.info.transport,
                nick: conn.nick.to_string(),
                rooms: conn.rooms.iter().map(|r| r.as_str().to_string()).collect(),
                since: humantime::format_rfc3339_seconds(conn.info.since).to_string(),
                bytes_in: conn.outbox.traffic().bytes_in.load(Ordering::Relaxed),
                bytes_out: conn.outbox.traffic().bytes_out.load(Ordering::Relaxed),
            })
            .collect();
        entries.sort_by_key(|e| e.fd);
        entries
    }

    /// How many connections are registered.
    pub fn connection_count(&self) -> usize {
        self.state().conns.len()
    }
}

/// Removes `id` from `room` (already removed from the connection's own set),
/// tells the remaining members, and forgets the room when it empties.
fn leave(state: &mut State, config: &HubConfig, id: ConnId, nick: &Nick, room: &RoomName) {
    let Some(entry) = state.rooms.get_mut(room) else {
        return;
    };
    entry.members.remove(&id);
    if entry.members.is_empty() {
        state.rooms.remove(room);
        return;
    }
    if entry.members.len() < config.presence_limit {
        let event = Outgoing::new(Event::Parted {
            room: room.clone(),
            nick: nick.clone(),
            reference: None,
        });
        deliver(&state.conns, entry.members.iter().copied(), &event);
    }
}

/// Queues `event` to each of `members`; a member whose queue is full is
/// kicked rather than waited for.
fn deliver(
    conns: &HashMap<ConnId, Conn>,
    members: impl IntoIterator<Item = ConnId>,
    event: &Arc<Outgoing>,
) {
    for member in members {
        let Some(conn) = conns.get(&member) else {
            continue;
        };
        if conn.outbox.push(Arc::clone(event)) == Err(Full) && conn.outbox.kick(Kick::TooSlow) {
            metrics::counter!("switchboard_slow_consumers_dropped_total").increment(1);
        }
    }
}
