//! The accept loop every TCP server shares.
//!
//! It owns one task per connection (a [`TaskTracker`]), logs each peer and its
//! file descriptor when it connects and when it goes away (or hands it to a
//! session that logs that itself, [`Ended::HandedOff`]), survives accept
//! errors (running out of file descriptors backs off instead of ending the
//! server) and, on shutdown, stops accepting and waits for the connections.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Result;
use crate::net::addr::canonical;

/// How long connections get to finish after shutdown before the server returns.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long the loop pauses after an accept error such as "too many open files".
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Who is on the other end of a connection: the peer and our file descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's address, IPv4-mapped addresses shown as plain IPv4.
    pub addr: SocketAddr,
    /// The connection's file descriptor in this process.
    pub fd: RawFd,
}

impl Peer {
    /// Identifies an accepted stream.
    pub fn of(stream: &TcpStream, addr: SocketAddr) -> Self {
        Self {
            addr: canonical(addr),
            fd: stream.as_raw_fd(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fd {})", self.addr, self.fd)
    }
}

/// How a connection's task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The connection is closed.
    Closed,
    /// The connection lives on in a session of its own (a WebSocket), which
    /// logs its end.
    HandedOff,
}

/// What the accept loop runs for a connection: it is served, or refused in
/// words it reads (connection limits). A refused connection is logged at
/// debug only, so a flood of them cannot flood the log; `/metrics` counts
/// them.
#[derive(Debug)]
pub enum Handled<F> {
    /// The connection is let in and served by this future.
    Served(F),
    /// The connection is turned away by this future.
    Refused(F),
}

impl From<()> for Ended {
    fn from((): ()) -> Self {
        Self::Closed
    }
}

pin_project_lite::pin_project! {
    /// A connection's future that logs the disconnect when it ends.
    ///
    /// Hand-written instead of `async move { log(connection.await) }`: an async
    /// block stores the captured future and the awaited one separately, which
    /// would double the size of every idle connection.
    struct LoggedConnection<F> {
        #[pin]
        connection: F,
        peer: Peer,
        refused: bool,
    }
}

impl<F, O> Future for LoggedConnection<F>
where
    F: Future<Output = Result<O>>,
    O: Into<Ended>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let peer = *this.peer;
        let refused = *this.refused;
        this.connection
            .poll(cx)
            .map(|outcome| match outcome.map(Into::into) {
                _ if refused => tracing::debug!("{peer}: refused and gone"),
                Ok(Ended::Closed) => tracing::info!("disconnected {peer}"),
                Ok(Ended::HandedOff) => tracing::debug!("{peer}: handed to its session"),
                Err(err) => tracing::info!("disconnected {peer}: {err}"),
            })
    }
}

/// Accepts connections on `listener` until `shutdown` is cancelled, running
/// what `handle` gives for each on its own task, then waits (at most
/// [`SHUTDOWN_GRACE`]) for those tasks to end. A task's output says how the
/// connection ended (`()`: closed).
pub async fn serve<H, F, O>(listener: TcpListener, shutdown: CancellationToken, handle: H)
where
    H: Fn(TcpStream, Peer) -> Handled<F>,
    F: Future<Output = Result<O>> + Send + 'static,
    O: Into<Ended> + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                let peer = Peer::of(&stream, addr);
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!("{peer}: cannot set TCP_NODELAY: {err}");
                }
                let (connection, refused) = match handle(stream, peer) {
                    Handled::Served(connection) => {
                        tracing::info!("connected {peer}");
                        (connection, false)
                    }
                    Handled::Refused(connection) => (connection, true),
                };
                connections.spawn(LoggedConnection {
                    connection,
                    peer,
                    refused,
                });
            }
            Err(err) => {
                tracing::warn!("accept failed: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("{} connections did not close in time", connections.len());
    }
}
