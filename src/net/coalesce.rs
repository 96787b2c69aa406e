//! A writer that gathers small writes until a flush and releases its buffer
//! once they are out.
//!
//! tungstenite writes each frame as it is queued (or keeps a write buffer
//! whose capacity it never gives back). Under it, this turns a batch of
//! frames (many events, one flush) into one `send` instead of one per frame,
//! and an idle connection holds no write buffer. Measured on `bench chat`
//! over WebSocket: one `sendto` per delivery without it. `tokio::io::BufWriter`
//! would batch too, but keeps its buffer allocated for the connection's life.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Pending bytes at which a write goes out before the flush does.
const FLUSH_AT: usize = 64 * 1024;

pin_project! {
    /// `inner` with writes held back until a flush (or [`FLUSH_AT`] bytes).
    #[derive(Debug)]
    pub struct Coalescing<S> {
        #[pin]
        inner: S,
        pending: Vec<u8>,
        written: usize,
    }
}

impl<S> Coalescing<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite> Coalescing<S> {
    /// Writes out everything pending, then frees the buffer.
    fn poll_write_pending(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while *this.written < this.pending.len() {
            let sent = ready!(
                this.inner
                    .as_mut()
                    .poll_write(cx, &this.pending[*this.written..])
            )?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *this.written += sent;
        }
        *this.pending = Vec::new();
        *this.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead> AsyncRead for Coalescing<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() + buf.len() > FLUSH_AT {
            ready!(self.as_mut().poll_write_pending(cx))?;
            if buf.len() > FLUSH_AT {
                return self.project().inner.poll_write(cx, buf);
            }
        }
        self.project().pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_write_pending(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_write_pending(cx))?;
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn holds_writes_until_flushed_and_keeps_their_order() {
        let (near, mut far) = tokio::io::duplex(1024 * 1024);
        let mut writer = Coalescing::new(near);
        writer.write_all(b"one ").await.unwrap();
        writer.write_all(b"two ").await.unwrap();
        assert_eq!(writer.pending, b"one two ", "held until the flush");
        writer.flush().await.unwrap();
        assert_eq!(writer.pending.capacity(), 0, "the buffer is released");
        let big = vec![b'x'; FLUSH_AT + 1];
        writer.write_all(&big).await.unwrap();
        writer.write_all(b"three").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut received = Vec::new();
        far.read_to_end(&mut received).await.unwrap();
        let mut expected = b"one two ".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"three");
        assert_eq!(received, expected);
    }
}
