//! One connection's conversation with the hub, whatever its transport or wire
//! format: names are checked, the rate limit applied and requests carried out
//! here, so the line and JSON protocols behave the same.
//!
//! [`Session::handle`] returns the direct replies (acks, errors, `who`,
//! history) once the hub has an answer: a message's ack comes after the log
//! committed it. The transport writes the replies, then the stored messages
//! a `join` with `since` replays ([`Session::replay_page`], a page at a
//! time), and only then anything queued to the connection: stored messages
//! first and live ones after, with no gap and nothing twice.

use std::sync::Arc;

use crate::hub::event::{ErrorCode, Event, Outgoing, Reference};
use crate::hub::queue::Inbox;
use crate::hub::rate::TokenBucket;
use crate::hub::{ConnId, ConnectionInfo, Hub, HubError, Mailbox};
use crate::log::Query;
use crate::model::ChatMessage;
use crate::model::names::{NameError, Nick, RoomName};

/// The most messages one history request returns.
pub const MAX_HISTORY: usize = 1000;

/// How many messages a history request returns when it does not say.
pub const DEFAULT_HISTORY: usize = 50;

/// How many stored messages a replay reads and writes at a time.
pub const REPLAY_PAGE: usize = 256;

/// What a client asks of the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Change nick.
    Nick(String),
    /// Join a room, replaying stored messages after `since` first.
    Join {
        /// The room, with or without `#`.
        room: String,
        /// The last id the client has seen.
        since: Option<u64>,
    },
    /// Leave a room (the current one when `None`).
    Part(Option<String>),
    /// Say something in a room (the current one when `None`).
    Say {
        /// The room.
        room: Option<String>,
        /// The text.
        text: String,
    },
    /// Send a direct message.
    Dm {
        /// The recipient's nick.
        to: String,
        /// The text.
        text: String,
    },
    /// Stored messages of a room (the current one when `None`).
    History {
        /// The room.
        room: Option<String>,
        /// Only messages after this id.
        since: Option<u64>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// Who is in a room (the current one when `None`).
    Who(Option<String>),
    /// The live rooms.
    Rooms,
}

/// A command with the client's `ref`, to be echoed in the reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// The client's tag for the reply.
    pub reference: Reference,
}

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages per second allowed on average; 0 turns the limit off.
    pub rate: f64,
    /// Messages allowed in a burst.
    pub burst: u32,
    /// The longest text, in bytes.
    pub max_text: usize,
}

/// One connection's state in the conversation.
pub struct Session {
    hub: Hub,
    id: ConnId,
    fd: i32,
    nick: Nick,
    /// Rooms in the order joined; the last is where plain lines go.
    rooms: Vec<RoomName>,
    bucket: Option<TokenBucket>,
    max_text: usize,
    /// Stored messages a `join` with `since` still has to replay.
    replay: Option<Box<Replay>>,
}

/// The part of a room's history a `join` with `since` replays: the ids in
/// `(after, up_to]`, `up_to` being the last id delivered when it joined.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Replay {
    room: RoomName,
    after: u64,
    up_to: u64,
}

impl Session {
    /// Registers a new connection with `hub`: its session, and the inbox
    /// its events (and the hub's kick) arrive in. `heard` says whether it
    /// has spoken already; one that has not waits for [`Self::hear`]
    /// (docs/PROTOCOL.md 5).
    pub fn open(hub: Hub, info: ConnectionInfo, limits: Limits, heard: bool) -> (Self, Inbox) {
        let fd = info.fd;
        let Mailbox { id, nick, events } = hub.register(info, heard);
        let session = Self {
            id,
            fd,
            nick,
            rooms: Vec::new(),
            bucket: (limits.rate > 0.0).then(|| TokenBucket::new(limits.rate, limits.burst, now())),
            max_text: limits.max_text,
            replay: None,
            hub,
        };
        (session, events)
    }

    /// The connection's file descriptor.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// The connection's nick.
    pub fn nick(&self) -> &Nick {
        &self.nick
    }

    /// The room plain lines go to, if any.
    pub fn current_room(&self) -> Option<&RoomName> {
        self.rooms.last()
    }

    /// Takes the connection out of the hub: its rooms are told it left and it
    /// gets nothing more. Safe to call again.
    pub fn disconnect(&self) {
        self.hub.unregister(self.id);
    }

    /// The greeting event.
    pub fn welcome(&self) -> Event {
        Event::Welcome {
            nick: self.nick.clone(),
            fd: self.fd,
        }
    }

    /// The connection said its first line: it becomes someone others can
    /// see, joining `room` (its join is announced) and reachable by direct
    /// messages. The replies to the join.
    pub fn hear(&mut self, room: &RoomName) -> Vec<Arc<Outgoing>> {
        self.hub.hear(self.id);
        let joined = self.join(room.as_str(), None, &None);
        joined
            .unwrap_or_else(|error| vec![error])
            .into_iter()
            .map(Outgoing::new)
            .collect()
    }

    /// Takes `nick` before the welcome (a WebSocket's `?nick=`), so the
    /// welcome carries it; the error to send first when it cannot be had.
    pub async fn claim_nick(&mut self, nick: &str) -> Option<Event> {
        self.change_nick(nick, &None).await.err()
    }

    /// Counts one input against the rate limit; the error to send when it is over.
    pub fn admit(&mut self, reference: &Reference) -> Option<Event> {
        let bucket = self.bucket.as_mut()?;
        if bucket.try_take(now()) {
            return None;
        }
        Some(Event::error(
            ErrorCode::RateLimited,
            format!(
                "slow down: try again in {} ms",
                bucket.wait().as_millis().max(1)
            ),
            reference.clone(),
        ))
    }

    /// Carries out `request` and returns the direct replies, in order.
    pub async fn handle(&mut self, request: Request) -> Vec<Arc<Outgoing>> {
        let Request { command, reference } = request;
        let replies = match command {
            Command::Nick(nick) => self.change_nick(&nick, &reference).await,
            Command::Join { room, since } => self.join(&room, since, &reference),
            Command::Part(room) => self.part(room.as_deref(), &reference),
            Command::Say { room, text } => self.say(room.as_deref(), &text, &reference).await,
            Command::Dm { to, text } => self.dm(&to, &text, &reference).await,
            Command::History { room, since, limit } => {
                self.history(room.as_deref(), since, limit, &reference)
                    .await
            }
            Command::Who(room) => self.who(room.as_deref(), &reference).await,
            Command::Rooms => self.rooms(&reference).await,
        };
        replies
            .unwrap_or_else(|error| vec![error])
            .into_iter()
            .map(Outgoing::new)
            .collect()
    }

    /// `nick`: check, claim, confirm.
    async fn change_nick(
        &mut self,
        nick: &str,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let nick = Nick::parse(nick).map_err(|e| name_error(e, reference))?;
        self.hub
            .set_nick(self.id, nick.clone())
            .await
            .map_err(|e| hub_error(e, reference))?;
        self.nick = nick.clone();
        Ok(vec![Event::Ack {
            reference: reference.clone(),
            id: None,
            nick: Some(nick),
        }])
    }

    /// `join`: become a member, then replay what came after `since`.
    fn join(
        &mut self,
        room: &str,
        since: Option<u64>,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let room = RoomName::parse(room).map_err(|e| name_error(e, reference))?;
        let joined = self
            .hub
            .join(self.id, &room)
            .map_err(|e| hub_error(e, reference))?;
        self.rooms.retain(|r| *r != room);
        // Sized to fit: most connections stay in one room for their life.
        self.rooms.reserve_exact(1);
        self.rooms.push(room.clone());
        let replies = vec![Event::Joined {
            room: room.clone(),
            nick: self.nick.clone(),
            reference: reference.clone(),
        }];
        self.replay = since.filter(|since| *since < joined.last_id).map(|after| {
            Box::new(Replay {
                room,
                after,
                up_to: joined.last_id,
            })
        });
        Ok(replies)
    }

    /// Whether a `join` with `since` still has stored messages to replay.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// The next page of stored messages a `join` with `since` replays, or
    /// `None` when it is done. A page that cannot be read ends the replay
    /// with an error.
    pub async fn replay_page(&mut self) -> Option<Vec<Arc<Outgoing>>> {
        let replay = self.replay.take()?;
        let query = Query::After {
            room: replay.room.clone(),
            after: replay.after,
            up_to: replay.up_to,
            limit: REPLAY_PAGE,
        };
        let page = match self.hub.history(query).await {
            Ok(page) => page,
            Err(err) => return Some(vec![Outgoing::new(hub_error(err, &None))]),
        };
        if let Some(last) = page.last().filter(|_| page.len() == REPLAY_PAGE) {
            self.replay = Some(Box::new(Replay {
                after: last.id,
                ..(*replay).clone()
            }));
        }
        let mut events: Vec<Arc<Outgoing>> = lost(&replay, &page)
            .map(Outgoing::new)
            .into_iter()
            .collect();
        events.extend(
            page.into_iter()
                .map(|message| Outgoing::new(Event::Message(message))),
        );
        (!events.is_empty()).then_some(events)
    }

    /// `part`: leave the named or current room.
    fn part(&mut self, room: Option<&str>, reference: &Reference) -> Result<Vec<Event>, Event> {
        let room = self.room_or_current(room, reference)?;
        self.hub
            .part(self.id, &room)
            .map_err(|e| hub_error(e, reference))?;
        self.rooms.retain(|r| *r != room);
        Ok(vec![Event::Parted {
            room,
            nick: self.nick.clone(),
            reference: reference.clone(),
        }])
    }

    /// `say`: the message reaches every member (this one too) through the
    /// queue, and the ack comes once it is committed.
    async fn say(
        &mut self,
        room: Option<&str>,
        text: &str,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let room = self.room_or_current(room, reference)?;
        self.check_text(text, reference)?;
        let id = self
            .hub
            .say(self.id, &room, text)
            .await
            .map_err(|e| hub_error(e, reference))?;
        Ok(vec![Event::Ack {
            reference: reference.clone(),
            id: Some(id),
            nick: None,
        }])
    }

    /// `dm`: the recipient gets it queued, the sender a copy and an ack.
    async fn dm(
        &mut self,
        to: &str,
        text: &str,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let to = Nick::parse(to).map_err(|e| name_error(e, reference))?;
        self.check_text(text, reference)?;
        let message = self
            .hub
            .dm(self.id, &to, text)
            .await
            .map_err(|e| hub_error(e, reference))?;
        let id = message.id;
        Ok(vec![
            Event::DmSent(message),
            Event::Ack {
                reference: reference.clone(),
                id: Some(id),
                nick: None,
            },
        ])
    }

    /// `history`: stored messages, the newest `limit` or those after `since`.
    async fn history(
        &mut self,
        room: Option<&str>,
        since: Option<u64>,
        limit: Option<usize>,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let room = self.room_or_current(room, reference)?;
        let limit = limit.unwrap_or(DEFAULT_HISTORY).min(MAX_HISTORY);
        let query = match since {
            Some(since) => Query::After {
                room: room.clone(),
                after: since,
                up_to: u64::MAX,
                limit,
            },
            None => Query::Latest {
                room: room.clone(),
                limit,
            },
        };
        let messages = self
            .hub
            .history(query)
            .await
            .map_err(|e| hub_error(e, reference))?;
        Ok(vec![Event::History {
            room,
            messages,
            reference: reference.clone(),
        }])
    }

    /// `who`: the members of the named or current room, on every node.
    async fn who(
        &mut self,
        room: Option<&str>,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let room = self.room_or_current(room, reference)?;
        let nicks = self
            .hub
            .who(&room)
            .await
            .map_err(|e| hub_error(e, reference))?;
        Ok(vec![Event::Who {
            nicks,
            room,
            reference: reference.clone(),
        }])
    }

    /// `rooms`: the rooms with members or history, and their member counts.
    async fn rooms(&mut self, reference: &Reference) -> Result<Vec<Event>, Event> {
        let rooms = self
            .hub
            .rooms()
            .await
            .map_err(|e| hub_error(e, reference))?;
        Ok(vec![Event::Rooms(
            rooms
                .into_iter()
                .map(|(room, members, _)| (room, members))
                .collect(),
        )])
    }

    /// The named room, or the current one when none is named.
    fn room_or_current(
        &self,
        room: Option<&str>,
        reference: &Reference,
    ) -> Result<RoomName, Event> {
        match room {
            Some(room) => RoomName::parse(room).map_err(|e| name_error(e, reference)),
            None => self.current_room().cloned().ok_or_else(|| {
                Event::error(
                    ErrorCode::NotInRoom,
                    "you are not in a room: /join one",
                    reference.clone(),
                )
            }),
        }
    }

    /// Refuses empty (or only white space) and over-long texts.
    fn check_text(&self, text: &str, reference: &Reference) -> Result<(), Event> {
        match refuse_text(text, self.max_text) {
            Some((code, message)) => Err(Event::error(code, message, reference.clone())),
            None => Ok(()),
        }
    }
}

/// Why `text` cannot be said, when it cannot (docs/PROTOCOL.md 5.5): it is
/// empty, or longer than `max_text` bytes. Every transport asks this.
pub fn refuse_text(text: &str, max_text: usize) -> Option<(ErrorCode, String)> {
    if text.trim().is_empty() {
        return Some((ErrorCode::EmptyText, "empty message".into()));
    }
    (text.len() > max_text).then(|| {
        let message = format!("message too long (limit {max_text} bytes)");
        (ErrorCode::TooLong, message)
    })
}

/// The error telling a client that messages it asked to replay are no
/// longer stored (deleted by retention, or lost with the store's data)
/// rather than pretending nothing was missed; `None` when nothing is
/// missing. A replay from 0 ("everything") is not told what retention
/// deleted.
fn lost(replay: &Replay, page: &[Arc<ChatMessage>]) -> Option<Event> {
    if replay.after == 0 {
        return None;
    }
    let first_missing = replay.after + 1;
    let last_missing = match page.first() {
        Some(first) if first.id > first_missing => first.id - 1,
        None if replay.up_to >= first_missing => replay.up_to,
        _ => return None,
    };
    let range = if last_missing == first_missing {
        format!("message {first_missing}")
    } else {
        format!("messages {first_missing}-{last_missing}")
    };
    Some(Event::error(
        ErrorCode::HistoryLost,
        format!(
            "{range} of {} are no longer stored (deleted by retention, or lost by the store)",
            replay.room
        ),
        None,
    ))
}

/// The error reply for a refused name.
fn name_error(error: NameError, reference: &Reference) -> Event {
    let code = match error {
        NameError::Nick => ErrorCode::InvalidNick,
        NameError::Room => ErrorCode::InvalidRoom,
    };
    Event::error(code, error.to_string(), reference.clone())
}

/// The error reply for a refused request.
fn hub_error(error: HubError, reference: &Reference) -> Event {
    let code = match &error {
        HubError::NickTaken(_) => ErrorCode::NickTaken,
        HubError::NotInRoom(_) => ErrorCode::NotInRoom,
        HubError::NoSuchNick(_) => ErrorCode::NoSuchNick,
        HubError::Log(_) | HubError::Cluster(_) => ErrorCode::Unavailable,
        HubError::Reserved(_) => ErrorCode::InvalidNick,
        HubError::TooManyRooms(_) => ErrorCode::TooManyRooms,
        HubError::Gone => ErrorCode::Internal,
    };
    Event::error(code, error.to_string(), reference.clone())
}

/// Now, on tokio's clock (which tests pause and move by hand).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
