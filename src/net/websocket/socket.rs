//! A server's WebSocket connection: tungstenite's protocol state
//! ([`WebSocketContext`]) driven on the socket here, rather than through
//! tokio-tungstenite's `WebSocketStream`.
//!
//! The protocol stays tungstenite's: it parses every frame, enforces the
//! limits and writes its own replies (pong, close). Only the glue is ours,
//! because every idle connection pays for the wrapper's: `WebSocketStream`
//! allocates two waker proxies per connection, and tungstenite's write buffer
//! keeps the capacity of the largest batch it ever wrote. Here every frame is
//! written into `pending`, which goes out in one `send` per flush (many
//! events, one system call) and is released once out. Measured with
//! `bench idle` on 10,000 WebSockets: about 200 bytes less per connection.
//! And tungstenite's read buffer keeps the capacity of the largest message
//! it ever read, so its state is renewed once whole messages are read
//! ([`ServerSocket::next`] waiting at a message boundary).

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, WebSocketContext,
};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::frames::FrameTracker;
use super::scratch_read::ScratchReads;

/// Pending bytes at which a feed writes them out before the flush does.
const FLUSH_AT: usize = 64 * 1024;

/// One server-side WebSocket over `S`, an upgraded connection.
#[derive(Debug)]
pub struct ServerSocket<S> {
    io: ScratchReads<S>,
    protocol: WebSocketContext,
    /// Where the bytes handed to `protocol` stand, frame by frame.
    frames: FrameTracker,
    /// Frames not yet written to `io`, from `written` on.
    pending: Vec<u8>,
    written: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerSocket<S> {
    /// The server side of a WebSocket whose handshake is done on `io`.
    pub fn new(io: S, config: WebSocketConfig) -> Self {
        Self {
            io: ScratchReads::new(io),
            protocol: WebSocketContext::new(Role::Server, Some(config)),
            frames: FrameTracker::default(),
            pending: Vec::new(),
            written: 0,
        }
    }

    /// The next message from the peer; `None` once the connection is closed.
    /// Pings are answered (and the close handshake completed) on the way.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Queues `message` for the next flush; writes out what is pending first
    /// when that is more than [`FLUSH_AT`] bytes.
    ///
    /// # Errors
    /// tungstenite's error when the connection is closing or closed, or the
    /// write error of the socket.
    pub async fn feed(&mut self, message: Message) -> Result<(), WsError> {
        if self.pending.len() - self.written >= FLUSH_AT {
            self.write_pending().await?;
        }
        let frame = match message {
            Message::Text(text) if self.protocol.can_write() => {
                Frame::message(text, OpCode::Data(Data::Text), true)
            }
            Message::Binary(data) if self.protocol.can_write() => {
                Frame::message(data, OpCode::Data(Data::Binary), true)
            }
            Message::Ping(data) if self.protocol.can_write() => Frame::ping(data),
            other => return self.with_protocol(|protocol, io| protocol.write(io, other)),
        };
        frame.format(&mut self.pending)
    }

    /// Writes out everything fed, tungstenite's replies included.
    ///
    /// # Errors
    /// The write error of the socket.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        let queued = self.with_protocol(|protocol, io| protocol.flush(io));
        self.write_out(queued).await
    }

    /// Feeds `message`, then flushes.
    ///
    /// # Errors
    /// As [`Self::feed`] and [`Self::flush`].
    pub async fn send(&mut self, message: Message) -> Result<(), WsError> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Starts the closing handshake with `frame` (or answers the peer's) and
    /// writes it out.
    ///
    /// # Errors
    /// The write error of the socket.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        let queued = self.with_protocol(|protocol, io| protocol.close(io, frame));
        self.write_out(queued).await
    }

    /// Writes out what is pending, then shuts the connection down (over TLS,
    /// with the close_notify a TLS client expects before the end).
    ///
    /// # Errors
    /// The write error of the socket.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.write_pending().await?;
        self.io.shutdown().await
    }

    /// Writes out and flushes what tungstenite `queued`, then reports how
    /// queueing went (the end of the connection being no error).
    async fn write_out(&mut self, queued: Result<(), WsError>) -> Result<(), WsError> {
        self.write_pending().await?;
        self.io.flush().await?;
        ended_is_fine(queued)
    }

    /// Starts the closing handshake with `frame` without writing it: the
    /// next flush, close or shutdown writes it out.
    pub fn queue_close(&mut self, frame: CloseFrame) {
        let _ = self.with_protocol(|protocol, io| protocol.close(io, Some(frame)));
    }

    /// Reads the next message, and writes out what tungstenite wrote while
    /// reading (a pong, the reply to a close); `None` once the connection is closed.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        let read = self.with_context(cx, |protocol, io| protocol.read(io));
        if let Poll::Ready(Err(err)) = self.poll_write_pending(cx) {
            return Poll::Ready(Some(Err(WsError::Io(err))));
        }
        match read {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                self.release_read_buffer();
                Poll::Pending
            }
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }

    /// Gives tungstenite a fresh state when it has read whole messages and
    /// waits for more: its read buffer keeps the capacity of the largest
    /// message it ever read, and 10,000 clients that each once sent a 64 KiB
    /// message would otherwise hold 640 MiB while idle. At a message boundary
    /// its state is only that buffer (pongs and close replies are written out
    /// before a read waits), so nothing is lost.
    fn release_read_buffer(&mut self) {
        if self.protocol.can_write() && self.frames.passed_boundary() {
            let config = *self.protocol.get_config();
            self.protocol = WebSocketContext::new(Role::Server, Some(config));
        }
    }

    /// Writes out everything pending.
    async fn write_pending(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_pending(cx)).await
    }

    /// Writes out everything pending, then releases the buffer.
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let unsent = &self.pending[self.written..];
            let sent = ready!(Pin::new(&mut self.io).poll_write(cx, unsent))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += sent;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Runs `action` on the protocol state when it only writes: writes land
    /// in `pending` and never block, so no task context is needed.
    fn with_protocol<T>(
        &mut self,
        action: impl FnOnce(&mut WebSocketContext, &mut Blocking<'_, '_, S>) -> T,
    ) -> T {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.with_context(&mut cx, action)
    }

    /// Runs `action` on the protocol state with the socket seen as blocking
    /// I/O: a read that would wait reports `WouldBlock`, with `cx` woken when
    /// the socket is ready.
    fn with_context<T>(
        &mut self,
        cx: &mut Context<'_>,
        action: impl FnOnce(&mut WebSocketContext, &mut Blocking<'_, '_, S>) -> T,
    ) -> T {
        let mut io = Blocking {
            io: &mut self.io,
            frames: &mut self.frames,
            pending: &mut self.pending,
            cx,
        };
        action(&mut self.protocol, &mut io)
    }
}

/// A closed connection is the expected end of a flush or close after the
/// peer closed: tungstenite reports it once the last reply is written.
fn ended_is_fine(outcome: Result<(), WsError>) -> Result<(), WsError> {
    match outcome {
        Err(WsError::ConnectionClosed) => Ok(()),
        other => other,
    }
}

/// The socket as tungstenite sees it: reads from the socket (`WouldBlock`
/// when it has nothing yet) followed by `frames`, writes appended to the
/// pending frames.
struct Blocking<'a, 'c, S> {
    io: &'a mut ScratchReads<S>,
    frames: &'a mut FrameTracker,
    pending: &'a mut Vec<u8>,
    cx: &'a mut Context<'c>,
}

impl<S: AsyncRead + Unpin> Read for Blocking<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                self.frames.observe(buf.filled());
                Ok(buf.filled().len())
            }
            Poll::Ready(Err(err)) => Err(err),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S> Write for Blocking<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;
    use std::time::Duration;

    /// A server socket and a tokio-tungstenite client talking to it.
    async fn pair() -> (ServerSocket<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (near, far) = tokio::io::duplex(1024 * 1024);
        let server = ServerSocket::new(near, WebSocketConfig::default().read_buffer_size(128));
        let client = WebSocketStream::from_raw_socket(far, Role::Client, None).await;
        (server, client)
    }

    /// `future`'s output, or a failed test after five seconds.
    async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .expect("no answer within five seconds")
    }

    #[tokio::test]
    async fn fed_messages_wait_for_the_flush_then_arrive_in_order() {
        let (mut server, mut client) = pair().await;
        server.feed(Message::text("one")).await.unwrap();
        server.feed(Message::binary(vec![2])).await.unwrap();
        assert!(!server.pending.is_empty(), "held until the flush");
        server.flush().await.unwrap();
        assert_eq!(server.pending.capacity(), 0, "the batch is released");
        assert_eq!(
            within(client.next()).await.unwrap().unwrap(),
            Message::text("one")
        );
        assert_eq!(
            within(client.next()).await.unwrap().unwrap(),
            Message::binary(vec![2])
        );
    }

    #[tokio::test]
    async fn a_ping_is_answered_while_the_server_waits_for_more() {
        let (mut server, mut client) = pair().await;
        client
            .send(Message::Ping("are you there".into()))
            .await
            .unwrap();
        assert!(matches!(server.next().await, Some(Ok(Message::Ping(_)))));
        let pong = tokio::select! {
            _ = server.next() => panic!("the client sent nothing more"),
            pong = within(client.next()) => pong.unwrap().unwrap(),
        };
        assert_eq!(pong, Message::Pong("are you there".into()));
    }

    #[tokio::test]
    async fn a_close_from_the_peer_is_answered_and_ends_the_messages() {
        let (mut server, mut client) = pair().await;
        client.close(None).await.unwrap();
        assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
        server.flush().await.unwrap();
        assert!(server.next().await.is_none());
        assert!(matches!(
            within(client.next()).await,
            Some(Ok(Message::Close(_)))
        ));
    }

    #[tokio::test]
    async fn nothing_is_sent_after_the_server_closes() {
        let (mut server, mut client) = pair().await;
        let goodbye = CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        };
        server.close(Some(goodbye)).await.unwrap();
        assert!(server.feed(Message::text("late")).await.is_err());
        let Some(Ok(Message::Close(Some(frame)))) = within(client.next()).await else {
            panic!("expected the close frame");
        };
        assert_eq!(frame.code, CloseCode::Away);
    }
}
