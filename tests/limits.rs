//! Connection limits (docs/PROTOCOL.md 5.5): per client address, per second,
//! and in all, each refusal in the form its client reads (a `! …` line,
//! HTTP 429/503 with `Retry-After`, a WebSocket close code), trusted
//! addresses exempt, and WebSocket sessions counted for as long as they live.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use socket2::{Domain, Socket, Type};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::util::{
    COMMAND_DEADLINE, LineClient, Server, assert_one_line_error, curl, run_switchboard, runtime,
};

/// How long a freed slot may take to be seen free.
const RELEASE_DEADLINE: Duration = Duration::from_secs(10);

/// A WebSocket client of the test's.
type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A connection to the server from `source`, a loopback address other than
/// 127.0.0.1 (the socket is bound to it before connecting).
fn connect_from(server: &Server, source: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket
        .bind(&source.into())
        .expect("bind the source address");
    let target: SocketAddr = server.local().parse().unwrap();
    socket.connect(&target.into()).expect("connects");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(COMMAND_DEADLINE)).unwrap();
    stream
}

/// Everything the server sends on a new connection before it closes it.
fn refusal(server: &Server) -> String {
    let mut text = String::new();
    server.connect().read_to_string(&mut text).unwrap();
    text
}

/// Connects line clients until one is greeted (a refused one is closed
/// with its `! …` line), within [`RELEASE_DEADLINE`].
fn greeted_soon(server: &Server) -> LineClient {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let mut client = LineClient::connected(server);
        let first = client.line();
        if first.starts_with("* welcome ") {
            return client;
        }
        assert!(
            first.starts_with("! "),
            "neither welcome nor refusal: {first}"
        );
        assert!(Instant::now() < deadline, "still refused: {first}");
    }
}

/// A WebSocket to `/ws` that reads its welcome.
async fn welcomed(port: u16) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .expect("the handshake completes");
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(
        welcome.to_text().unwrap().contains("\"welcome\""),
        "{welcome}"
    );
    ws
}

/// Opens a WebSocket expecting a refusal: the handshake completes, then
/// the server closes at once; the close frame it sent.
async fn refused_websocket(port: u16) -> CloseFrame {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .expect("the handshake completes");
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => frame,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// The port a WebSocket client connects from.
fn local_port(ws: &Ws) -> u16 {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => unreachable!("plain ws:// only"),
    }
}

/// The value of `name` in `/metrics`, read from 127.0.0.2.
fn metric(server: &Server, name: &str) -> String {
    let (status, text) = curl(&["--interface", "127.0.0.2", &server.url("/metrics")]);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("# HELP switchboard_refused_connections_total "),
        "{text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .to_string()
}

#[test]
fn the_connection_over_the_per_address_limit_is_refused_in_its_own_words() {
    let server = Server::start(&[
        "serve",
        "--memory",
        "--trust",
        "none",
        "--max-per-address",
        "3",
        "--connect-rate",
        "0",
    ]);
    let mut held: Vec<LineClient> = (0..3).map(|_| LineClient::greeted(&server)).collect();

    assert_eq!(
        refusal(&server),
        "! too many connections from your address (3): try later\n"
    );
    let (status, text) = curl(&["-D", "-", &server.url("/api/rooms")]);
    assert_eq!(status, 429, "{text}");
    let text = text.to_ascii_lowercase();
    assert!(text.contains("\r\nretry-after: 5\r\n"), "{text}");
    assert!(text.contains(r#""code":"too_many_connections""#), "{text}");
    let close = runtime().block_on(refused_websocket(server.port));
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(
        close.reason.as_str(),
        "too many connections from your address"
    );

    // Another address is served.
    let mut other = LineClient::over(connect_from(&server, "127.0.0.2"));
    other.read_greeting();
    other.first_line("/nick elsewhere");
    assert_eq!(
        metric(
            &server,
            r#"switchboard_refused_connections_total{reason="per_address"}"#
        ),
        "3"
    );

    // One closes: the address has room for one again.
    held.pop();
    let _back = greeted_soon(&server);
}

#[test]
fn loopback_is_trusted_by_default() {
    let server = Server::start(&["serve", "--memory", "--max-per-address", "1"]);
    let _clients: Vec<LineClient> = (0..4).map(|_| LineClient::greeted(&server)).collect();
    let (status, _) = curl(&[&server.url("/healthz")]);
    assert_eq!(status, 200);
}

#[test]
fn an_address_connecting_too_fast_waits_for_its_bucket() {
    let server = Server::start(&[
        "serve",
        "--memory",
        "--trust",
        "none",
        "--connect-rate",
        "0.5",
    ]);
    // A burst of one, then one every two seconds.
    let _first = server.connect();
    assert_eq!(
        refusal(&server),
        "! too many new connections from your address (0.5 per second): try later\n"
    );
    let (status, text) = curl(&["-D", "-", &server.url("/healthz")]);
    assert_eq!(status, 429, "{text}");
    let retry_after = text.to_ascii_lowercase().lines().find_map(|line| {
        line.strip_prefix("retry-after: ")?
            .trim()
            .parse::<u64>()
            .ok()
    });
    assert!(matches!(retry_after, Some(1..=2)), "{text}");
    assert!(
        text.contains(r#""code":"too_many_new_connections""#),
        "{text}"
    );
    // Two seconds later there is a token again.
    let _later = greeted_soon(&server);
    let refused = metric(
        &server,
        r#"switchboard_refused_connections_total{reason="connect_rate"}"#,
    );
    assert!(refused.parse::<u64>().unwrap() >= 2, "{refused}");
}

#[test]
fn websocket_sessions_hold_their_connection_slot_until_they_end() {
    let server = Server::start(&["serve", "--memory", "--max-connections", "3"]);
    let port = server.port;
    let runtime = runtime();
    let mut sockets: Vec<Ws> = runtime.block_on(async {
        let mut sockets = Vec::new();
        for _ in 0..3 {
            sockets.push(welcomed(port).await);
        }
        sockets
    });

    let mut refused = server.connect();
    let refused_peer = format!("127.0.0.1:{} ", refused.local_addr().unwrap().port());
    let mut text = String::new();
    refused.read_to_string(&mut text).unwrap();
    assert_eq!(text, "! server full (3 connections): try later\n");
    let close = runtime.block_on(refused_websocket(port));
    assert_eq!(u16::from(close.code), 1013);
    assert_eq!(close.reason.as_str(), "server full");
    let (status, text) = curl(&["-D", "-", &server.url("/healthz")]);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains(r#""code":"server_full""#), "{text}");

    // The sessions are connected until they end, and logged so then.
    let leaving = sockets.pop().unwrap();
    let gone = format!("disconnected 127.0.0.1:{} ", local_port(&leaving));
    assert!(!server.has_logged(&gone), "logged as gone while connected");
    runtime.block_on(async move {
        let mut leaving = leaving;
        leaving.close(None).await.unwrap();
        while leaving.next().await.is_some() {}
    });
    server.wait_for_log(&gone);
    // Refused connections are counted, not logged at the default level: a
    // flood of them cannot flood the log.
    assert!(
        !server.has_logged(&refused_peer),
        "a refused connection was logged at info"
    );
    let deadline = Instant::now() + RELEASE_DEADLINE;
    let newcomer = loop {
        let (mut ws, _) = runtime
            .block_on(tokio_tungstenite::connect_async(format!(
                "ws://127.0.0.1:{port}/ws"
            )))
            .unwrap();
        match runtime.block_on(ws.next()) {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"welcome\"") => break ws,
            Some(Ok(Message::Close(_))) if Instant::now() < deadline => continue,
            other => panic!("no welcome for the newcomer: {other:?}"),
        }
    };
    drop((sockets, newcomer));
}

#[test]
fn a_full_server_refuses_https_with_a_json_503() {
    let server = Server::start(&[
        "serve",
        "--memory",
        "--max-connections",
        "1",
        "--tls-self-signed",
    ]);
    let _held = LineClient::greeted(&server);
    let url = format!("https://127.0.0.1:{}/api/rooms", server.port);
    let (status, text) = curl(&["-k", "-D", "-", &url]);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("\r\nretry-after: 5\r\n"),
        "{text}"
    );
    assert!(text.contains(r#""code":"server_full""#), "{text}");
}

#[test]
fn bad_limit_flags_are_clear_errors() {
    for (args, expected) in [
        (
            &["--trust", "10.0.0.0/33"][..],
            "--trust: invalid address '10.0.0.0/33'",
        ),
        (
            &["--trust", "10.0.0.0/8,"][..],
            "--trust: invalid address ''",
        ),
        (&["--connect-rate=-1"][..], "--connect-rate must be 0"),
    ] {
        let mut command = vec!["serve", "--memory", "--port", "0"];
        command.extend_from_slice(args);
        let output = run_switchboard(&command, b"");
        assert_one_line_error(&output, expected);
    }
}
