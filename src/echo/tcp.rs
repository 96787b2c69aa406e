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
//!
//! An idle connection's whole cost is its task, so the future is kept small:
//! options and token are owned (no wrapper future), and readiness waits go
//! through `poll_read` (its waker lives in tokio's registration, not here).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::echo::EchoOptions;
use crate::echo::reply::Echoer;
use crate::error::Result;

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
    // One waiter on the shared token for the connection's whole life: a fresh
    // `cancelled()` per message would lock the token's waiter list twice each time.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        // Cancellation is only looked at when there is nothing to read, so a
        // busy connection pays for one poll per message and no more.
        let step = poll_fn(|cx| match read_and_reply(&mut stream, &mut echoer, cx) {
            Poll::Ready(step) => Poll::Ready(Some(step)),
            Poll::Pending => cancelled.as_mut().poll(cx).map(|()| None),
        })
        .await;
        let Some(step) = step.transpose()? else {
            break;
        };
        if !step.unsent.is_empty() {
            tokio::select! {
                biased;
                written = stream.write_all(&step.unsent) => written?,
                () = &mut cancelled => break,
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

/// Reads what is available (tokio's `poll_read` marks the socket drained after
/// a short read, saving a read that would only say "empty"), forms the replies
/// and writes what the socket takes now. Pending when there is nothing to read.
fn read_and_reply(
    stream: &mut TcpStream,
    echoer: &mut Echoer<'_>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Step>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch { input, output } = scratch;
        let mut filled = ReadBuf::new(input);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut filled))?;
        output.clear();
        let (replies, peer_closed) = match filled.filled() {
            [] => (echoer.finish(output), true),
            read => (echoer.feed(read, output), false),
        };
        let sent = write_now(stream, output, cx)?;
        Poll::Ready(Ok(Step {
            unsent: output[sent..].to_vec(),
            replies,
            peer_closed,
        }))
    })
}

/// Writes as much of `bytes` as the socket takes without waiting.
fn write_now(stream: &mut TcpStream, bytes: &[u8], cx: &mut Context<'_>) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match Pin::new(&mut *stream).poll_write(cx, &bytes[sent..]) {
            Poll::Ready(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(written)) => sent += written,
            Poll::Ready(Err(err)) => return Err(err),
            Poll::Pending => break,
        }
    }
    Ok(sent)
}
