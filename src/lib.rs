//! switchboard makes network sockets tangible: an echo server and its clients
//! over TCP, UDP and WebSocket, and a chat hub where they meet in rooms.
//!
//! Layout: [`net`] is the socket plumbing every server and client shares;
//! [`echo`] is the echo server; [`client`] holds `send` and `connect`;
//! [`bench`] is the load generator. The chat hub is [`hub`] (rooms, nicks,
//! ids, presence; no sockets) in the middle, [`transport`] at the edges,
//! [`protocol`] for the wire formats, [`storage`] for history, [`limits`]
//! for who may connect, and [`server`] to accept and dispatch connections. The
//! binary (`src/main.rs`, `src/cli/`) only parses arguments and calls these.

pub mod auth;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod echo;
pub mod error;
pub mod hub;
pub mod limits;
pub mod log;
pub mod model;
pub mod net;
pub mod protocol;
pub mod server;
pub mod transport;

pub use error::{Error, Result};
