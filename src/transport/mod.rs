//! The edges of the chat hub: turning bytes from a kind of client into hub
//! requests, and hub events into bytes. [`line`] serves raw TCP clients
//! ([`framing`] splits their input into lines), [`ws`] WebSocket clients and
//! [`http`] short-lived HTTP requests.

pub mod framing;
pub mod http;
pub mod line;
pub mod ws;
