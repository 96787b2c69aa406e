//! Errors a user can cause, each carrying the context needed to act on it.
//!
//! Every message is written to read well after `error: ` on one line, naming
//! the thing that failed and why (`could not connect to 127.0.0.1:3000:
//! connection refused`). The underlying I/O error is worded into the message
//! rather than chained as a `source`, so printing the chain never repeats it.

use std::io;
use std::time::Duration;

/// Everything that can go wrong in switchboard's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address typed by the user could not be parsed.
    #[error("invalid address '{input}': {reason}")]
    InvalidAddress {
        /// The text as the user gave it.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A host name resolved to no address.
    #[error("could not resolve host '{host}'")]
    Resolve {
        /// The host name that did not resolve.
        host: String,
    },

    /// A listening socket could not be created or bound.
    #[error("could not listen on {addr}: {}", describe_io(cause))]
    Listen {
        /// The address we tried to bind.
        addr: String,
        /// Why binding failed.
        cause: io::Error,
    },

    /// A connection could not be established.
    #[error("could not connect to {addr}: {reason}")]
    Connect {
        /// The address or URL we tried to reach.
        addr: String,
        /// Why it failed, in words.
        reason: String,
    },

    /// The peer did not answer within the allowed time.
    #[error("no reply from {addr} within {}", format_duration(*timeout))]
    NoReply {
        /// The address that stayed silent.
        addr: String,
        /// How long we waited.
        timeout: Duration,
    },

    /// The peer closed the connection before sending anything back.
    #[error("{addr} closed the connection without replying")]
    ClosedWithoutReply {
        /// The address that closed.
        addr: String,
    },

    /// A message does not fit in one UDP datagram.
    #[error("the message ({len} bytes) is larger than one UDP datagram ({limit} bytes)")]
    DatagramTooLarge {
        /// The message's length.
        len: usize,
        /// The largest payload a datagram carries.
        limit: usize,
    },

    /// An established exchange failed part-way.
    #[error("{context}: {}", describe_io(cause))]
    Io {
        /// What we were doing, e.g. `connection to 127.0.0.1:3000 lost`.
        context: String,
        /// The underlying failure.
        cause: io::Error,
    },

    /// A connection's socket failed: the peer reset it, the network went away, ….
    #[error("{}", describe_io(.0))]
    Socket(io::Error),

    /// A TLS certificate or key could not be loaded or used.
    #[error("{context}: {reason}")]
    Tls {
        /// What we were loading, e.g. `could not read TLS certificate cert.pem`.
        context: String,
        /// Why it failed, in words.
        reason: String,
    },

    /// An HTTP exchange failed (a malformed request, a head too slow to arrive).
    #[error("http: {reason}")]
    Http {
        /// Why it failed, in words.
        reason: String,
    },

    /// A WebSocket exchange failed after the connection was made.
    #[error("{context}: {reason}")]
    WebSocket {
        /// What we were doing.
        context: String,
        /// Why it failed, in words.
        reason: String,
    },
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Self::Socket(err)
    }
}

/// A `Result` whose error is switchboard's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Describes an I/O error in lower-case words without the `(os error N)` suffix.
pub fn describe_io(err: &io::Error) -> String {
    use io::ErrorKind::*;
    let words = match err.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        AddrInUse => "address already in use",
        AddrNotAvailable => "address not available on this machine",
        PermissionDenied => "permission denied",
        TimedOut => "timed out",
        BrokenPipe => "connection closed by peer",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        UnexpectedEof => "connection closed unexpectedly",
        _ => return plain_os_message(err),
    };
    words.to_string()
}

/// The OS message of `err`, lower-cased and without the `(os error N)` suffix.
fn plain_os_message(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(end) => &text[..end],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::from("unknown error"),
    }
}

/// Formats a timeout the way a user typed it: `5s`, `1.5s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_plain_words() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_io(&refused), "connection refused");
        let os = io::Error::from_raw_os_error(2);
        assert_eq!(describe_io(&os), "no such file or directory");
    }

    #[test]
    fn durations_read_as_typed() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
