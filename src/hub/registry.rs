//! Who is where: connections, nicks, rooms and their members, and each
//! connection's outbox. The message log delivers what it committed here
//! ([`Deliver`]); everything else comes from [`crate::hub::Hub`].
//!
//! One std `Mutex` guards it all, held for short synchronous sections and
//! never across `.await` or I/O. Events are queued under the lock (so every
//! member gets a room's messages in the order they were delivered) and the
//! connections' tasks are woken after it is released ([`Wakeups`]).
//!
//! It also keeps the file-descriptor diary: every chat connection, and every
//! HTTP connection while it lasts ([`Registry::visit`]), with a live feed of
//! connections opening and closing for whoever watches ([`Registry::watch`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::cluster::{Member, Notice, Notices, Snapshot};
use crate::hub::event::{Event, Outgoing};
use crate::hub::queue::{self, Full, Kick, Outbox, Wakeups};
use crate::hub::{
    ConnId, ConnectionInfo, DiaryChange, DiaryEntry, HubConfig, HubError, Joined, Mailbox, Traffic,
};
use crate::log::{Committed, Deliver, RoomLog};
use crate::model::{ChatMessage, DirectMessage, Nick, RoomName};

/// What a connection was when it left.
#[derive(Debug)]
pub struct Left {
    /// How it had connected.
    pub info: ConnectionInfo,
    /// Its nick.
    pub nick: Nick,
    /// The rooms it was in.
    pub rooms: Vec<RoomName>,
}

/// A room: its members here, the last id delivered in it, and when it was
/// last used.
#[derive(Debug, Default)]
struct Room {
    members: HashSet<ConnId>,
    last_id: u64,
    /// The [`State::tick`] of its last message, or of its last member
    /// leaving: the room idle longest has the lowest.
    used: u64,
}

/// A room the registry forgot to make way for a new one under `--max-rooms`:
/// the log may forget its history ([`crate::log::MessageLog::forget`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// The room.
    pub room: RoomName,
    /// The last id delivered in it.
    pub last_id: u64,
}

/// How many diary changes a watcher may fall behind before it is told it
/// missed some (and reads the whole diary again).
const DIARY_BACKLOG: usize = 256;

/// A registered connection.
#[derive(Debug)]
struct Conn {
    nick: Nick,
    info: ConnectionInfo,
    rooms: RoomSet,
    outbox: Outbox,
    /// It has said its first line (docs/PROTOCOL.md 5): until then it is in
    /// no room and cannot be sent direct messages.
    heard: bool,
}

impl Conn {
    /// The connection's line in the diary.
    fn entry(&self, id: ConnId, node: &str) -> DiaryEntry {
        let rooms = self.rooms.iter().map(|r| r.as_str().to_string()).collect();
        entry(
            id,
            node,
            &self.info,
            Some(&self.nick),
            rooms,
            self.outbox.traffic(),
        )
    }
}

/// An HTTP connection, listed in the diary while it lasts.
#[derive(Debug)]
struct Visitor {
    info: ConnectionInfo,
    traffic: Arc<Traffic>,
    /// The method and path of the request being (or last) served.
    request: Option<String>,
}

impl Visitor {
    /// The connection's line in the diary.
    fn entry(&self, id: ConnId, node: &str) -> DiaryEntry {
        DiaryEntry {
            request: self.request.clone(),
            ..entry(id, node, &self.info, None, Vec::new(), &self.traffic)
        }
    }
}

/// A line of the diary: connection `id` on node `node`.
fn entry(
    id: ConnId,
    node: &str,
    info: &ConnectionInfo,
    nick: Option<&Nick>,
    rooms: Vec<String>,
    traffic: &Traffic,
) -> DiaryEntry {
    DiaryEntry {
        id,
        fd: info.fd,
        node: node.to_string(),
        peer: info.peer.to_string(),
        transport: info.diary_name(),
        nick: nick.map(Nick::to_string),
        rooms,
        since: humantime::format_rfc3339_seconds(info.since).to_string(),
        bytes_in: traffic.bytes_in.load(Ordering::Relaxed),
        bytes_out: traffic.bytes_out.load(Ordering::Relaxed),
        request: None,
    }
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
    /// HTTP connections, for the diary only.
    visitors: HashMap<ConnId, Visitor>,
    nicks: HashMap<Arc<str>, ConnId>,
    /// Rooms with members or history: a room with history stays listed
    /// after its last member leaves (until evicted, when the log allows).
    rooms: HashMap<RoomName, Room>,
    /// Counts room activity, to tell which room has been idle longest.
    tick: u64,
    next_conn: ConnId,
    next_guest: u64,
    /// Set by [`Registry::stop`]: connections registering later are kicked at once.
    stopping: bool,
}

/// Who is where, and the connections' outboxes.
#[derive(Debug)]
pub struct Registry {
    state: Mutex<State>,
    config: HubConfig,
    /// Whether a memberless room may be evicted, history and all, to make
    /// way for a new one (the log keeps history in memory only).
    evicts: bool,
    /// Connections opening and closing, for live diaries.
    diary: broadcast::Sender<Arc<DiaryChange>>,
}

impl Registry {
    /// An empty registry that knows the rooms the log holds history for;
    /// `evicts` lets it forget memberless rooms when `--max-rooms` is reached.
    pub fn new(config: HubConfig, rooms: Vec<RoomLog>, evicts: bool) -> Self {
        let rooms = rooms
            .into_iter()
            .map(|RoomLog { room, last_id }| {
                let fresh = Room {
                    last_id,
                    ..Room::default()
                };
                (room, fresh)
            })
            .collect();
        Self {
            state: Mutex::new(State {
                rooms,
                ..State::default()
            }),
            config,
            evicts,
            diary: broadcast::Sender::new(DIARY_BACKLOG),
        }
    }

    /// The state; a poisoned lock is taken over (every section leaves it consistent).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether anyone watches the diary: changes are only put together then.
    fn watched(&self) -> bool {
        self.diary.receiver_count() > 0
    }

    /// Tells the diary's watchers of `change`, if there is one (called after
    /// the lock is released: sending wakes their tasks).
    fn tell(&self, change: Option<DiaryChange>) {
        if let Some(change) = change {
            // No watcher left since: nobody to tell.
            let _ = self.diary.send(Arc::new(change));
        }
    }

    /// Connections opening and closing from now on. A watcher that falls
    /// more than a few hundred changes behind is told it lagged.
    pub fn watch(&self) -> broadcast::Receiver<Arc<DiaryChange>> {
        self.diary.subscribe()
    }

    /// Registers a connection under a fresh `guest-N` nick (number `guest`
    /// when a cluster gives it, else the next of this node's own); `heard`
    /// says whether it has spoken already (a line client has not:
    /// [`Self::hear`]).
    pub fn register(&self, info: ConnectionInfo, heard: bool, guest: Option<u64>) -> Mailbox {
        let (outbox, events) = queue::bounded(self.config.queue);
        let mut wakeups = Wakeups::default();
        let mut state = self.state();
        if state.stopping {
            outbox.kick(Kick::ServerStopping, &mut wakeups);
        }
        let nick = match guest {
            Some(number) => Nick::guest(number),
            None => loop {
                state.next_guest += 1;
                let candidate = Nick::guest(state.next_guest);
                if !state.nicks.contains_key(&candidate.key()) {
                    break candidate;
                }
            },
        };
        state.next_conn += 1;
        let id = state.next_conn;
        state.nicks.insert(nick.key(), id);
        let conn = Conn {
            nick: nick.clone(),
            info,
            rooms: RoomSet::default(),
            outbox,
            heard,
        };
        let opened = self
            .watched()
            .then(|| DiaryChange::Opened(conn.entry(id, &self.config.node)));
        state.conns.insert(id, conn);
        drop(state);
        self.tell(opened);
        Mailbox { id, nick, events }
    }

    /// Marks a connection as having said its first line: others may now
    /// send it direct messages, and it can join rooms as anyone does.
    pub fn hear(&self, id: ConnId) {
        if let Some(conn) = self.state().conns.get_mut(&id) {
            conn.heard = true;
        }
    }

    /// Lists an HTTP connection in the diary until [`Self::leave_visit`];
    /// `traffic` is what it counts its bytes in.
    pub fn visit(&self, info: ConnectionInfo, traffic: Arc<Traffic>) -> ConnId {
        let mut state = self.state();
        state.next_conn += 1;
        let id = state.next_conn;
        let visitor = Visitor {
            info,
            traffic,
            request: None,
        };
        let opened = self
            .watched()
            .then(|| DiaryChange::Opened(visitor.entry(id, &self.config.node)));
        state.visitors.insert(id, visitor);
        drop(state);
        self.tell(opened);
        id
    }

    /// Notes the request an HTTP connection is serving now.
    pub fn serving(&self, id: ConnId, request: String) {
        let mut state = self.state();
        let Some(visitor) = state.visitors.get_mut(&id) else {
            return;
        };
        visitor.request = Some(request);
        let changed = self
            .watched()
            .then(|| DiaryChange::Changed(visitor.entry(id, &self.config.node)));
        drop(state);
        self.tell(changed);
    }

    /// Takes an HTTP connection out of the diary.
    pub fn leave_visit(&self, id: ConnId) {
        let mut state = self.state();
        let Some(visitor) = state.visitors.remove(&id) else {
            return;
        };
        drop(state);
        if self.watched() {
            self.tell(Some(DiaryChange::Closed(
                visitor.entry(id, &self.config.node),
            )));
        }
    }

    /// Kicks every connection, now and later, because the server is stopping.
    pub fn stop(&self) {
        let mut wakeups = Wakeups::default();
        let mut state = self.state();
        state.stopping = true;
        for conn in state.conns.values() {
            conn.outbox.kick(Kick::ServerStopping, &mut wakeups);
        }
    }

    /// Removes a connection: it leaves its rooms (members are told) and frees
    /// its nick. Returns what it was, or `None` when it was gone already.
    pub fn unregister(&self, id: ConnId) -> Option<Left> {
        let mut wakeups = Wakeups::default();
        let mut state = self.state();
        let conn = state.conns.remove(&id)?;
        state.nicks.remove(&conn.nick.key());
        let closed = self
            .watched()
            .then(|| DiaryChange::Closed(conn.entry(id, &self.config.node)));
        for room in conn.rooms.iter() {
            self.leave(&mut state, id, &conn.nick, room, &mut wakeups);
        }
        drop(state);
        self.tell(closed);
        Some(Left {
            info: conn.info,
            nick: conn.nick.clone(),
            rooms: conn.rooms.iter().cloned().collect(),
        })
    }

    /// Whether `nick` is free on this node for connection `id`.
    ///
    /// # Errors
    /// [`HubError::NickTaken`] when another connection here has it.
    pub fn nick_free(&self, id: ConnId, nick: &Nick) -> Result<(), HubError> {
        match self.state().nicks.get(&nick.key()) {
            Some(owner) if *owner != id => Err(HubError::NickTaken(nick.clone())),
            _ => Ok(()),
        }
    }

    /// The nick as its holder on this node spells it, if a connection here has it.
    pub fn holder(&self, nick: &Nick) -> Option<Nick> {
        let state = self.state();
        let owner = state.nicks.get(&nick.key())?;
        state.conns.get(owner).map(|conn| conn.nick.clone())
    }

    /// Every connection of this node, its nick and its rooms.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        let members = state
            .conns
            .iter()
            .map(|(id, conn)| {
                (
                    Member(*id),
                    conn.nick.clone(),
                    conn.rooms.iter().cloned().collect(),
                )
            })
            .collect();
        Snapshot { members }
    }

    /// The nick of connection `id`.
    ///
    /// # Errors
    /// [`HubError::Gone`] when it has left.
    pub fn nick_of(&self, id: ConnId) -> Result<Nick, HubError> {
        let state = self.state();
        Ok(state.conns.get(&id).ok_or(HubError::Gone)?.nick.clone())
    }

    /// Changes a connection's nick and tells the members of its rooms;
    /// returns the old nick and the rooms.
    ///
    /// # Errors
    /// [`HubError::NickTaken`] when another connection has it.
    pub fn set_nick(&self, id: ConnId, nick: Nick) -> Result<(Nick, Vec<RoomName>), HubError> {
        let mut wakeups = Wakeups::default();
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
        let event = Outgoing::new(Event::NickChanged {
            old: old.clone(),
            new: nick,
        });
        let mut told = HashSet::from([id]);
        for room in &rooms {
            let Some(room) = state.rooms.get(room).filter(|r| self.announces(r)) else {
                continue;
            };
            let fresh = room.members.iter().copied().filter(|m| told.insert(*m));
            queue_to(&state.conns, fresh, &event, &mut wakeups);
        }
        Ok((old, rooms))
    }

    /// Adds a connection to a room (created on first join, see
    /// [`Self::reserve`]) and tells the other members. The last id delivered
    /// in the room is read under the same lock that makes the connection a
    /// member: every later message reaches it live, every earlier one is
    /// history. Also returns the room evicted to make way, if any.
    ///
    /// # Errors
    /// [`HubError::Gone`] when the connection has left,
    /// [`HubError::TooManyRooms`] when a new room would pass the bound.
    pub fn join(&self, id: ConnId, room: &RoomName) -> Result<(Joined, Option<Evicted>), HubError> {
        let mut wakeups = Wakeups::default();
        let mut state = self.state();
        let state = &mut *state;
        if !state.conns.contains_key(&id) {
            return Err(HubError::Gone);
        }
        let evicted = self.make_room(state, room)?;
        let conn = state.conns.get_mut(&id).ok_or(HubError::Gone)?;
        let nick = conn.nick.clone();
        let already_member = !conn.rooms.insert(room.clone());
        let entry = state.rooms.entry(room.clone()).or_default();
        entry.members.insert(id);
        let joined = Joined {
            last_id: entry.last_id,
            already_member,
        };
        if !already_member && self.announces(entry) {
            let event = Outgoing::new(Event::Joined {
                room: room.clone(),
                nick,
                reference: None,
            });
            let others = entry.members.iter().copied().filter(|m| *m != id);
            queue_to(&state.conns, others, &event, &mut wakeups);
        }
        Ok((joined, evicted))
    }

    /// Makes sure `room` exists before a message is posted to it without a
    /// member (HTTP): a new room counts against `--max-rooms` from now on.
    /// Returns the room evicted to make way, if any.
    ///
    /// # Errors
    /// [`HubError::TooManyRooms`] when a new room would pass the bound.
    pub fn reserve(&self, room: &RoomName) -> Result<Option<Evicted>, HubError> {
        self.make_room(&mut self.state(), room)
    }

    /// Forgets `room` again if nothing came of [`Self::reserve`]: it has
    /// neither members nor history.
    pub fn release(&self, room: &RoomName) {
        let mut state = self.state();
        if state
            .rooms
            .get(room)
            .is_some_and(|r| r.members.is_empty() && r.last_id == 0)
        {
            state.rooms.remove(room);
        }
    }

    /// Makes `room` unless it exists. At `--max-rooms` rooms, a new one takes
    /// the place of the memberless room idle longest when the registry
    /// evicts (returned, for the log to forget), and is refused otherwise.
    /// The search for it runs only at the bound.
    fn make_room(&self, state: &mut State, room: &RoomName) -> Result<Option<Evicted>, HubError> {
        if state.rooms.contains_key(room) {
            return Ok(None);
        }
        let evicted = if state.rooms.len() >= self.config.max_rooms {
            let evicted = self.evict_idle(state);
            if evicted.is_none() {
                return Err(HubError::TooManyRooms(self.config.max_rooms));
            }
            evicted
        } else {
            None
        };
        state.tick += 1;
        let used = state.tick;
        state.rooms.insert(
            room.clone(),
            Room {
                used,
                ..Room::default()
            },
        );
        Ok(evicted)
    }

    /// Forgets the memberless room idle longest, when the registry evicts.
    fn evict_idle(&self, state: &mut State) -> Option<Evicted> {
        if !self.evicts {
            return None;
        }
        let (room, _) = state
            .rooms
            .iter()
            .filter(|(_, r)| r.members.is_empty())
            .min_by_key(|(_, r)| r.used)?;
        let room = room.clone();
        let forgotten = state.rooms.remove(&room)?;
        metrics::counter!("switchboard_rooms_evicted_total").increment(1);
        Some(Evicted {
            room,
            last_id: forgotten.last_id,
        })
    }

    /// Removes a connection from a room and tells the other members.
    ///
    /// # Errors
    /// [`HubError::NotInRoom`] when it was not a member.
    pub fn part(&self, id: ConnId, room: &RoomName) -> Result<(), HubError> {
        let mut wakeups = Wakeups::default();
        let mut state = self.state();
        let conn = state.conns.get_mut(&id).ok_or(HubError::Gone)?;
        if !conn.rooms.remove(room) {
            return Err(HubError::NotInRoom(room.clone()));
        }
        let nick = conn.nick.clone();
        self.leave(&mut state, id, &nick, room, &mut wakeups);
        Ok(())
    }

    /// The nick of connection `id` if it is a member of `room`.
    ///
    /// # Errors
    /// [`HubError::NotInRoom`] when it is not.
    pub fn member_nick(&self, id: ConnId, room: &RoomName) -> Result<Nick, HubError> {
        let state = self.state();
        let conn = state.conns.get(&id).ok_or(HubError::Gone)?;
        if !conn.rooms.contains(room) {
            return Err(HubError::NotInRoom(room.clone()));
        }
        Ok(conn.nick.clone())
    }

    /// The nicks of connection `id` and of whoever has `to`'s nick, as they typed them.
    ///
    /// # Errors
    /// [`HubError::NoSuchNick`] when nobody has that nick.
    pub fn correspondents(&self, id: ConnId, to: &Nick) -> Result<(Nick, Nick), HubError> {
        let state = self.state();
        let from = state.conns.get(&id).ok_or(HubError::Gone)?.nick.clone();
        let recipient = state
            .nicks
            .get(&to.key())
            .and_then(|owner| state.conns.get(owner))
            .filter(|recipient| recipient.heard)
            .ok_or_else(|| HubError::NoSuchNick(to.clone()))?;
        Ok((from, recipient.nick.clone()))
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

    /// The rooms with members or history, with their member counts and last
    /// ids, sorted by name.
    pub fn rooms(&self) -> Vec<(RoomName, usize, u64)> {
        let state = self.state();
        let mut rooms: Vec<_> = state
            .rooms
            .iter()
            .map(|(name, room)| (name.clone(), room.members.len(), room.last_id))
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        rooms
    }

    /// The file-descriptor diary: every live connection, chat and HTTP, by
    /// file descriptor.
    pub fn diary(&self) -> Vec<DiaryEntry> {
        let state = self.state();
        let chat = state
            .conns
            .iter()
            .map(|(id, conn)| conn.entry(*id, &self.config.node));
        let http = state
            .visitors
            .iter()
            .map(|(id, v)| v.entry(*id, &self.config.node));
        let mut entries: Vec<DiaryEntry> = chat.chain(http).collect();
        entries.sort_by_key(|e| (e.fd, e.id));
        entries
    }

    /// Whether `room` is small enough for join, part and nick notices.
    fn announces(&self, room: &Room) -> bool {
        room.members.len() <= self.config.presence_limit
    }

    /// Removes `id` from `room` (already removed from the connection's own
    /// set) and tells the remaining members; a room left with neither
    /// members nor history is forgotten.
    fn leave(
        &self,
        state: &mut State,
        id: ConnId,
        nick: &Nick,
        room: &RoomName,
        wakeups: &mut Wakeups,
    ) {
        state.tick += 1;
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        entry.members.remove(&id);
        if entry.members.is_empty() {
            if entry.last_id == 0 {
                state.rooms.remove(room);
            } else {
                entry.members.shrink_to_fit();
                entry.used = state.tick;
            }
            return;
        }
        if self.announces(entry) {
            let event = Outgoing::new(Event::Parted {
                room: room.clone(),
                nick: nick.clone(),
                reference: None,
            });
            queue_to(&state.conns, entry.members.iter().copied(), &event, wakeups);
        }
    }

    /// Queues a committed room message to the room's members.
    fn deliver_message(state: &mut State, message: &Arc<ChatMessage>, wakeups: &mut Wakeups) {
        let room = match state.rooms.get_mut(&message.room) {
            Some(room) => room,
            None => state.rooms.entry(message.room.clone()).or_default(),
        };
        if message.id <= room.last_id {
            // Delivered already (an engine may hand a message over twice).
            return;
        }
        state.tick += 1;
        room.last_id = message.id;
        room.used = state.tick;
        let event = Outgoing::new(Event::Message(Arc::clone(message)));
        queue_to(&state.conns, room.members.iter().copied(), &event, wakeups);
        metrics::counter!("switchboard_messages_total").increment(1);
        metrics::counter!("switchboard_deliveries_total").increment(room.members.len() as u64);
    }

    /// Queues a committed direct message to whoever has the recipient's nick.
    fn deliver_direct(state: &State, message: &Arc<DirectMessage>, wakeups: &mut Wakeups) {
        if let Some(recipient) = state.nicks.get(&message.to.key()) {
            let event = Outgoing::new(Event::Dm(Arc::clone(message)));
            queue_to(&state.conns, [*recipient], &event, wakeups);
        }
    }
}

impl Notices for Registry {
    fn notice(&self, notice: &Notice) {
        let (room, members, event) = match notice {
            Notice::Joined {
                room,
                nick,
                members,
            } => (
                room,
                *members,
                Event::Joined {
                    room: room.clone(),
                    nick: nick.clone(),
                    reference: None,
                },
            ),
            Notice::Parted {
                room,
                nick,
                members,
            } => (
                room,
                *members,
                Event::Parted {
                    room: room.clone(),
                    nick: nick.clone(),
                    reference: None,
                },
            ),
            Notice::Renamed {
                room,
                old,
                new,
                members,
            } => (
                room,
                *members,
                Event::NickChanged {
                    old: old.clone(),
                    new: new.clone(),
                },
            ),
        };
        if members > self.config.presence_limit {
            return;
        }
        let mut wakeups = Wakeups::default();
        let state = self.state();
        if let Some(local) = state.rooms.get(room) {
            let event = Outgoing::new(event);
            queue_to(
                &state.conns,
                local.members.iter().copied(),
                &event,
                &mut wakeups,
            );
        }
    }
}

impl Deliver for Registry {
    fn deliver(&self, committed: &[Committed]) {
        let mut wakeups = Wakeups::default();
        let mut state = self.state();
        for message in committed {
            match message {
                Committed::Room(message) => {
                    Self::deliver_message(&mut state, message, &mut wakeups)
                }
                Committed::Direct(message) => Self::deliver_direct(&state, message, &mut wakeups),
            }
        }
    }
}

/// Queues `event` to each of `members`; a member whose queue is full is
/// kicked rather than waited for.
fn queue_to(
    conns: &HashMap<ConnId, Conn>,
    members: impl IntoIterator<Item = ConnId>,
    event: &Arc<Outgoing>,
    wakeups: &mut Wakeups,
) {
    for member in members {
        let Some(conn) = conns.get(&member) else {
            continue;
        };
        let full = conn.outbox.push(Arc::clone(event), wakeups) == Err(Full);
        if full && conn.outbox.kick(Kick::TooSlow, wakeups) {
            metrics::counter!("switchboard_slow_consumers_dropped_total").increment(1);
        }
    }
}
