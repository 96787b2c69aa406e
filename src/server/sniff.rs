//! Telling clients apart on one port by their first bytes (docs/PROTOCOL.md 5): a TLS
//! ClientHello, an HTTP request line, or anything else (a line client). A
//! client that sends nothing for 250 ms is a line client: `nc` users wait for
//! the server to speak first.

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The kinds of client one port serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Raw TCP, line protocol.
    Line,
    /// An HTTP request (WebSocket upgrades included).
    Http,
    /// A TLS ClientHello.
    Tls,
}

/// Request methods that start an HTTP request line.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// How many first bytes [`sniff`] peeks at: enough to decide, as the longest
/// method with its space (`OPTIONS `, `CONNECT `) is 8 bytes.
const PEEK: usize = 8;

/// How much [`sniff_by_reading`] reads at a time.
const FIRST_READ: usize = 1024;

/// How long to wait between looks when the first bytes do not decide yet.
const RELOOK: Duration = Duration::from_millis(5);

/// Classifies a connection by its first bytes; `None` when they could still
/// be the start of an HTTP method and more are needed.
pub fn classify(first: &[u8]) -> Option<Kind> {
    match first {
        [] => None,
        [0x16, ..] => Some(Kind::Tls),
        _ if METHODS.iter().any(|m| first.starts_with(m)) => Some(Kind::Http),
        _ if METHODS.iter().any(|m| m.starts_with(first)) => None,
        _ => Some(Kind::Line),
    }
}

/// Waits (at most `silence`) for the first bytes, without consuming them,
/// and says what kind of client this is.
pub async fn sniff(stream: &TcpStream, silence: Duration) -> Kind {
    let deadline = Instant::now() + silence;
    let mut first = [0; PEEK];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(0) | Err(_)) => return Kind::Line,
            Ok(Ok(read)) => {
                if let Some(kind) = classify(&first[..read]) {
                    return kind;
                }
                if Instant::now() >= deadline {
                    return Kind::Line;
                }
                tokio::time::sleep(RELOOK.min(deadline - Instant::now())).await;
            }
            // The timer fired: bytes may still have arrived unseen under load.
            Err(_) => return peek_now(stream).unwrap_or(Kind::Line),
        }
    }
}

/// Like [`sniff`] for a stream that cannot be peeked (a TLS session): reads
/// the first bytes instead and hands them back to be replayed.
///
/// # Errors
/// The read error, when the stream fails before it is told apart.
pub async fn sniff_by_reading<S: AsyncRead + Unpin>(
    stream: &mut S,
    silence: Duration,
) -> std::io::Result<(Kind, Vec<u8>)> {
    let deadline = Instant::now() + silence;
    let mut first = Vec::with_capacity(FIRST_READ);
    loop {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await {
            Ok(Ok(0)) | Err(_) => return Ok((Kind::Line, first)),
            Ok(Ok(_)) => {
                if let Some(kind) = classify(&first) {
                    return Ok((kind, first));
                }
                first.reserve(FIRST_READ);
            }
            Ok(Err(err)) => return Err(err),
        }
    }
}

/// Looks at what has already arrived without waiting (a no-op waker: the
/// connection's task registers its own the next time it reads).
fn peek_now(stream: &TcpStream) -> Option<Kind> {
    let mut first = [0; PEEK];
    let mut filled = ReadBuf::new(&mut first);
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_peek(&mut cx, &mut filled) {
        Poll::Ready(Ok(read)) if read > 0 => Some(classify(filled.filled()).unwrap_or(Kind::Line)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn first_bytes_decide_the_kind() {
        assert_eq!(classify(b"GET /ws HTTP/1.1\r\n"), Some(Kind::Http));
        assert_eq!(classify(b"POST /api"), Some(Kind::Http));
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Some(Kind::Tls));
        assert_eq!(classify(b"hello\n"), Some(Kind::Line));
        assert_eq!(classify(b"/nick bob\n"), Some(Kind::Line));
        assert_eq!(classify(b"GETTING\n"), Some(Kind::Line));
    }

    #[test]
    fn a_method_prefix_needs_more_bytes() {
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"OPTIONS"), None);
        assert_eq!(classify(b""), None);
    }

    proptest! {
        /// Any bytes: no panic, and a decision that more bytes never change,
        /// reached within the [`PEEK`] bytes that `sniff` looks at.
        #[test]
        fn more_bytes_never_change_a_decision(bytes in first_bytes()) {
            let mut decided = None;
            for end in 0..=bytes.len() {
                let kind = classify(&bytes[..end]);
                if decided.is_some() {
                    prop_assert_eq!(kind, decided, "{:?} changed its mind", &bytes[..end]);
                }
                if end >= PEEK {
                    prop_assert!(kind.is_some(), "{:?} undecided", &bytes[..end]);
                }
                decided = kind;
            }
        }

        /// A request line is HTTP as soon as its method and space are in, and
        /// undecided before; a ClientHello's first byte is enough.
        #[test]
        fn requests_and_hellos_are_told_apart(
            method in proptest::sample::select(METHODS.to_vec()),
            rest in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let request = [method, &rest[..]].concat();
            for end in 0..=request.len() {
                let expected = (end >= method.len()).then_some(Kind::Http);
                prop_assert_eq!(classify(&request[..end]), expected);
            }
            prop_assert_eq!(classify(&[&[0x16][..], &rest].concat()), Some(Kind::Tls));
        }
    }

    /// Bytes that often start like a method, a ClientHello or a line.
    fn first_bytes() -> impl Strategy<Value = Vec<u8>> {
        let start = prop_oneof![
            proptest::sample::select(METHODS.to_vec()).prop_map(<[u8]>::to_vec),
            Just(vec![0x16]),
            Just(Vec::new()),
        ];
        // Every prefix is classified too, so cut-short methods are covered.
        (start, proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(mut start, rest)| {
            start.extend(rest);
            start
        })
    }
}
