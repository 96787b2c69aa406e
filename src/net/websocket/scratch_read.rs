//! A reader whose reads land in a per-thread scratch buffer; per connection
//! it keeps only what the reader above has not taken yet, which is nothing
//! while the connection is idle.
//!
//! tungstenite reads at most its read buffer's size per call and keeps that
//! buffer for the connection's life, so every idle WebSocket pays for it.
//! Under tungstenite, this lets that buffer be small while one `recv` still
//! takes all the socket has: a 64 KiB message costs a few system calls rather
//! than one per read buffer's worth.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read from the socket asks for.
const SCRATCH_SIZE: usize = 16 * 1024;

thread_local! {
    /// Where reads land: shared by the connections of a worker thread.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

pin_project! {
    /// `inner` read through the thread's scratch buffer: `unread` holds what
    /// came from `inner` but did not fit the caller's buffer, `taken` how
    /// much of it the caller has had since.
    #[derive(Debug)]
    pub struct ScratchReads<S> {
        #[pin]
        inner: S,
        unread: Vec<u8>,
        taken: usize,
    }
}

impl<S> ScratchReads<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            unread: Vec::new(),
            taken: 0,
        }
    }
}

impl<S: AsyncRead> AsyncRead for ScratchReads<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.taken < this.unread.len() {
            take_unread(this.unread, this.taken, buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_SIZE {
            return this.inner.poll_read(cx, buf);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut landed = ReadBuf::new(scratch);
            ready!(this.inner.poll_read(cx, &mut landed))?;
            let landed = landed.filled();
            let fits = landed.len().min(buf.remaining());
            buf.put_slice(&landed[..fits]);
            if fits < landed.len() {
                *this.unread = landed[fits..].to_vec();
                *this.taken = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

/// Moves as much of the unread bytes as fits into `buf`, letting go of the
/// storage once all are taken.
fn take_unread(unread: &mut Vec<u8>, taken: &mut usize, buf: &mut ReadBuf<'_>) {
    let count = (unread.len() - *taken).min(buf.remaining());
    buf.put_slice(&unread[*taken..*taken + count]);
    *taken += count;
    if *taken == unread.len() {
        *unread = Vec::new();
        *taken = 0;
    }
}

impl<S: AsyncWrite> AsyncWrite for ScratchReads<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_take_everything_in_order_and_keep_nothing_after() {
        let (near, mut far) = tokio::io::duplex(1024 * 1024);
        let sent: Vec<u8> = (0..40_000u32).map(|n| (n % 251) as u8).collect();
        far.write_all(&sent).await.unwrap();
        drop(far);
        let mut reader = ScratchReads::new(near);
        let mut received = Vec::new();
        let mut small = [0; 100];
        loop {
            let count = reader.read(&mut small).await.unwrap();
            if count == 0 {
                break;
            }
            received.extend_from_slice(&small[..count]);
            if reader.unread.is_empty() {
                assert_eq!(reader.unread.capacity(), 0, "storage let go once taken");
            }
        }
        assert_eq!(received, sent);
    }

    #[tokio::test]
    async fn a_large_read_goes_straight_to_the_caller() {
        let (near, mut far) = tokio::io::duplex(1024 * 1024);
        far.write_all(&[7; 1000]).await.unwrap();
        let mut reader = ScratchReads::new(near);
        let mut large = vec![0; SCRATCH_SIZE];
        assert_eq!(reader.read(&mut large).await.unwrap(), 1000);
        assert!(reader.unread.is_empty());
    }
}
