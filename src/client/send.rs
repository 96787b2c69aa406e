//! `switchboard send`: connect, send one message, return the first reply, close
//! (what the Node tutorial's `client.mjs` does, over TCP or UDP).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result, describe_io, format_duration};
use crate::net::addr::HostPort;
use crate::net::dial;

/// The most reply bytes kept from the first reply.
const MAX_REPLY: usize = 1024 * 1024;

/// The largest payload one UDP datagram can carry over IPv4.
const MAX_DATAGRAM_PAYLOAD: usize = 65_507;

/// What to send, where, and how long to wait.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The server to send to.
    pub target: HostPort,
    /// The bytes to send (possibly empty: then we only wait for the server).
    pub message: Vec<u8>,
    /// How long connecting and waiting for the reply may take, together.
    pub timeout: Duration,
    /// Whether to send one UDP datagram instead of using TCP.
    pub udp: bool,
}

/// Sends the message and returns the first reply.
///
/// # Errors
/// [`Error::Resolve`]/[`Error::Connect`] when the server cannot be reached,
/// [`Error::NoReply`] when nothing comes back within the timeout, and
/// [`Error::ClosedWithoutReply`], and [`Error::Io`] when the connection fails.
pub async fn send(options: &SendOptions) -> Result<Vec<u8>> {
    let exchange = async {
        if options.udp {
            send_datagram(options).await
        } else {
            send_over_tcp(options).await
        }
    };
    tokio::time::timeout(options.timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(Error::NoReply {
                addr: options.target.to_string(),
                timeout: options.timeout,
            })
        })
}

/// The TCP exchange: write everything, then read the first reply.
async fn send_over_tcp(options: &SendOptions) -> Result<Vec<u8>> {
    let target = options.target.to_string();
    let mut stream = connect_within(&options.target, options.timeout).await?;
    let lost = |cause| Error::Io {
        context: format!("connection to {target} lost"),
        cause,
    };
    stream.write_all(&options.message).await.map_err(lost)?;
    let mut reply = vec![0; 64 * 1024];
    let first = stream.read(&mut reply).await.map_err(lost)?;
    if first == 0 {
        return Err(Error::ClosedWithoutReply { addr: target });
    }
    reply.truncate(first);
    drain_ready(&stream, &mut reply);
    Ok(reply)
}

/// Connects, turning a connect that outlasts `timeout` into a clear error.
async fn connect_within(target: &HostPort, timeout: Duration) -> Result<TcpStream> {
    tokio::time::timeout(timeout, dial::tcp(target))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Connect {
                addr: target.to_string(),
                reason: format!("timed out after {}", format_duration(timeout)),
            })
        })
}

/// Appends whatever else of the reply has already arrived (a reply may come
/// in several segments), up to [`MAX_REPLY`], without waiting for more.
fn drain_ready(stream: &TcpStream, reply: &mut Vec<u8>) {
    let mut chunk = [0; 16 * 1024];
    while reply.len() < MAX_REPLY {
        match stream.try_read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => reply.extend_from_slice(&chunk[..read]),
        }
    }
}

/// The UDP exchange: one datagram out, the first datagram back.
async fn send_datagram(options: &SendOptions) -> Result<Vec<u8>> {
    let target = options.target.to_string();
    if options.message.len() > MAX_DATAGRAM_PAYLOAD {
        return Err(Error::DatagramTooLarge {
            len: options.message.len(),
            limit: MAX_DATAGRAM_PAYLOAD,
        });
    }
    let socket = dial::udp(&options.target).await?;
    let refused = |err: std::io::Error| Error::Connect {
        addr: target.clone(),
        reason: describe_io(&err),
    };
    socket.send(&options.message).await.map_err(refused)?;
    let mut reply = vec![0; 65_536];
    let len = socket.recv(&mut reply).await.map_err(refused)?;
    reply.truncate(len);
    Ok(reply)
}
