//! The clients: `send` (one message, one reply) and `connect` (interactive).

pub mod connect;
pub mod send;
