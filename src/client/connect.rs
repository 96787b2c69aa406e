//! `switchboard connect`: netcat for humans and scripts.
//!
//! What comes in on the input goes to the server and what the server sends
//! goes to the output. When the input ends, a TCP connection is half-closed
//! and a WebSocket gets a close frame; either way the server's remaining
//! output is still printed until it closes, so `printf 'hi\n' | switchboard
//! connect host:3000` works in a pipe. Over WebSocket each input line is one
//! text message, and each text message received is printed as one line.
//! A `wss://` server's certificate is checked as the caller's TLS
//! configuration says (see [`crate::net::tls::client_config`]).

use std::io::{self, ErrorKind};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result, describe_io};
use crate::net::addr::HostPort;
use crate::net::dial;

/// Where `connect` goes: a TCP address or a WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A raw TCP byte stream to `host:port`.
    Tcp(HostPort),
    /// A WebSocket at a `ws://` or `wss://` URL.
    WebSocket(String),
}

impl Target {
    /// Parses `host:port` or a `ws://…`/`wss://…` URL.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] naming what is wrong.
    pub fn parse(input: &str) -> Result<Self> {
        if input.starts_with("ws://") || input.starts_with("wss://") {
            web_socket_endpoint(input)?;
            return Ok(Self::WebSocket(input.to_string()));
        }
        if input.contains("://") {
            return Err(Error::InvalidAddress {
                input: input.to_string(),
                reason: "only ws:// and wss:// URLs are understood; use HOST:PORT for TCP",
            });
        }
        HostPort::parse_remote(input).map(Self::Tcp)
    }

    /// Whether the connection is TLS: only `wss://` URLs are.
    pub fn uses_tls(&self) -> bool {
        matches!(self, Self::WebSocket(url) if url.starts_with("wss://"))
    }
}

/// A client's WebSocket, over TLS or not.
pub type ClientSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upgrades `stream` to a WebSocket at `url`: with `tls` (a `wss://` URL) the
/// TLS handshake comes first.
///
/// # Errors
/// The TLS or WebSocket handshake's error.
pub async fn open_web_socket(
    url: &str,
    stream: TcpStream,
    config: Option<WebSocketConfig>,
    tls: Option<Arc<ClientConfig>>,
) -> std::result::Result<ClientSocket, tungstenite::Error> {
    let connector = match tls {
        Some(tls) => Connector::Rustls(tls),
        None => Connector::Plain,
    };
    let (ws, _response) =
        tokio_tungstenite::client_async_tls_with_config(url, stream, config, Some(connector))
            .await?;
    Ok(ws)
}

/// Connects to `target` and pipes `input` to it and its output to `output`
/// until the server closes; `tls` is for a `wss://` URL.
///
/// # Errors
/// The reason the connection could not be made or was lost, e.g. a server
/// certificate that `tls` does not trust.
pub async fn run<I, O>(
    target: &Target,
    tls: Option<Arc<ClientConfig>>,
    input: I,
    output: O,
) -> Result<()>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    match target {
        Target::Tcp(addr) => pipe_tcp(addr, input, output).await,
        Target::WebSocket(url) => pipe_web_socket(url, tls, input, output).await,
    }
}

/// The TCP session: two copies, the upload half-closing when input ends.
async fn pipe_tcp<I, O>(target: &HostPort, mut input: I, mut output: O) -> Result<()>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let stream = dial::tcp(target).await?;
    let (mut from_server, mut to_server) = stream.into_split();
    let upload = async {
        tokio::io::copy(&mut input, &mut to_server).await?;
        to_server.shutdown().await
    };
    let download = tokio::io::copy(&mut from_server, &mut output);
    tokio::pin!(upload, download);
    let mut uploading = true;
    loop {
        tokio::select! {
            sent = &mut upload, if uploading => {
                uploading = false;
                if let Err(err) = sent {
                    // The download side reports why the server went away.
                    tracing::debug!("sending to {target} stopped: {}", describe_io(&err));
                }
            }
            received = &mut download => {
                return received.map(drop).map_err(|cause| Error::Io {
                    context: format!("connection to {target} lost"),
                    cause,
                });
            }
        }
    }
}

/// The WebSocket session: input lines out as text messages, messages printed.
async fn pipe_web_socket<I, O>(
    url: &str,
    tls: Option<Arc<ClientConfig>>,
    input: I,
    mut output: O,
) -> Result<()>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let endpoint = web_socket_endpoint(url)?;
    let stream = dial::tcp(&endpoint).await?;
    let ws = open_web_socket(url, stream, None, tls)
        .await
        .map_err(|err| Error::Connect {
            addr: url.to_string(),
            reason: describe_ws(&err),
        })?;
    let (mut to_server, mut from_server) = ws.split();
    let mut lines = BufReader::new(input).lines();
    let mut reading_input = true;
    let mut close_received = false;
    let lost = |err: tungstenite::Error| Error::WebSocket {
        context: format!("connection to {url} lost"),
        reason: describe_ws(&err),
    };
    loop {
        tokio::select! {
            line = lines.next_line(), if reading_input => match line {
                Ok(Some(line)) => {
                    let text = line.strip_suffix('\r').unwrap_or(&line);
                    to_server.send(Message::text(text)).await.map_err(lost)?;
                }
                Ok(None) => {
                    reading_input = false;
                    to_server.close().await.map_err(lost)?;
                }
                Err(cause) => return Err(Error::Io {
                    context: "stdin must be UTF-8 text lines for a WebSocket".into(),
                    cause,
                }),
            },
            message = from_server.next() => match message {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(()),
                // The server's close frame ended the WebSocket: a TLS server
                // that then drops the connection without close_notify loses nothing.
                Some(Err(tungstenite::Error::Io(err)))
                    if close_received && err.kind() == ErrorKind::UnexpectedEof =>
                {
                    return Ok(());
                }
                Some(Err(err)) => return Err(lost(err)),
                Some(Ok(message)) => {
                    close_received |= message.is_close();
                    print_message(&message, &mut output).await?;
                }
            },
        }
    }
}

/// Writes a received message: text as one line, binary as raw bytes.
async fn print_message<O: AsyncWrite + Unpin>(message: &Message, output: &mut O) -> Result<()> {
    let written = match message {
        Message::Text(text) => {
            let mut line = Vec::with_capacity(text.len() + 1);
            line.extend_from_slice(text.as_bytes());
            line.push(b'\n');
            output.write_all(&line).await
        }
        Message::Binary(data) => output.write_all(data).await,
        _ => return Ok(()),
    };
    written
        .and(output.flush().await)
        .map_err(|cause| Error::Io {
            context: "writing to stdout".into(),
            cause,
        })
}

/// The host and port a WebSocket URL points at.
///
/// # Errors
/// [`Error::InvalidAddress`] for a URL that is not a WebSocket URL with a host.
pub fn web_socket_endpoint(url: &str) -> Result<HostPort> {
    let invalid = |reason| Error::InvalidAddress {
        input: url.to_string(),
        reason,
    };
    let request = url
        .into_client_request()
        .map_err(|_| invalid("not a valid WebSocket URL"))?;
    let uri = request.uri();
    let host = uri.host().ok_or_else(|| invalid("the URL has no host"))?;
    let default_port = if uri.scheme_str() == Some("wss") {
        443
    } else {
        80
    };
    Ok(HostPort {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: uri.port_u16().unwrap_or(default_port),
    })
}

/// Describes a tungstenite error in plain words.
pub fn describe_ws(err: &tungstenite::Error) -> String {
    match err {
        tungstenite::Error::Io(io) => describe_tls_io(io),
        tungstenite::Error::Http(response) => {
            format!(
                "the server answered HTTP {} instead of a WebSocket",
                response.status()
            )
        }
        other => other.to_string(),
    }
}

/// Describes an I/O error of a TLS client in plain words, a refused server
/// certificate included.
pub fn describe_tls_io(err: &io::Error) -> String {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(refused)) => describe_certificate(refused),
        _ => describe_io(err),
    }
}

/// Describes why the server's certificate was refused, and what gets past it.
fn describe_certificate(refused: &rustls::CertificateError) -> String {
    use rustls::CertificateError::{Other, UnknownIssuer};
    let why = match refused {
        UnknownIssuer => "it is not issued by a trusted authority (--cacert FILE trusts the \
                          CA certificates in FILE; --insecure skips the check, for development only)"
            .to_string(),
        // webpki names this reason only by its variant name.
        Other(other) if other.0.to_string() == "CaUsedAsEndEntity" => {
            "it is marked as a CA (CA:TRUE, as `openssl req -x509` makes it by default), \
             which is refused as a server's own certificate: have a CA sign one without \
             CA:TRUE, or use --insecure for development"
                .to_string()
        }
        Other(other) => other.0.to_string(),
        other => other.to_string(),
    };
    format!("the server's certificate is not trusted: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_web_socket_targets() {
        assert_eq!(
            Target::parse("localhost:3000").unwrap(),
            Target::Tcp(HostPort {
                host: "localhost".into(),
                port: 3000
            })
        );
        assert_eq!(
            Target::parse("ws://[::1]:8080/ws").unwrap(),
            Target::WebSocket("ws://[::1]:8080/ws".into())
        );
        let endpoint = web_socket_endpoint("wss://example.org/chat").unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port),
            ("example.org", 443)
        );
        let endpoint = web_socket_endpoint("ws://[::1]:9/").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 9));
    }

    #[test]
    fn rejects_other_schemes_and_bad_urls() {
        assert!(Target::parse("http://localhost:80").is_err());
        assert!(Target::parse("ws://").is_err());
        assert!(Target::parse("localhost").is_err());
    }
}
