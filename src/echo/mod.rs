//! `switchboard echo`: the echo server over TCP, UDP and WebSocket.
//!
//! [`reply`] decides what a reply looks like; [`tcp`], [`udp`] and [`ws`] move
//! the bytes. The entry points take an already bound socket and a shutdown
//! token, so tests bind port 0 and hand the socket in.

pub mod reply;
pub mod tcp;
pub mod udp;
pub mod ws;

use std::sync::Arc;

use futures_util::future::Either;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::net::accept::{self, Handled};
pub use reply::ReplyStyle;

/// The port `switchboard echo` listens on by default, as in the Node tutorial.
pub const DEFAULT_PORT: u16 = 3000;

/// The prefix the Node tutorial's server puts before each reply.
pub const DEFAULT_PREFIX: &str = "Echo: ";

/// The largest WebSocket message echoed by default.
pub const DEFAULT_MAX_WS_MESSAGE: usize = 16 * 1024 * 1024;

/// How the echo server answers.
#[derive(Clone, Debug)]
pub struct EchoOptions {
    /// How replies are formed.
    pub style: ReplyStyle,
    /// Whether to end each connection after its first reply.
    pub close_after_reply: bool,
    /// `Some(largest message accepted)` to speak WebSocket, `None` for raw TCP.
    pub web_socket: Option<usize>,
}

/// Serves the echo on `listener`, as raw TCP or WebSocket as `options` say,
/// until `shutdown` is cancelled and every connection has ended.
pub async fn run_stream(listener: TcpListener, options: EchoOptions, shutdown: CancellationToken) {
    let options = Arc::new(options);
    let connection_shutdown = shutdown.clone();
    accept::serve(listener, shutdown, move |stream, _peer| {
        let (options, shutdown) = (Arc::clone(&options), connection_shutdown.clone());
        Handled::Served(match options.web_socket {
            // Boxed: the WebSocket future (hyper's state included) is several
            // times the TCP one, and every task would otherwise be sized for it.
            Some(_) => Either::Left(Box::pin(ws::serve_connection(stream, options, shutdown))),
            None => Either::Right(tcp::serve_connection(stream, options, shutdown)),
        })
    })
    .await;
}

/// Serves the UDP echo on `socket` until `shutdown` is cancelled.
pub async fn run_udp(socket: UdpSocket, options: EchoOptions, shutdown: CancellationToken) {
    udp::serve(socket, &options.style, &shutdown).await;
}
