//! The vocabulary every layer shares: names ([`names`]) and the messages
//! people send ([`message`]). A leaf: nothing here imports anything else of
//! the crate, so the hub, the message log, the protocols and the cluster
//! layer all use these types without importing one another.

pub mod message;
pub mod names;

pub use message::{ChatMessage, DirectMessage};
pub use names::{NameError, Nick, RoomName};
