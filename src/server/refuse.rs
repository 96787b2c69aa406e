//! Refusing a connection over a limit in words its client can read
//! (docs/PROTOCOL.md 5.5), told apart by its first bytes like any other
//! ([`sniff`]): a line client gets one `! …` line, an HTTP request `429`
//! (`503` when the server is full) with a JSON error and `Retry-After`, and
//! a WebSocket handshake is completed and then closed with 1008 (1013 when
//! the server is full), since a browser never sees the status of a failed
//! handshake but does see a close code. Over TLS the handshake is done
//! first, so TLS clients read the same refusals.
//!
//! A refusal must cost little: it reads at most one request head, answers,
//! and is over within [`REFUSAL_TIME`]; at most [`MAX_REFUSING`] are under
//! way at once, and a connection refused beyond that is just closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::GREETING_SILENCE;
use super::sniff::{self, Kind};
use crate::error::{Error, Result};
use crate::limits::Refused;
use crate::net::accept::{Ended, Peer};
use crate::net::tls::Acceptor;
use crate::net::websocket::check_upgrade;

/// The most refusals answered at once.
const MAX_REFUSING: usize = 256;

/// How long a refusal may take from accept to close.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// The longest request head read to tell a WebSocket handshake from plain HTTP.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most headers a refused request head may have.
const MAX_HEADERS: usize = 64;

/// How much of what the client still sends is read (and dropped) after the
/// answer, so the close does not reset the connection before it is read.
const MAX_DRAIN: usize = 64 * 1024;

/// A refusal under way, boxed: it is rare, and every served connection's
/// task would otherwise be sized for it.
pub type Refusal = Pin<Box<dyn Future<Output = Result<Ended>> + Send>>;

/// Answers refused connections, a bounded number at a time.
pub struct Refuser {
    tls: Option<Acceptor>,
    in_flight: Arc<Semaphore>,
}

impl Refuser {
    /// A refuser that completes TLS handshakes with `tls`, when given.
    pub fn new(tls: Option<Acceptor>) -> Self {
        Self {
            tls,
            in_flight: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// Tells the client of `stream` why it is `refused`, then closes it; or,
    /// with [`MAX_REFUSING`] refusals under way already, just closes it.
    pub fn refuse(&self, stream: TcpStream, peer: Peer, refused: Refused) -> Refusal {
        tracing::debug!("{peer}: refused: {refused}");
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return Box::pin(std::future::ready(Ok::<_, Error>(Ended::Closed)));
        };
        Box::pin(answer_in_time(stream, refused, self.tls.clone(), permit))
    }
}

/// [`answer`], given [`REFUSAL_TIME`] at most.
async fn answer_in_time(
    stream: TcpStream,
    refused: Refused,
    tls: Option<Acceptor>,
    _permit: OwnedSemaphorePermit,
) -> Result<Ended> {
    let answered = tokio::time::timeout(REFUSAL_TIME, answer(stream, refused, tls)).await;
    if let Ok(Err(err)) = answered {
        tracing::debug!("refusal not delivered: {err}");
    }
    Ok(Ended::Closed)
}

/// Tells the client apart (after a TLS handshake, with `tls`) and answers it.
async fn answer(stream: TcpStream, refused: Refused, tls: Option<Acceptor>) -> io::Result<()> {
    match sniff::sniff(&stream, GREETING_SILENCE).await {
        Kind::Tls => {
            let Some(acceptor) = tls else { return Ok(()) };
            let mut session = acceptor.accept(stream).await?;
            let (kind, first) = sniff::sniff_by_reading(&mut session, GREETING_SILENCE).await?;
            answer_as(kind, first, session, refused).await
        }
        kind => answer_as(kind, Vec::new(), stream, refused).await,
    }
}

/// Answers a client of `kind` whose first bytes, already read, are `first`.
async fn answer_as<S>(kind: Kind, first: Vec<u8>, mut stream: S, refused: Refused) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = match kind {
        Kind::Line => format!("! {refused}: try later\n").into_bytes(),
        Kind::Http => match read_head(first, &mut stream).await? {
            Some(accept_key) => web_socket_reply(&accept_key, refused),
            None => http_reply(refused),
        },
        Kind::Tls => return Ok(()),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await?;
    drain(&mut stream).await
}

/// Reads a request head (at most [`MAX_HEAD`] bytes, `first` being its
/// start): the `Sec-WebSocket-Accept` to answer with when it is a
/// WebSocket handshake, `None` for any other request (or a malformed one).
async fn read_head<S: AsyncRead + Unpin>(
    mut head: Vec<u8>,
    stream: &mut S,
) -> io::Result<Option<String>> {
    loop {
        match parse_head(&head) {
            Head::Upgrade(accept_key) => return Ok(Some(accept_key)),
            Head::Other => return Ok(None),
            Head::Partial => {}
        }
        head.reserve(MAX_HEAD - head.len());
        let mut more = (&mut *stream).take((MAX_HEAD - head.len()) as u64);
        if more.read_buf(&mut head).await? == 0 {
            return Ok(None);
        }
    }
}

/// What the first bytes of a request say.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head is not all in yet.
    Partial,
    /// A WebSocket handshake, to accept with this `Sec-WebSocket-Accept`.
    Upgrade(String),
    /// Any other request, or bytes that are not one (a head over
    /// [`MAX_HEAD`] included).
    Other,
}

/// Parses the start of a request: no I/O, [`Head::Partial`] until the
/// head is all in.
pub fn parse_head(head: &[u8]) -> Head {
    let head = &head[..head.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            upgrade_key(&request).map_or(Head::Other, Head::Upgrade)
        }
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => Head::Partial,
        _ => Head::Other,
    }
}

/// The accept key of `request` when it is a WebSocket handshake we accept.
fn upgrade_key(request: &httparse::Request<'_, '_>) -> Option<String> {
    let method = Method::from_bytes(request.method?.as_bytes()).ok()?;
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            headers.append(name, value);
        }
    }
    check_upgrade(&method, &headers).ok()
}

/// `429` (`503` for a full server) with `Retry-After` and the JSON error of
/// docs/PROTOCOL.md 5.3; the connection closes after it.
fn http_reply(refused: Refused) -> Vec<u8> {
    let status = match refused {
        Refused::ServerFull { .. } => "503 Service Unavailable",
        _ => "429 Too Many Requests",
    };
    let body =
        json!({"error": {"code": error_code(refused), "message": format!("{refused}: try later")}})
            .to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: {}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        refused.retry_after(),
        body.len(),
    )
    .into_bytes()
}

/// The `code` of the JSON error for `refused`.
fn error_code(refused: Refused) -> &'static str {
    match refused {
        Refused::ServerFull { .. } => "server_full",
        Refused::PerAddress { .. } => "too_many_connections",
        Refused::ConnectRate { .. } => "too_many_new_connections",
    }
}

/// The `101` completing the handshake, then at once a close frame: 1013
/// (try again later) for a full server, 1008 (policy) for a per-address limit.
fn web_socket_reply(accept_key: &str, refused: Refused) -> Vec<u8> {
    let (code, reason): (u16, &str) = match refused {
        Refused::ServerFull { .. } => (1013, "server full"),
        Refused::PerAddress { .. } => (1008, "too many connections from your address"),
        Refused::ConnectRate { .. } => (1008, "too many new connections from your address"),
    };
    let mut reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: {accept_key}\r\n\r\n"
    )
    .into_bytes();
    // A final, unmasked close frame; the reason is short enough for one length byte.
    reply.extend_from_slice(&[0x88, (2 + reason.len()) as u8]);
    reply.extend_from_slice(&code.to_be_bytes());
    reply.extend_from_slice(reason.as_bytes());
    reply
}

/// Reads and drops what the client still sends (at most [`MAX_DRAIN`]
/// bytes) until it closes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut sink = [0; 1024];
    let mut left = MAX_DRAIN;
    while left > 0 {
        let read = stream.read(&mut sink).await?;
        if read == 0 {
            break;
        }
        left = left.saturating_sub(read);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn http_refusals_carry_a_status_retry_after_and_a_json_error() {
        let reply = text(&http_reply(Refused::PerAddress { max: 3 }));
        assert!(
            reply.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{reply}"
        );
        assert!(reply.contains("\r\nretry-after: 5\r\n"), "{reply}");
        let body = reply.split_once("\r\n\r\n").unwrap().1;
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(error["error"]["code"], "too_many_connections");
        let full = text(&http_reply(Refused::ServerFull { max: 9 }));
        assert!(full.starts_with("HTTP/1.1 503 "), "{full}");
    }

    #[tokio::test]
    async fn a_handshake_is_completed_then_closed_with_a_policy_code() {
        let request = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
            Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let (first, rest) = request.split_at(5);
        let key = read_head(first.to_vec(), &mut &rest[..]).await.unwrap();
        assert_eq!(key.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let rate = Refused::ConnectRate {
            rate: 20.0,
            wait: Duration::from_millis(50),
        };
        let reply = web_socket_reply("k", rate);
        let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let frame = &reply[head_end..];
        assert_eq!(frame[0], 0x88);
        assert_eq!(usize::from(frame[1]), frame.len() - 2);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1008);
    }

    proptest! {
        /// Any bytes: no panic, and a decision that more bytes never
        /// change, reached by [`MAX_HEAD`] bytes at the latest (every cut
        /// of the first bytes tried, then some: each parse reads them all).
        #[test]
        fn more_bytes_never_change_a_decision(bytes in heads()) {
            let mut decided = None;
            let ends = (0..=bytes.len()).filter(|&end| end < 256 || end % 61 == 0 || end == bytes.len());
            for end in ends {
                let head = parse_head(&bytes[..end]);
                if let Some(decided) = &decided {
                    prop_assert_eq!(&head, decided);
                } else if head != Head::Partial {
                    decided = Some(head);
                }
            }
            if bytes.len() >= MAX_HEAD {
                prop_assert!(decided.is_some());
            }
        }
    }

    /// Request heads, handshakes among them, cut and spliced with any bytes.
    fn heads() -> impl Strategy<Value = Vec<u8>> {
        let handshake = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let start = prop_oneof![
            Just(handshake.to_vec()),
            Just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            Just(b"POST /api HTTP/1.1\r\n".to_vec()),
            Just(Vec::new()),
        ];
        let tail = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            Just(vec![b'x'; MAX_HEAD]),
        ];
        (start, any::<prop::sample::Index>(), tail).prop_map(|(mut start, cut, tail)| {
            start.truncate(cut.index(start.len() + 1));
            start.extend(tail);
            start
        })
    }

    #[tokio::test]
    async fn other_heads_are_plain_http_and_bounded() {
        let plain = b"GET /api/rooms HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(read_head(Vec::new(), &mut &plain[..]).await.unwrap(), None);
        let endless = vec![b'a'; MAX_HEAD * 4];
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.extend_from_slice(b"b");
        assert_eq!(read_head(head, &mut &endless[..]).await.unwrap(), None);
        let cut_short = b"GET /ws HTTP/1.1\r\nHost";
        assert_eq!(
            read_head(Vec::new(), &mut &cut_short[..]).await.unwrap(),
            None
        );
    }
}
