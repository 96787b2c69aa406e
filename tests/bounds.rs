//! Bounds on what a peer can grow (docs/PROTOCOL.md 5.5): HTTP posts held to
//! the text limit and a rate per client address; and a TLS ClientHello on a
//! port without TLS answered with an alert (5).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Server, curl, run, stderr, tool};

/// POSTs `{"from":"curl","text":TEXT}` to `room` with curl (from `source`,
/// a loopback address); the status, the headers and the JSON body.
fn post_from(server: &Server, source: &str, room: &str, text: &str) -> (u16, String, Value) {
    let body = json!({"from": "curl", "text": text}).to_string();
    let mut command = tool("curl");
    command.args([
        "-s",
        "-i",
        "--interface",
        source,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &body,
        &server.url(&format!("/api/rooms/{room}/messages")),
    ]);
    let output = run(command, b"");
    let response = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (head, body) = response
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("no HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    (status, head.to_lowercase(), body)
}

/// POSTs `text` to `room` with curl from 127.0.0.1; the status and body.
fn post(server: &Server, room: &str, text: &str) -> (u16, Value) {
    let (status, _, body) = post_from(server, "127.0.0.1", room, text);
    (status, body)
}

/// The ids `GET /api/rooms/{room}/messages` returns.
fn stored_ids(server: &Server, room: &str) -> Vec<u64> {
    let (status, body) = curl(&[&server.url(&format!("/api/rooms/{room}/messages?limit=1000"))]);
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    let messages = body["messages"].as_array().expect("messages").clone();
    messages
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect()
}

#[test]
fn posts_over_the_rate_get_429_with_retry_after_then_pass_again() {
    let server = Server::start(&["serve", "--memory", "--rate", "1", "--burst", "3"]);
    for n in 1..=3 {
        assert_eq!(post(&server, "lobby", &format!("burst {n}")).0, 201);
    }
    let (status, head, body) = post_from(&server, "127.0.0.1", "lobby", "one too many");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let retry_after: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .and_then(|seconds| seconds.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"));
    assert_eq!(retry_after, 1, "one token a second");
    assert_eq!(
        post_from(&server, "127.0.0.2", "lobby", "another address").0,
        201,
        "another address has a bucket of its own"
    );
    // Waiting out the bucket, as the client was told to.
    let deadline = Instant::now() + Duration::from_secs(10);
    std::thread::sleep(Duration::from_secs(retry_after));
    loop {
        match post(&server, "lobby", "after the wait") {
            (201, _) => break,
            (429, _) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("still refused after {retry_after} s: {other:?}"),
        }
    }
    assert_eq!(stored_ids(&server, "lobby"), [1, 2, 3, 4, 5]);
}

#[test]
fn a_post_is_held_to_the_text_limit_of_the_other_transports() {
    let server = Server::start(&[
        "serve",
        "--memory",
        "--max-line",
        "64",
        "--max-ws-message",
        "100",
    ]);
    let (status, body) = post(&server, "lobby", &"x".repeat(101));
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body["error"],
        json!({"code": "too_long", "message": "message too long (limit 100 bytes)"})
    );
    assert_eq!(post(&server, "lobby", &"x".repeat(100)).0, 201);
    let (status, body) = post(&server, "lobby", "");
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("empty_text"))
    );
    assert_eq!(stored_ids(&server, "lobby"), [1]);
}

#[test]
fn a_client_hello_on_a_port_without_tls_gets_a_fatal_alert() {
    let server = Server::start(&["serve", "--memory"]);
    let url = format!("https://127.0.0.1:{}/healthz", server.port);
    let mut command = tool("curl");
    command.args(["-sS", "--max-time", "10", &url]);
    let output = run(command, b"");
    let said = stderr(&output);
    // curl's exit code 35: the TLS handshake failed (not 7, not 56: no reset).
    assert_eq!(output.status.code(), Some(35), "{said}");
    assert!(said.contains("alert handshake failure"), "{said}");

    let mut s_client = tool("openssl");
    s_client.args(["s_client", "-connect", &server.local()]);
    let output = run(s_client, b"");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("alert handshake failure"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        curl(&[&server.url("/healthz")]),
        (200, "ok\n".into()),
        "plain HTTP is still served"
    );
}

#[test]
fn the_alert_is_the_whole_answer_to_a_client_hello() {
    let server = Server::start(&["serve", "--memory"]);
    let mut stream: TcpStream = server.connect();
    stream
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0])
        .unwrap();
    let mut alert = Vec::new();
    stream.read_to_end(&mut alert).expect("the server closes");
    assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
}
