//! switchboard makes network sockets tangible: an echo server and its clients
//! over TCP, UDP and WebSocket (and, in later parts, a chat hub).
//!
//! Layout: [`net`] is the socket plumbing every server and client shares;
//! [`echo`] is the echo server; [`client`] holds `send` and `connect`;
//! [`bench`] is the load generator. The
//! binary (`src/main.rs`, `src/cli/`) only parses arguments and calls these.

pub mod bench;
pub mod client;
pub mod echo;
pub mod error;
pub mod net;

pub use error::{Error, Result};
