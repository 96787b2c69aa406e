//! The echo server's TCP connections.
//!
//! An idle connection holds no buffer. When its socket is readable it reads
//! into a per-thread scratch buffer, forms the reply there and writes it at
//! once; only when the peer's receive window is full is the unsent rest copied
//! into a buffer the connection owns, and nothing more is read until that is
//! written. So a peer that does not read stops being read, and the server holds
//! at most one reply for it. (Hand-written over `AsyncReadExt::read` into a
//! per-connection buffer because that buffer would be held by every idle
//! connection: 10,000 idle peers would cost 10,000 buffers.)

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, ErrorKind};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::echo::EchoOptions;
use crate::echo::reply::Echoer;
use crate::error::Result;
use crate::net::read::read_drained;

/// How many bytes one read takes at most.
const READ_CHUNK: usize = 64 * 1024;

/// Buffers shared by all connections on one worker thread.
struct Scratch {
    input: Box<[u8]>,
    output: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: vec![0; READ_CHUNK].into_boxed_slice(),
        output: Vec::with_capacity(READ_CHUNK),
    });
}

/// What one read-and-reply step did.
struct Step {
    /// Reply bytes the socket did not take yet.
    unsent: Vec<u8>,
    /// Complete replies formed in this step.
    replies: usize,
    /// Whether the peer half-closed (or closed) its side.
    peer_closed: bool,
}

/// Echoes one connection until the peer closes, the first reply is written
/// (with `close_after_reply`), or `shutdown` is cancelled. Takes its options
/// and token by value so the future is all a connection's task holds.
///
/// # Errors
/// The socket error that ended the connection (a reset, …).
pub async fn serve_connection(
    mut stream: TcpStream,
    options: Arc<EchoOptions>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut echoer = Echoer::new(&options.style);
    loop {
        // poll_read_ready parks the waker in tokio's registration, which the
        // connection already pays for; `readable()` would add its own waiter
        // node to every idle connection's future.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ready = poll_fn(|cx| stream.poll_read_ready(cx)) => ready?,
        }
        let Some(step) = read_and_reply(&stream, &mut echoer)? else {
            continue;
        };
        if !step.unsent.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                written = stream.write_all(&step.unsent) => written?,
            }
        }
        if step.peer_closed || (options.close_after_reply && step.replies > 0) {
            break;
        }
    }
    match stream.shutdown().await {
        Err(err) if err.kind() != ErrorKind::NotConnected => Err(err.into()),
        _ => Ok(()),
    }
}

/// Reads what is available, forms the replies and writes what the socket takes
/// now; `None` when the socket was not readable after all.
fn read_and_reply(stream: &TcpStream, echoer: &mut Echoer<'_>) -> io::Result<Option<Step>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch { input, output } = scratch;
        output.clear();
        let (replies, peer_closed) = match read_drained(stream, input) {
            Ok(0) => (echoer.finish(output), true),
            Ok(read) => (echoer.feed(&input[..read], output), false),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(err) => return Err(err),
        };
        let sent = write_now(stream, output)?;
        Ok(Some(Step {
            unsent: output[sent..].to_vec(),
            replies,
            peer_closed,
        }))
    })
}

/// Writes as much of `bytes` as the socket takes without waiting.
fn write_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.try_write(&bytes[sent..]) {
            Ok(written) => sent += written,
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) => return Err(err),
        }
    }
    Ok(sent)
}
