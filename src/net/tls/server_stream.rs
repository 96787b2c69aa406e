//! The server side of a TLS connection, driven through rustls's unbuffered
//! API so that an idle connection keeps no buffers at all.
//!
//! Why by hand rather than `tokio-rustls`: rustls's buffered connection
//! grows its record buffer to 4 KiB before every read and keeps it while the
//! read waits, so every idle TLS client paid 4 KiB for it, with no way to let
//! it go (measured with `bench idle` on 10,000 WebSockets: an idle `wss://`
//! connection cost 10,118 bytes with tokio-rustls, 5,849 with this stream,
//! against 2,135 for `ws://`; what is left is rustls's keys and state,
//! BENCHMARKS.md "TLS"). Here the bytes read land in a per-thread scratch
//! buffer (as [`ScratchReads`](crate::net::websocket) does for WebSocket
//! reads) and the records are decrypted in place; a connection keeps only
//! what nobody has taken yet: a record cut off by the read, plaintext the
//! reader has not asked for, encrypted bytes the socket has not accepted.
//! The record protocol itself (framing, encryption, alerts, key updates)
//! stays rustls's.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest TLS record on the wire: a 5-byte header and at most
/// 2^14 + 256 bytes of ciphertext (RFC 8446 5.2; TLS 1.2's limit is larger
/// on paper, but rustls refuses more).
const MAX_RECORD: usize = 5 + 16_384 + 256;

/// How much one read from the socket asks for: two records' worth, so a
/// large message costs few system calls.
const SCRATCH_SIZE: usize = 2 * MAX_RECORD;

/// The most received TLS bytes a connection keeps unprocessed: a handshake
/// message may span records up to 64 KiB (rustls refuses longer ones), and
/// one record more may have arrived behind it.
const MAX_UNPROCESSED: usize = 0x1_0000 + MAX_RECORD;

/// The most plaintext one write encrypts: one record's worth.
const MAX_PLAINTEXT_PER_WRITE: usize = 16_384;

/// Room for a record's framing beyond its plaintext: header, explicit nonce
/// (TLS 1.2), content type (TLS 1.3) and tag, with margin.
const RECORD_OVERHEAD: usize = 64;

thread_local! {
    /// Where reads from the socket land: shared by the connections of a
    /// worker thread.
    static READ_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
    /// Where writes are encrypted before the socket takes them: shared by
    /// the connections of a worker thread.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Completes a TLS handshake on `io` as the server `config` describes.
///
/// # Errors
/// The socket's error, `InvalidData` for anything TLS refuses (the alert
/// rustls chose is sent first, when the socket takes it), or
/// `UnexpectedEof` when the client leaves before the handshake is done.
pub async fn accept<S>(config: Arc<ServerConfig>, io: S) -> io::Result<ServerStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut stream = ServerStream {
        io,
        tls,
        unprocessed: Vec::new(),
        plaintext: Unread::default(),
        owed: Unread::default(),
        input_ended: false,
        close_notify_queued: false,
    };
    poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

/// A TLS connection whose handshake is done: plaintext in and out, like
/// `tokio_rustls::server::TlsStream`, without buffers while idle.
pub struct ServerStream<S> {
    /// The socket.
    io: S,
    /// The TLS state: keys, sequence numbers, what the peer said.
    tls: UnbufferedServerConnection,
    /// Received TLS bytes not processed yet: the start of a record (or of a
    /// handshake message) the last read cut off.
    unprocessed: Vec<u8>,
    /// Decrypted bytes the reader has not taken yet.
    plaintext: Unread,
    /// Encrypted bytes the socket has not accepted yet.
    owed: Unread,
    /// Whether the peer has finished sending: it said close_notify, or the
    /// socket ended between records (read as the end of data, as Go's TLS
    /// does, since nothing was cut).
    input_ended: bool,
    /// Whether our close_notify alert has been written into `owed`.
    close_notify_queued: bool,
}

/// Bytes handed on in pieces; the storage is let go once all are taken.
#[derive(Debug, Default)]
struct Unread {
    /// The bytes, those already taken included.
    bytes: Vec<u8>,
    /// How many have been taken.
    taken: usize,
}

impl Unread {
    /// The bytes not taken yet.
    fn rest(&self) -> &[u8] {
        &self.bytes[self.taken..]
    }

    /// Whether every byte has been taken.
    fn is_empty(&self) -> bool {
        self.taken == self.bytes.len()
    }

    /// Marks `count` more bytes taken, letting the storage go after the last.
    fn advance(&mut self, count: usize) {
        self.taken += count;
        if self.is_empty() {
            self.bytes = Vec::new();
            self.taken = 0;
        }
    }

    /// Moves as much as fits into `buf`.
    fn take_into(&mut self, buf: &mut ReadBuf<'_>) {
        let count = self.rest().len().min(buf.remaining());
        buf.put_slice(&self.rest()[..count]);
        self.advance(count);
    }

    /// Adds `bytes` after those not taken yet.
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

impl<S> ServerStream<S> {
    /// Puts `bytes`, already read from this stream, back in front of what
    /// is read next.
    pub fn unread(&mut self, mut bytes: Vec<u8>) {
        bytes.extend_from_slice(self.plaintext.rest());
        bytes.shrink_to_fit();
        self.plaintext = Unread { bytes, taken: 0 };
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerStream<S> {
    /// Reads and answers handshake messages until the handshake is done and
    /// everything owed to the client has gone out.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send_owed(cx))?;
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.input_ended {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client left during the TLS handshake",
                )));
            }
            ready!(self.poll_receive(cx, None))?;
        }
    }

    /// Reads once from the socket and processes what came: plaintext goes
    /// to `reader` as far as it has room, the rest is kept; answers the
    /// protocol needs (handshake, alerts, key updates) are owed.
    fn poll_receive(
        &mut self,
        cx: &mut Context<'_>,
        reader: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<()>> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut landed = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut landed))?;
            let count = landed.filled().len();
            if count == 0 {
                return Poll::Ready(self.socket_ended());
            }
            let mut sink = Plaintext {
                reader,
                kept: &mut self.plaintext,
            };
            let outcome = if self.unprocessed.is_empty() {
                let outcome = process(&mut self.tls, &mut scratch[..count], &mut sink);
                self.unprocessed = scratch[outcome.consumed..count].to_vec();
                outcome
            } else {
                if self.unprocessed.len() + count > MAX_UNPROCESSED {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS message too large",
                    )));
                }
                self.unprocessed.extend_from_slice(&scratch[..count]);
                let outcome = process(&mut self.tls, &mut self.unprocessed, &mut sink);
                self.unprocessed.drain(..outcome.consumed);
                if self.unprocessed.is_empty() {
                    self.unprocessed = Vec::new();
                }
                outcome
            };
            self.owed.push(&outcome.to_send);
            self.input_ended |= outcome.peer_closed;
            if outcome.result.is_err() {
                // The alert saying why goes out if the socket takes it now.
                let _ = self.poll_send_owed(cx);
            }
            Poll::Ready(outcome.result)
        })
    }

    /// The socket said end of file: fine between records, an error inside one.
    fn socket_ended(&mut self) -> io::Result<()> {
        if !self.unprocessed.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection in the middle of a TLS record",
            ));
        }
        self.input_ended = true;
        Ok(())
    }

    /// Writes what is owed to the socket; ready once all of it has gone.
    fn poll_send_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.owed.is_empty() {
            let sent = ready!(Pin::new(&mut self.io).poll_write(cx, self.owed.rest()))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed.advance(sent);
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts `data` (one record's worth at most) and sends it, keeping
    /// what the socket does not take now; returns how much of `data` was
    /// taken.
    fn encrypt_and_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> io::Result<usize> {
        let data = &data[..data.len().min(MAX_PLAINTEXT_PER_WRITE)];
        WRITE_SCRATCH.with_borrow_mut(|records| {
            records.clear();
            encrypt(&mut self.tls, &mut self.unprocessed, data, records)?;
            let sent = match Pin::new(&mut self.io).poll_write(cx, records) {
                Poll::Ready(Ok(sent)) => sent,
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => 0,
            };
            self.owed.push(&records[sent..]);
            Ok(data.len())
        })
    }

    /// Writes our close_notify alert into what is owed, once.
    fn queue_close_notify(&mut self) -> io::Result<()> {
        if self.close_notify_queued {
            return Ok(());
        }
        self.close_notify_queued = true;
        let mut alert = Vec::new();
        with_write_traffic(
            &mut self.tls,
            &mut self.unprocessed,
            &mut alert,
            |traffic, out| {
                append(out, RECORD_OVERHEAD, |room| {
                    traffic.queue_close_notify(room).map_err(room_needed)
                })
            },
        )?;
        self.owed.push(&alert);
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.plaintext.is_empty() {
            this.plaintext.take_into(buf);
            return Poll::Ready(Ok(()));
        }
        // Answers owed (a key update's, say) go out while we wait; the
        // socket wakes this task when it can take the rest.
        if let Poll::Ready(Err(err)) = this.poll_send_owed(cx) {
            return Poll::Ready(Err(err));
        }
        let before = buf.filled().len();
        while !this.input_ended && buf.filled().len() == before {
            ready!(this.poll_receive(cx, Some(buf)))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was encrypted earlier goes first: at most one write's worth
        // is ever kept per connection.
        ready!(this.poll_send_owed(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Poll::Ready(this.encrypt_and_send(cx, data))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_owed(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close_notify()?;
        ready!(this.poll_send_owed(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Where decrypted bytes go: the reader's buffer while it has room, then
/// what is kept for the next read.
struct Plaintext<'a, 'b> {
    /// The buffer of the read that is waiting, if any.
    reader: Option<&'a mut ReadBuf<'b>>,
    /// What the reader has not taken.
    kept: &'a mut Unread,
}

impl Plaintext<'_, '_> {
    /// Hands `bytes` on.
    fn put(&mut self, mut bytes: &[u8]) {
        if let Some(reader) = self.reader.as_deref_mut() {
            let fits = bytes.len().min(reader.remaining());
            reader.put_slice(&bytes[..fits]);
            bytes = &bytes[fits..];
        }
        self.kept.push(bytes);
    }
}

/// What processing received TLS bytes came to.
struct Processed {
    /// How many bytes from the front are done with.
    consumed: usize,
    /// Records to send in answer (handshake flights, alerts, key updates).
    to_send: Vec<u8>,
    /// Whether the peer's close_notify came.
    peer_closed: bool,
    /// Whether the bytes were acceptable TLS.
    result: io::Result<()>,
}

/// Processes the records in `input` until more input is needed, handing
/// decrypted bytes to `plaintext`.
fn process(
    tls: &mut UnbufferedServerConnection,
    input: &mut [u8],
    plaintext: &mut Plaintext<'_, '_>,
) -> Processed {
    let mut done = Processed {
        consumed: 0,
        to_send: Vec::new(),
        peer_closed: false,
        result: Ok(()),
    };
    loop {
        let UnbufferedStatus { discard, state } =
            tls.process_tls_records(&mut input[done.consumed..]);
        let step = match state {
            Ok(ConnectionState::ReadTraffic(mut traffic)) => loop {
                match traffic.next_record() {
                    Some(Ok(record)) => plaintext.put(record.payload),
                    Some(Err(err)) => break Step::Failed(tls_error(err)),
                    None => break Step::Continue,
                }
            },
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                match encode_owed(&mut encode, &mut done.to_send) {
                    Ok(()) => Step::Continue,
                    Err(err) => Step::Failed(err),
                }
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // Sent in order with whatever follows, once the socket takes it.
                transmit.done();
                Step::Continue
            }
            Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                Step::NeedInput
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Step::PeerClosed,
            Ok(other) => Step::Failed(io::Error::other(format!(
                "TLS state {other:?} not expected (early data is not accepted)"
            ))),
            Err(err) => Step::Failed(tls_error(err)),
        };
        done.consumed += discard;
        match step {
            Step::Continue => {}
            Step::NeedInput => return done,
            Step::PeerClosed => {
                done.peer_closed = true;
                return done;
            }
            Step::Failed(err) => {
                // rustls has queued the alert that tells the peer why.
                let _ = owed_alerts(tls, &mut input[done.consumed..], &mut done.to_send);
                done.result = Err(err);
                return done;
            }
        }
    }
}

/// What one state of the TLS connection leads to.
enum Step {
    /// Process further.
    Continue,
    /// Everything received is processed.
    NeedInput,
    /// The peer sent close_notify.
    PeerClosed,
    /// The connection cannot go on.
    Failed(io::Error),
}

/// Encodes the records rustls still wants sent after a failure (its
/// alert); `input` is what is left of the bytes that failed (rustls
/// remembers positions in them).
fn owed_alerts(
    tls: &mut UnbufferedServerConnection,
    input: &mut [u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        match tls.process_tls_records(input).state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => encode_owed(&mut encode, out)?,
            Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
            _ => return Ok(()),
        }
    }
}

/// Encrypts `data` as application data records appended to `out`, after
/// any records the protocol owes first.
fn encrypt(
    tls: &mut UnbufferedServerConnection,
    unprocessed: &mut Vec<u8>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    with_write_traffic(tls, unprocessed, out, |traffic, out| {
        append(out, data.len() + RECORD_OVERHEAD, |room| {
            traffic.encrypt(data, room).map_err(room_needed)
        })
    })
}

/// Brings the connection to the state where it may send application data
/// (encoding into `out` what the protocol owes first) and calls `write`
/// there.
fn with_write_traffic(
    tls: &mut UnbufferedServerConnection,
    unprocessed: &mut Vec<u8>,
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let mut write = Some(write);
    loop {
        let UnbufferedStatus { discard, state } = tls.process_tls_records(unprocessed);
        let written = match state.map_err(tls_error)? {
            ConnectionState::WriteTraffic(mut traffic) => match write.take() {
                Some(write) => write(&mut traffic, out).map(|()| true),
                None => Ok(true),
            },
            ConnectionState::EncodeTlsData(mut encode) => {
                encode_owed(&mut encode, out).map(|()| false)
            }
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Ok(false)
            }
            // The peer's close_notify, seen by the reader, is told once more here.
            ConnectionState::PeerClosed => Ok(false),
            ConnectionState::Closed => Err(io::ErrorKind::BrokenPipe.into()),
            other => Err(io::Error::other(format!(
                "TLS state {other:?} where application data was to be sent"
            ))),
        };
        unprocessed.drain(..discard);
        if written? {
            return Ok(());
        }
    }
}

/// Appends to `out` a record the protocol owes (a handshake message, an
/// alert, a key update).
fn encode_owed(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    append(out, MAX_RECORD, |room| {
        encode.encode(room).map_err(encode_room_needed)
    })
}

/// Why an encoding into a slice stopped: the room it needs, or a failure.
enum Shortfall {
    /// The slice must be at least this long.
    Room(usize),
    /// The encoding cannot be done.
    Failed(String),
}

/// Maps an encryption failure to a [`Shortfall`].
fn room_needed(err: EncryptError) -> Shortfall {
    match err {
        EncryptError::InsufficientSize(short) => Shortfall::Room(short.required_size),
        other => Shortfall::Failed(other.to_string()),
    }
}

/// Maps a handshake encoding failure to a [`Shortfall`].
fn encode_room_needed(err: EncodeError) -> Shortfall {
    match err {
        EncodeError::InsufficientSize(short) => Shortfall::Room(short.required_size),
        other => Shortfall::Failed(other.to_string()),
    }
}

/// Appends to `out` what `encode` writes into a slice of `room` bytes,
/// giving it a larger slice when it asks.
fn append(
    out: &mut Vec<u8>,
    mut room: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Shortfall>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(Shortfall::Room(needed)) if needed > room => room = needed,
            Err(Shortfall::Room(_)) => {
                out.truncate(start);
                return Err(io::Error::other("TLS encoding asked for no more room"));
            }
            Err(Shortfall::Failed(reason)) => {
                out.truncate(start);
                return Err(io::Error::other(format!("TLS: {reason}")));
            }
        }
    }
}

/// A TLS failure as an I/O error.
fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    use super::*;
    use crate::net::tls::{Acceptor, Certificate, Identity, Trust, acceptor, client_config};

    /// A server with a self-signed certificate, made once.
    static SERVER: LazyLock<Acceptor> = LazyLock::new(|| {
        let certificate = Arc::new(Certificate::load(&Identity::SelfSigned).unwrap());
        acceptor(certificate).unwrap()
    });

    /// A server stream and a tokio-rustls client, handshaken over an
    /// in-memory pipe.
    async fn pair() -> (ServerStream<DuplexStream>, TlsStream<DuplexStream>) {
        let (near, far) = duplex(64 * 1024);
        let server = SERVER.clone();
        let client = TlsConnector::from(client_config(&Trust::Anything).unwrap());
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(server.accept(near), client.connect(name, far));
        (server.unwrap(), client.unwrap())
    }

    /// Whether `stream` holds no buffer at all.
    fn keeps_nothing<S>(stream: &ServerStream<S>) -> bool {
        stream.unprocessed.capacity() == 0
            && stream.plaintext.bytes.capacity() == 0
            && stream.owed.bytes.capacity() == 0
    }

    /// Bytes that are not all alike, `count` of them.
    fn pattern(count: usize) -> Vec<u8> {
        (0..count).map(|n| (n % 251) as u8).collect()
    }

    /// Sends `bytes` from `from` while `to` reads them: what `to` read.
    async fn send_across(
        from: &mut (impl AsyncWrite + Unpin),
        to: &mut (impl AsyncRead + Unpin),
        bytes: &[u8],
    ) -> Vec<u8> {
        let sending = async {
            from.write_all(bytes).await.unwrap();
            from.flush().await.unwrap();
        };
        let mut received = vec![0; bytes.len()];
        let (_, read) = tokio::join!(sending, to.read_exact(&mut received));
        read.unwrap();
        received
    }

    #[tokio::test]
    async fn large_messages_cross_both_ways_and_an_idle_stream_keeps_nothing() {
        let (mut server, mut client) = pair().await;
        assert!(keeps_nothing(&server));
        let sent = pattern(200_000);
        let received = send_across(&mut client, &mut server, &sent).await;
        assert!(received == sent, "the server read what the client sent");
        let echoed = send_across(&mut server, &mut client, &received).await;
        assert!(echoed == sent, "the client read what the server sent");
        assert!(keeps_nothing(&server));
    }

    #[tokio::test]
    async fn small_reads_take_a_record_in_pieces_and_let_go_after() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"hello, world\n").await.unwrap();
        client.flush().await.unwrap();
        let mut piece = [0; 5];
        let mut received = Vec::new();
        while received.len() < 13 {
            let count = server.read(&mut piece).await.unwrap();
            received.extend_from_slice(&piece[..count]);
        }
        assert_eq!(received, b"hello, world\n");
        assert!(keeps_nothing(&server));
    }

    #[tokio::test]
    async fn unread_bytes_are_read_again_first() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        client.flush().await.unwrap();
        let mut first = vec![0; 4];
        server.read_exact(&mut first).await.unwrap();
        server.unread(first);
        let mut again = vec![0; 16];
        server.read_exact(&mut again).await.unwrap();
        assert_eq!(again, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn close_notify_either_way_is_a_clean_end() {
        let (mut server, mut client) = pair().await;
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        // tokio-rustls reads an end without close_notify as an error.
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_connection_cut_inside_a_record_is_an_error_not_an_end() {
        let (mut server, mut client) = pair().await;
        let (socket, _) = client.get_mut();
        socket.write_all(&[0x17, 0x03, 0x03, 0x00]).await.unwrap();
        drop(client);
        let err = server.read(&mut [0; 10]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_connection_cut_between_records_is_an_end() {
        let (mut server, client) = pair().await;
        drop(client);
        assert_eq!(server.read(&mut [0; 10]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_bad_record_is_refused_with_an_alert() {
        let (mut server, mut client) = pair().await;
        let (socket, _) = client.get_mut();
        // An application data record whose "ciphertext" no key made.
        let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
        forged.extend_from_slice(&[0xAB; 0x20]);
        socket.write_all(&forged).await.unwrap();
        let err = server.read(&mut [0; 10]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let told = client.read(&mut [0; 10]).await.unwrap_err();
        assert!(told.to_string().contains("BadRecordMac"), "{told}");
    }

    #[tokio::test]
    async fn a_record_that_is_not_tls_fails_the_handshake_with_an_alert() {
        let (near, mut far) = duplex(64 * 1024);
        let server = SERVER.clone();
        // A record of a content type TLS does not have.
        far.write_all(b"\x99\x03\x03\x00\x01x").await.unwrap();
        let Err(err) = server.accept(near).await else {
            panic!("a handshake without a ClientHello was accepted");
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let mut alert = [0; 7];
        far.read_exact(&mut alert).await.unwrap();
        assert_eq!(
            alert,
            [0x15, 3, 3, 0, 2, 2, 50],
            "a fatal decode_error alert"
        );
    }

    #[tokio::test]
    async fn a_client_that_leaves_mid_handshake_is_an_unexpected_end() {
        let (near, mut far) = duplex(64 * 1024);
        let server = SERVER.clone();
        far.write_all(b"\x16\x03\x01").await.unwrap();
        drop(far);
        let Err(err) = server.accept(near).await else {
            panic!("half a hello made a session");
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Runs `test` on a fresh single-threaded runtime.
    fn block_on(test: impl Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        runtime.unwrap().block_on(test);
    }

    /// Bytes where a client's first flight belongs: any bytes, or any bytes
    /// inside a handshake record's header, so they reach the parsers behind it.
    fn first_flights() -> impl Strategy<Value = Vec<u8>> {
        let raw = proptest::collection::vec(any::<u8>(), 0..1024);
        let framed = proptest::collection::vec(any::<u8>(), 0..1024).prop_map(|body| {
            let length = u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes();
            let mut record = vec![0x16, 0x03, 0x01, length[0], length[1]];
            record.extend_from_slice(&body);
            record
        });
        prop_oneof![raw, framed]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any first flight, cut anywhere: the handshake fails or waits for
        /// more; it never panics.
        #[test]
        fn no_first_flight_panics_the_handshake(bytes in first_flights(), cut in 0..1024usize) {
            block_on(async {
                let (near, mut far) = duplex(64 * 1024);
                let cut = cut.min(bytes.len());
                let feeding = async {
                    far.write_all(&bytes[..cut]).await.unwrap();
                    tokio::task::yield_now().await;
                    far.write_all(&bytes[cut..]).await.unwrap();
                    drop(far);
                };
                let (accepted, ()) = tokio::join!(SERVER.accept(near), feeding);
                assert!(accepted.is_err(), "{bytes:?} made a session");
            });
        }

        /// Any bytes after the handshake, in place of records: the reader
        /// gets an error or an end; nothing panics.
        #[test]
        fn no_bytes_after_the_handshake_panic_the_reader(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            block_on(async {
                let (mut server, mut client) = pair().await;
                let (socket, _) = client.get_mut();
                socket.write_all(&bytes).await.unwrap();
                drop(client);
                let mut rest = Vec::new();
                let _ = server.read_to_end(&mut rest).await;
            });
        }
    }
}
