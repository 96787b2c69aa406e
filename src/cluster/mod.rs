//! What several nodes of one hub agree on besides the messages (which the
//! message log shares): who has which nick, who is in which room, and the
//! join, part and nick notices between nodes (docs/PROTOCOL.md 5.6). The hub
//! keeps its own connections in its registry and asks the [`Directory`]
//! about everyone else; a single node has none.
//!
//! [`redis`] is the directory kept in Redis, beside the Redis message log.

pub mod redis;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::model::{Nick, RoomName};

/// A boxed future a directory returns: one allocation per cluster-wide
/// question keeps the trait object-safe.
pub type DirectoryFuture<T> = Pin<Box<dyn Future<Output = Result<T, DirectoryError>> + Send>>;

/// Why the directory could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Someone on another node (or this one) has the nick.
    #[error("nick {0} is taken")]
    Taken(Nick),
    /// The nick is one the server gives (`guest-N`): nobody may take it.
    #[error("{0} is a name the server gives to guests: choose another")]
    Reserved(Nick),
    /// The cluster's store could not be asked.
    #[error("the cluster cannot be reached: {0}")]
    Unavailable(String),
}

/// A connection of this node, as the directory names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member(pub u64);

/// A join, part or nick change on another node, for this node's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `nick` joined `room`, which now has `members`.
    Joined {
        /// The room.
        room: RoomName,
        /// Who joined.
        nick: Nick,
        /// The room's members on every node, after the join.
        members: usize,
    },
    /// `nick` left `room`, which now has `members`.
    Parted {
        /// The room.
        room: RoomName,
        /// Who left.
        nick: Nick,
        /// The room's members on every node, after the part.
        members: usize,
    },
    /// `old` is now known as `new`, in `room`.
    Renamed {
        /// A room the member is in.
        room: RoomName,
        /// The old nick.
        old: Nick,
        /// The new nick.
        new: Nick,
        /// The room's members on every node.
        members: usize,
    },
}

/// Where other nodes' notices go: the hub's registry.
pub trait Notices: Send + Sync + 'static {
    /// Tells this node's members of `room` about `notice`.
    fn notice(&self, notice: &Notice);
}

/// What this node has, for the directory to publish again after the
/// cluster's store lost it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every connection, its nick and its rooms.
    pub members: Vec<(Member, Nick, Vec<RoomName>)>,
}

/// The cluster-wide view of nicks and rooms.
pub trait Directory: Send + Sync + 'static {
    /// Starts passing other nodes' notices to `notices`, and asks `snapshot`
    /// for this node's state when the store needs it again.
    fn attach(&self, notices: Arc<dyn Notices>, snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>);

    /// The number of the next `guest-N` nick, unique across the cluster.
    fn guest_number(&self) -> u64;

    /// Claims `nick` for this node across the cluster.
    fn claim(&self, nick: &Nick) -> DirectoryFuture<()>;

    /// This node has `nick` (a guest nick it gave).
    fn has(&self, nick: &Nick);

    /// This node let go of `nick` (a member renamed, or left).
    fn release(&self, nick: &Nick);

    /// `member`, known as `nick`, joined `room`.
    fn joined(&self, member: Member, nick: &Nick, room: &RoomName);

    /// `member`, known as `nick`, left `room`.
    fn parted(&self, member: Member, nick: &Nick, room: &RoomName);

    /// `member` was renamed from `old` to `new` in `rooms`.
    fn renamed(&self, member: Member, old: &Nick, new: &Nick, rooms: &[RoomName]);

    /// The nicks in `room` on every node, sorted.
    fn who(&self, room: &RoomName) -> DirectoryFuture<Vec<Nick>>;

    /// How many members each of `rooms` has on every node.
    fn member_counts(&self, rooms: Vec<RoomName>) -> DirectoryFuture<HashMap<RoomName, usize>>;

    /// Whoever has the nick `nick` on any node, as they typed it.
    fn owner(&self, nick: &Nick) -> DirectoryFuture<Option<Nick>>;

    /// Whether the cluster's store can be reached.
    ///
    /// # Errors
    /// Why not.
    fn health(&self) -> Result<(), DirectoryError>;

    /// Lets go of this node's nicks and rooms in the store, and stops.
    fn close(&self) -> DirectoryFuture<()>;
}
