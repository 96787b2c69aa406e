//! `switchboard serve` for browsers and curl (docs/PROTOCOL.md 5.3, 5.2 over WebSocket):
//! every HTTP endpoint and error through curl, WebSocket clients from Python
//! and Node chatting with `nc` and curl, recovery with `since`, and abuse.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{
    LineClient, Server, curl, repo_file, run, run_switchboard, runtime, stdout, tool,
};

/// POSTs a message as JSON with curl.
fn post(server: &Server, room: &str, body: &str) -> (u16, String) {
    let url = server.url(&format!("/api/rooms/{room}/messages"));
    curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
        &url,
    ])
}

#[test]
fn every_http_endpoint_answers_as_the_spec_says() {
    let server = Server::start(&["serve"]);
    let mut alice = LineClient::named(&server, "alice");

    assert_eq!(curl(&[&server.url("/healthz")]), (200, "ok\n".into()));
    let (status, page) = curl(&[&server.url("/")]);
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>switchboard</title>") && page.contains("new WebSocket"),
        "{page}"
    );

    assert_eq!(
        post(&server, "lobby", r#"{"from":"curl","text":"hi from curl"}"#),
        (201, r#"{"id":1}"#.into())
    );
    alice.expect("[#lobby] curl: hi from curl");

    let (status, rooms) = curl(&[&server.url("/api/rooms")]);
    assert_eq!(status, 200);
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms, json!([{"room":"lobby","members":1,"last_id":1}]));

    let (status, messages) = curl(&[&server.url("/api/rooms/lobby/messages?since=0&limit=10")]);
    assert_eq!(status, 200);
    let messages: Value = serde_json::from_str(&messages).unwrap();
    assert_eq!(messages["messages"][0]["text"], "hi from curl");
    assert_eq!(messages["messages"][0]["id"], 1);

    let (status, diary) = curl(&[&server.url("/api/connections")]);
    assert_eq!(status, 200);
    let diary: Value = serde_json::from_str(&diary).unwrap();
    let entry = &diary[0];
    assert_eq!(
        (
            entry["nick"].clone(),
            entry["transport"].clone(),
            entry["rooms"].clone()
        ),
        (json!("alice"), json!("tcp"), json!(["lobby"]))
    );
    assert_eq!(
        entry["peer"],
        alice.socket().local_addr().unwrap().to_string()
    );
    assert!(
        entry["fd"].as_u64().is_some() && entry["bytes_in"].as_u64().unwrap() > 0,
        "{entry}"
    );

    let (status, metrics) = curl(&[&server.url("/metrics")]);
    assert_eq!(status, 200);
    for metric in [
        "switchboard_connections{transport=\"tcp\"} 1",
        "switchboard_messages_total 1",
        "switchboard_deliveries_total 1",
    ] {
        assert!(
            metrics.contains(metric),
            "{metric} missing from:\n{metrics}"
        );
    }
    // alice's /nick, and what she was sent: greeting, ack and curl's message.
    for (counter, at_least) in [
        ("switchboard_requests_total{transport=\"tcp\"}", 1.0),
        ("switchboard_events_sent_total{transport=\"tcp\"}", 3.0),
    ] {
        let value = metrics
            .lines()
            .find_map(|line| line.strip_prefix(counter)?.trim().parse::<f64>().ok());
        assert!(
            value.is_some_and(|value| value >= at_least),
            "{counter} below {at_least} in:\n{metrics}"
        );
    }
}

/// The families of a `/metrics` scrape, in the order listed.
fn metric_families(scrape: &str) -> Vec<String> {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| rest.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn metrics_are_described_sorted_and_count_http_requests() {
    let server = Server::start(&["serve", "--memory"]);
    let mut alice = LineClient::named(&server, "alice");
    alice.send("hello");
    alice.expect("[#lobby] alice: hello");
    assert_eq!(
        post(&server, "lobby", r#"{"from":"bot","text":"hi"}"#).0,
        201
    );
    assert_eq!(curl(&[&server.url("/nowhere")]).0, 404);

    let (status, first) = curl(&[&server.url("/metrics")]);
    assert_eq!(status, 200);
    let (_, second) = curl(&[&server.url("/metrics")]);
    let families = metric_families(&first);
    let mut in_order = families.clone();
    in_order.sort();
    assert_eq!(families, in_order, "families out of order:\n{first}");
    assert_eq!(families, metric_families(&second));
    for line in [
        "# HELP switchboard_messages_total Room messages delivered by this node.",
        "# HELP switchboard_connections Open line and WebSocket connections, by transport.",
        "switchboard_http_requests_total{route=\"/api/rooms/{room}/messages\",method=\"POST\",status=\"201\"} 1",
        "switchboard_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
    ] {
        assert!(
            first.lines().any(|l| l == line),
            "{line} missing from:\n{first}"
        );
    }
    // The first scrape is counted by the time the second one is rendered.
    assert!(
        second.contains(
            "switchboard_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"} 1"
        ),
        "{second}"
    );
}

#[test]
fn http_errors_are_json_with_the_right_status() {
    let server = Server::start(&["serve", "--max-body", "1024"]);
    let error_code = |(status, body): (u16, String)| {
        let body: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        (status, body["error"]["code"].as_str().unwrap().to_string())
    };
    let big = format!(r#"{{"from":"x","text":"{}"}}"#, "y".repeat(2000));
    for (result, expected) in [
        (curl(&[&server.url("/nope")]), (404, "not_found")),
        (
            curl(&["-X", "DELETE", &server.url("/api/rooms")]),
            (405, "method_not_allowed"),
        ),
        (post(&server, "lobby", "{nope"), (400, "bad_json")),
        (
            post(&server, "lobby", r#"{"from":"x"}"#),
            (400, "missing_field"),
        ),
        (post(&server, "lobby", &big), (413, "too_large")),
        (
            post(&server, "bad!room", r#"{"from":"x","text":"y"}"#),
            (400, "invalid_room"),
        ),
        (
            post(&server, "lobby", r#"{"from":"bad nick","text":"y"}"#),
            (400, "invalid_nick"),
        ),
        (
            post(&server, "lobby", r#"{"from":"x","text":""}"#),
            (400, "empty_text"),
        ),
        (
            post(&server, "lobby", r#"{"from":"x","text":"  "}"#),
            (400, "empty_text"),
        ),
        (
            curl(&[&server.url("/api/rooms/lobby/messages?since=-4")]),
            (400, "bad_query"),
        ),
        (curl(&[&server.url("/ws")]), (426, "upgrade_required")),
    ] {
        assert_eq!(error_code(result), (expected.0, expected.1.to_string()));
    }
    // Malformed HTTP gets a 400 from hyper and the server carries on.
    let mut raw = server.connect();
    raw.write_all(b"GET / HTTP/1.1\r\nHost x\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = raw.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    assert_eq!(curl(&[&server.url("/healthz")]).0, 200);
}

#[test]
fn websocket_clients_from_python_and_node_chat_with_nc_and_curl() {
    let server = Server::start(&["serve"]);
    let ws_url = |nick: &str| format!("ws://127.0.0.1:{}/ws?nick={nick}&room=lobby", server.port);
    let mut nc = LineClient::named(&server, "nc");

    let mut python = tool("python3");
    python
        .arg(repo_file("tests/python/ws_chat_client.py"))
        .args([&ws_url("py"), "curl", "hello from python", "4"]);
    let python = thread::spawn(move || run(python, b""));
    nc.expect("* py joined #lobby");
    let mut node = tool("node");
    node.arg(repo_file("tests/node/ws-chat-client.mjs")).args([
        &ws_url("node"),
        "py",
        "hello from node",
        "4",
    ]);
    let node = thread::spawn(move || run(node, b""));
    nc.expect("* node joined #lobby");

    nc.send("hello from nc");
    nc.expect("[#lobby] nc: hello from nc");
    assert_eq!(
        post(
            &server,
            "lobby",
            r#"{"from":"curl","text":"hello from curl"}"#
        )
        .0,
        201
    );
    let expected = [
        "nc: hello from nc",
        "curl: hello from curl",
        "py: hello from python",
        "node: hello from node",
    ];
    for line in &expected[1..] {
        let (from, text) = line.split_once(": ").unwrap();
        nc.expect(&format!("[#lobby] {from}: {text}"));
    }
    for client in [python.join().unwrap(), node.join().unwrap()] {
        assert!(client.status.success(), "{client:?}");
        assert_eq!(stdout(&client).lines().collect::<Vec<_>>(), expected);
    }
}

#[test]
fn a_dropped_websocket_recovers_with_since_missing_nothing_and_doubling_nothing() {
    let server = Server::start(&["serve"]);
    let port = server.port;
    let runtime = runtime();
    runtime.block_on(async move {
        let say = |n: u32| format!(r#"{{"from":"bot","text":"m{n}"}}"#);
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{port}/ws?nick=reader&room=news"
        ))
        .await
        .unwrap();
        for n in 1..=3 {
            assert_eq!(post(&server, "news", &say(n)).0, 201);
        }
        let mut last_id = 0;
        while last_id < 3 {
            let event: Value =
                serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
            if event["type"] == "message" {
                last_id = event["id"].as_u64().unwrap();
            }
        }
        drop(ws);
        for n in 4..=6 {
            assert_eq!(post(&server, "news", &say(n)).0, 201);
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{port}/ws?nick=reader&room=news&since={last_id}"
        ))
        .await
        .unwrap();
        let mut texts = Vec::new();
        while texts.len() < 4 {
            if texts.len() == 3 {
                assert_eq!(post(&server, "news", &say(7)).0, 201);
            }
            let event: Value =
                serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
            if event["type"] == "message" {
                texts.push(event["text"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(texts, ["m4", "m5", "m6", "m7"]);
        ws.send(Message::text("not json")).await.unwrap();
        let error: Value =
            serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(
            (error["type"].clone(), error["code"].clone()),
            (json!("error"), json!("bad_json"))
        );
        ws.close(None).await.unwrap();
    });
}

/// Opens a raw WebSocket to `/ws` (handshake done by hand), for sending frames
/// no well-behaved client would.
pub(crate) fn raw_websocket(server: &Server) -> TcpStream {
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let head = response_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Reads an HTTP response head (the connection stays open, so not to the end).
pub(crate) fn response_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads one server (unmasked) frame: its opcode and payload.
pub(crate) fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0; 2];
    stream.read_exact(&mut header).unwrap();
    let len = match header[1] & 0x7f {
        126 => {
            let mut ext = [0; 2];
            stream.read_exact(&mut ext).unwrap();
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0; 8];
            stream.read_exact(&mut ext).unwrap();
            u64::from_be_bytes(ext)
        }
        short => u64::from(short),
    };
    let mut payload = vec![0; usize::try_from(len).unwrap()];
    stream.read_exact(&mut payload).unwrap();
    (header[0] & 0x0f, payload)
}

/// Reads server frames until a close frame; returns its status code.
pub(crate) fn close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (opcode, payload) = read_frame(stream);
        if opcode == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// A masked client frame.
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn websocket_abuse_is_answered_per_the_rfc_and_harms_nobody() {
    let server = Server::start(&["serve"]);
    let mut bystander = LineClient::named(&server, "bystander");

    let mut bad_utf8 = raw_websocket(&server);
    bad_utf8
        .write_all(&frame(0x1, &[0xff, 0xfe, 0xfd]))
        .unwrap();
    assert_eq!(close_code(&mut bad_utf8), 1007);

    let mut too_big = raw_websocket(&server);
    too_big
        .write_all(&frame(0x1, &vec![b'x'; 70 * 1024]))
        .unwrap();
    assert_eq!(close_code(&mut too_big), 1009);

    // A frame that claims 50 MB is refused from its header, before any payload.
    let mut claims_too_much = raw_websocket(&server);
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&50_000_000u64.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    claims_too_much.write_all(&header).unwrap();
    assert_eq!(close_code(&mut claims_too_much), 1009);

    // A client frame must be masked (RFC 6455 5.1): one that is not is a
    // protocol error.
    let mut unmasked = raw_websocket(&server);
    let text = br#"{"type":"who","room":"lobby"}"#;
    let mut plain = vec![0x81, u8::try_from(text.len()).unwrap()];
    plain.extend_from_slice(text);
    unmasked.write_all(&plain).unwrap();
    assert_eq!(close_code(&mut unmasked), 1002);

    for (version, key, status) in [
        ("8", "dGhlIHNhbXBsZSBub25jZQ==", "426"),
        ("13", "", "400"),
        // Base64, but of 5 bytes rather than 16; and not base64 at all.
        ("13", "c2hvcnQ=", "400"),
        ("13", "not a key, just words!==", "400"),
    ] {
        let mut stream = server.connect();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let reply = response_head(&mut stream);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
        if status == "426" {
            assert!(
                reply
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{reply}"
            );
        }
    }

    bystander.send("still fine");
    bystander.expect_past_notices("[#lobby] bystander: still fine");
}

#[test]
fn shutdown_closes_websockets_with_going_away_and_exits_zero() {
    let server = Server::start(&["serve"]);
    let port = server.port;
    let runtime = runtime();
    let mut ws = runtime.block_on(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .unwrap();
        let welcome = ws.next().await.unwrap().unwrap();
        assert!(
            welcome.to_text().unwrap().contains("\"welcome\""),
            "{welcome}"
        );
        ws
    });
    // The client keeps reading, as a live one does, so it answers the close.
    let reader = runtime.spawn(async move {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    });
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let close = runtime.block_on(reader).expect("the reader finished");
    let frame = close.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "server shutting down");
}

#[test]
fn a_silent_websocket_is_pinged_then_closed_when_idle() {
    let server = Server::start(&["serve", "--ping-interval", "1", "--idle-timeout", "3"]);
    // A raw client that never answers pings: only the server speaks.
    let mut silent = raw_websocket(&server);
    let mut pings = 0;
    let close = loop {
        match read_frame(&mut silent) {
            (0x9, _) => pings += 1,
            (0x8, payload) => break payload,
            _ => {}
        }
    };
    assert!(pings >= 1, "no ping before the idle close");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1000);
    assert_eq!(String::from_utf8_lossy(&close[2..]), "idle timeout");
}

#[test]
fn connect_over_websocket_is_welcomed_with_the_nick_its_url_asks_for() {
    let server = Server::start(&["serve"]);
    let mut nc = LineClient::named(&server, "taken");
    let events = |nick: &str| -> Vec<Value> {
        let url = format!("ws://127.0.0.1:{}/ws?nick={nick}", server.port);
        let output = run_switchboard(&["connect", &url], b"");
        assert!(output.status.success(), "{output:?}");
        stdout(&output)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    };

    // The welcome carries the nick asked for; no separate ack follows.
    let got = events("y");
    assert_eq!(got[0]["type"], "welcome", "{got:?}");
    assert_eq!(got[0]["nick"], "y", "{got:?}");
    assert!(got[0]["fd"].as_u64().is_some(), "{got:?}");
    assert_eq!(
        got[1..],
        [json!({"type":"joined","room":"lobby","nick":"y"})]
    );
    nc.expect("* y joined #lobby");
    nc.expect("* y left #lobby");

    // A nick someone has: the error first, then the welcome with a guest nick.
    let got = events("TAKEN");
    assert_eq!(
        got[0],
        json!({"type":"error","code":"nick_taken","message":"nick TAKEN is taken"})
    );
    let guest = got[1]["nick"].as_str().expect("a nick").to_string();
    assert!(guest.starts_with("guest-"), "{got:?}");
    assert_eq!(got[1]["type"], "welcome");
    assert_eq!(
        got[2..],
        [json!({"type":"joined","room":"lobby","nick":guest})]
    );
    nc.expect(&format!("* {guest} joined #lobby"));
}
