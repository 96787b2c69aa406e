//! One connection's conversation with the hub, whatever its transport or wire
//! format: names are checked, the rate limit applied and requests carried out
//! here, so the line and JSON protocols behave the same.
//!
//! [`Session::handle`] returns the direct replies (acks, errors, `who`,
//! history). The transport writes them before anything queued to the
//! connection afterwards: that is what makes `join` with `since` replay stored
//! messages first and live ones after, with no gap and nothing twice.

use std::sync::Arc;
use std::time::Instant;

use crate::hub::event::{ErrorCode, Event, Outgoing, Reference};
use crate::hub::names::{NameError, Nick, RoomName};
use crate::hub::queue::Inbox;
use crate::hub::rate::TokenBucket;
use crate::hub::{ConnId, ConnectionInfo, Hub, HubError, Mailbox};

/// The most messages one history request returns.
pub const MAX_HISTORY: usize = 1000;

/// How many messages a history request returns when it does not say.
pub const DEFAULT_HISTORY: usize = 50;

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
    /// Messages per second allowed on average.
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
    bucket: TokenBucket,
    max_text: usize,
}

impl Session {
    /// Registers a new connection with `hub`: its session, and the inbox
    /// its events (and the hub's kick) arrive in.
    pub fn open(hub: Hub, info: ConnectionInfo, limits: Limits) -> (Self, Inbox) {
        let fd = info.fd;
        let Mailbox { id, nick, events } = hub.register(info);
        let session = Self {
            id,
            fd,
            nick,
            rooms: Vec::new(),
            bucket: TokenBucket::new(limits.rate, limits.burst, Instant::now()),
            max_text: limits.max_text,
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

    /// Counts one input against the rate limit; the error to send when it is over.
    pub fn admit(&mut self, reference: &Reference) -> Option<Event> {
        if self.bucket.try_take(Instant::now()) {
            return None;
        }
        Some(Event::error(
            ErrorCode::RateLimited,
            format!(
                "slow down: try again in {} ms",
                self.bucket.wait().as_millis().max(1)
            ),
            reference.clone(),
        ))
    }

    /// Carries out `request` and returns the direct replies, in order.
    pub fn handle(&mut self, request: Request) -> Vec<Arc<Outgoing>> {
        let Request { command, reference } = request;
        let replies = match command {
            Command::Nick(nick) => self.change_nick(&nick, &reference),
            Command::Join { room, since } => self.join(&room, since, &reference),
            Command::Part(room) => self.part(room.as_deref(), &reference),
            Command::Say { room, text } => self.say(room.as_deref(), &text, &reference),
            Command::Dm { to, text } => self.dm(&to, &text, &reference),
            Command::History { room, since, limit } => {
                self.history(room.as_deref(), since, limit, &reference)
            }
            Command::Who(room) => self.who(room.as_deref(), &reference),
            Command::Rooms => Ok(vec![Event::Rooms(
                self.hub
                    .rooms()
                    .into_iter()
                    .map(|(room, members, _)| (room, members))
                    .collect(),
            )]),
        };
        replies
            .unwrap_or_else(|error| vec![error])
            .into_iter()
            .map(Outgoing::new)
            .collect()
    }

    /// `nick`: check, claim, confirm.
    fn change_nick(&mut self, nick: &str, reference: &Reference) -> Result<Vec<Event>, Event> {
        let nick = Nick::parse(nick).map_err(|e| name_error(e, reference))?;
        self.hub
            .set_nick(self.id, nick.clone())
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
        let mut replies = vec![Event::Joined {
            room: room.clone(),
            nick: self.nick.clone(),
            reference: reference.clone(),
        }];
        if let Some(since) = since {
            let stored = self
                .hub
                .history()
                .range(&room, since, joined.last_id, usize::MAX)
                .map_err(|e| hub_error(e.into(), reference))?;
            replies.extend(stored.into_iter().map(Event::Message));
        }
        Ok(replies)
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

    /// `say`: the message reaches every member (this one too) through the queue.
    fn say(
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
            .map_err(|e| hub_error(e, reference))?;
        Ok(vec![Event::Ack {
            reference: reference.clone(),
            id: Some(id),
            nick: None,
        }])
    }

    /// `dm`: the recipient gets it queued, the sender a copy and an ack.
    fn dm(&mut self, to: &str, text: &str, reference: &Reference) -> Result<Vec<Event>, Event> {
        let to = Nick::parse(to).map_err(|e| name_error(e, reference))?;
        self.check_text(text, reference)?;
        let message = self
            .hub
            .dm(self.id, &to, text)
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
    fn history(
        &mut self,
        room: Option<&str>,
        since: Option<u64>,
        limit: Option<usize>,
        reference: &Reference,
    ) -> Result<Vec<Event>, Event> {
        let room = self.room_or_current(room, reference)?;
        let limit = limit.unwrap_or(DEFAULT_HISTORY).min(MAX_HISTORY);
        let history = self.hub.history();
        let messages = match since {
            Some(since) => history.range(&room, since, u64::MAX, limit),
            None => history.latest(&room, limit),
        }
        .map_err(|e| hub_error(e.into(), reference))?;
        Ok(vec![Event::History {
            room,
            messages,
            reference: reference.clone(),
        }])
    }

    /// `who`: the members of the named or current room.
    fn who(&mut self, room: Option<&str>, reference: &Reference) -> Result<Vec<Event>, Event> {
        let room = self.room_or_current(room, reference)?;
        Ok(vec![Event::Who {
            nicks: self.hub.who(&room),
            room,
            reference: reference.clone(),
        }])
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

    /// Refuses empty and over-long texts.
    fn check_text(&self, text: &str, reference: &Reference) -> Result<(), Event> {
        if text.is_empty() {
            return Err(Event::error(
                ErrorCode::EmptyText,
                "empty message",
                reference.clone(),
            ));
        }
        if text.len() > self.max_text {
            return Err(Event::error(
                ErrorCode::TooLong,
                format!("message too long (limit {} bytes)", self.max_text),
                reference.clone(),
            ));
        }
        Ok(())
    }
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
        HubError::Gone | HubError::Storage(_) => ErrorCode::Internal,
    };
    Event::error(code, error.to_string(), reference.clone())
}
