//! What this node has delivered, room by room, and the senders waiting for
//! their own message to be delivered before they are acknowledged. No I/O:
//! the subscriber task and the appenders share it behind a lock.
//!
//! The order of a room's messages is the order Redis ran the append script
//! in, which is the order of their ids. The subscriber delivers each room's
//! messages in that order, once: an id at or below the room's cursor is a
//! repeat, an id past `cursor + 1` leaves a gap to fill from the stream first.

use std::collections::{BTreeMap, HashMap};

use crate::log::{Committed, receipt};
use crate::model::RoomName;

/// Where a message stands against a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Delivered already: drop it.
    Repeat,
    /// The next one: deliver it.
    Next,
    /// Later than the next one: fill `(cursor, id)` from the stream first.
    After {
        /// The last id delivered.
        cursor: u64,
    },
}

/// One sequence (a room, or the direct messages): the last id delivered and
/// the receipts waiting for their id.
#[derive(Debug, Default)]
struct Cursor {
    delivered: u64,
    waiting: BTreeMap<u64, (receipt::Sender, Committed)>,
}

impl Cursor {
    /// Where `id` stands.
    fn position(&self, id: u64) -> Position {
        match id {
            id if id <= self.delivered => Position::Repeat,
            id if id == self.delivered + 1 => Position::Next,
            _ => Position::After {
                cursor: self.delivered,
            },
        }
    }

    /// Moves the cursor to `id`; the receipts now due.
    fn advance(&mut self, id: u64) -> Vec<(receipt::Sender, Committed)> {
        self.delivered = self.delivered.max(id);
        let later = self.waiting.split_off(&(self.delivered + 1));
        std::mem::replace(&mut self.waiting, later)
            .into_values()
            .collect()
    }
}

/// Every sequence this node delivers.
#[derive(Debug, Default)]
pub struct Cursors {
    rooms: HashMap<RoomName, Cursor>,
    direct: Cursor,
    /// Whether the subscriber is connected: while it is not, a sender is
    /// acknowledged as soon as Redis has its message (it is delivered on
    /// catch-up).
    subscribed: bool,
}

/// Which sequence a message belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Sequence<'a> {
    /// A room's messages.
    Room(&'a RoomName),
    /// The direct messages.
    Direct,
}

impl Cursors {
    /// Cursors starting at each room's last id.
    pub fn starting_at(rooms: impl IntoIterator<Item = (RoomName, u64)>, direct: u64) -> Self {
        let rooms = rooms
            .into_iter()
            .map(|(room, delivered)| {
                let cursor = Cursor {
                    delivered,
                    ..Cursor::default()
                };
                (room, cursor)
            })
            .collect();
        Self {
            rooms,
            direct: Cursor {
                delivered: direct,
                ..Cursor::default()
            },
            subscribed: false,
        }
    }

    /// The sequence's cursor (a room not seen yet starts at 0).
    fn cursor(&mut self, sequence: Sequence<'_>) -> &mut Cursor {
        match sequence {
            Sequence::Room(room) => self.rooms.entry(room.clone()).or_default(),
            Sequence::Direct => &mut self.direct,
        }
    }

    /// The last id of `sequence` delivered.
    pub fn last(&mut self, sequence: Sequence<'_>) -> u64 {
        self.cursor(sequence).delivered
    }

    /// Where message `id` of `sequence` stands.
    pub fn position(&mut self, sequence: Sequence<'_>, id: u64) -> Position {
        self.cursor(sequence).position(id)
    }

    /// Records that `sequence` is delivered up to `id`; the receipts now due.
    pub fn delivered(
        &mut self,
        sequence: Sequence<'_>,
        id: u64,
    ) -> Vec<(receipt::Sender, Committed)> {
        self.cursor(sequence).advance(id)
    }

    /// A sender's message is in Redis with `id`: its receipt, if it is due
    /// now (delivered already, or no subscriber to wait for), else `None`
    /// and it waits for [`Cursors::delivered`].
    pub fn committed(
        &mut self,
        sequence: Sequence<'_>,
        id: u64,
        sender: receipt::Sender,
        message: Committed,
    ) -> Option<(receipt::Sender, Committed)> {
        let subscribed = self.subscribed;
        let cursor = self.cursor(sequence);
        if !subscribed || id <= cursor.delivered {
            return Some((sender, message));
        }
        cursor.waiting.insert(id, (sender, message));
        None
    }

    /// The subscriber connected or lost its connection. Losing it makes
    /// every waiting receipt due: those messages are in Redis, and the
    /// catch-up after the reconnection delivers them.
    pub fn set_subscribed(&mut self, subscribed: bool) -> Vec<(receipt::Sender, Committed)> {
        self.subscribed = subscribed;
        if subscribed {
            return Vec::new();
        }
        let rooms = self.rooms.values_mut().map(|c| &mut c.waiting);
        rooms
            .chain([&mut self.direct.waiting])
            .flat_map(|waiting| std::mem::take(waiting).into_values())
            .collect()
    }

    /// Whether the subscriber is connected and caught up.
    pub fn subscribed(&self) -> bool {
        self.subscribed
    }

    /// Every room's cursor, for the catch-up after a reconnection.
    pub fn rooms(&self) -> impl Iterator<Item = (&RoomName, u64)> {
        self.rooms.iter().map(|(room, c)| (room, c.delivered))
    }

    /// The direct messages' cursor.
    pub fn direct(&self) -> u64 {
        self.direct.delivered
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::log::Receipt;
    use crate::model::{ChatMessage, Nick};

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn message(room_name: &str, id: u64) -> Committed {
        Committed::Room(Arc::new(ChatMessage {
            room: room(room_name),
            id,
            from: Nick::parse("alice").unwrap(),
            text: "hi".into(),
            ts: SystemTime::UNIX_EPOCH,
        }))
    }

    fn waiting(cursors: &mut Cursors, room_name: &str, id: u64) -> Receipt {
        let (sender, receipt) = receipt::receipt();
        let lobby = room(room_name);
        let due = cursors.committed(Sequence::Room(&lobby), id, sender, message(room_name, id));
        assert!(due.is_none(), "{id} is not delivered yet");
        receipt
    }

    #[test]
    fn positions_follow_the_cursor() {
        let lobby = room("lobby");
        let mut cursors = Cursors::starting_at([(lobby.clone(), 5)], 0);
        assert_eq!(
            cursors.position(Sequence::Room(&lobby), 5),
            Position::Repeat
        );
        assert_eq!(cursors.position(Sequence::Room(&lobby), 6), Position::Next);
        assert_eq!(
            cursors.position(Sequence::Room(&lobby), 9),
            Position::After { cursor: 5 }
        );
        let fresh = room("fresh");
        assert_eq!(cursors.position(Sequence::Room(&fresh), 1), Position::Next);
        assert_eq!(
            cursors.position(Sequence::Direct, 2),
            Position::After { cursor: 0 }
        );
    }

    #[tokio::test]
    async fn a_sender_waits_for_its_own_message_to_be_delivered() {
        let lobby = room("lobby");
        let mut cursors = Cursors::starting_at([], 0);
        cursors.set_subscribed(true);
        let first = waiting(&mut cursors, "lobby", 1);
        let third = waiting(&mut cursors, "lobby", 3);
        let due = cursors.delivered(Sequence::Room(&lobby), 2);
        assert_eq!(due.len(), 1, "only id 1 is due at 2");
        for (sender, message) in due {
            sender.send(Ok(message));
        }
        assert!(first.await.is_ok());
        let (sender, receipt) = receipt::receipt();
        let already = cursors.committed(Sequence::Room(&lobby), 2, sender, message("lobby", 2));
        assert!(
            already.is_some(),
            "2 was delivered before its sender heard back"
        );
        drop(receipt);
        let due = cursors.set_subscribed(false);
        assert_eq!(due.len(), 1, "losing the subscriber frees the waiting");
        for (sender, message) in due {
            sender.send(Ok(message));
        }
        assert!(third.await.is_ok());
    }

    #[test]
    fn without_a_subscriber_a_sender_is_due_at_once() {
        let lobby = room("lobby");
        let mut cursors = Cursors::starting_at([], 0);
        let (sender, _receipt) = receipt::receipt();
        let due = cursors.committed(Sequence::Room(&lobby), 1, sender, message("lobby", 1));
        assert!(due.is_some());
    }
}
