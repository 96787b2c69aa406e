//! Socket plumbing shared by every server and client: addresses, binding,
//! the accept loop, outgoing connections, the WebSocket handshake and shutdown.

pub mod accept;
pub mod addr;
pub mod dial;
pub mod fd_limit;
pub mod listener;
pub mod shutdown;
pub mod tls;
pub mod websocket;
