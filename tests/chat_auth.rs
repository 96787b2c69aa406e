//! `serve --token` and `--admin-token` (docs/PROTOCOL.md 5.5): line clients send
//! `/auth T` before anything else, HTTP clients `Authorization: Bearer T`,
//! WebSocket clients `/ws?token=T`; the diary needs the admin token.

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::util::{LineClient, Server, assert_one_line_error, curl, run_switchboard};

/// A server that asks every client for `s3cret` and the diary for `root`.
fn guarded_server() -> Server {
    Server::start(&["serve", "--token", "s3cret", "--admin-token", "root"])
}

/// Connects a line client and gives the token.
fn let_in(server: &Server, token: &str) -> LineClient {
    let mut client = LineClient::connected(server);
    client.expect("* this server needs a token: send /auth TOKEN");
    client.send(&format!("/auth {token}"));
    client
}

#[test]
fn line_clients_give_the_token_before_anything_else() {
    let server = guarded_server();
    let mut alice = LineClient::connected(&server);
    alice.expect("* this server needs a token: send /auth TOKEN");
    alice.send("hello before the token");
    alice.expect("! token required: send /auth TOKEN first");
    alice.send("/join #secret");
    alice.expect("! token required: send /auth TOKEN first");
    // The token and the next command in one write: nothing after it is lost.
    alice.send_bytes(b"/auth s3cret\n/nick alice\n");
    alice.read_greeting();
    // `/auth` was its first line: it joins with its greeting.
    alice.expect(&format!("* {} joined #lobby", alice.nick));
    alice.expect("* you are now known as alice");
    alice.send("/auth s3cret");
    alice.expect("* already let in");

    let mut bob = let_in(&server, "root");
    bob.read_greeting();
    bob.expect(&format!("* {} joined #lobby", bob.nick));
    alice.expect(&format!("* {} joined #lobby", bob.nick));
    bob.send("hi alice");
    alice.expect(&format!("[#lobby] {}: hi alice", bob.nick));

    let mut mallory = let_in(&server, "guess");
    mallory.expect("! invalid token: goodbye");
    assert!(mallory.until_closed().is_empty());
    let (status, diary) = curl(&[
        "-H",
        "Authorization: Bearer root",
        &server.url("/api/connections"),
    ]);
    assert_eq!(status, 200, "{diary}");
    let diary: Value = serde_json::from_str(&diary).unwrap();
    // The chat connections (curl's own HTTP connection is listed too, nickless).
    let nicks: Vec<&str> = diary
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["nick"].as_str())
        .collect();
    assert_eq!(nicks.len(), 2, "only the two let in: {nicks:?}");
    assert!(nicks.contains(&"alice"), "{nicks:?}");
}

#[test]
fn http_clients_need_a_bearer_token_and_the_diary_the_admin_one() {
    let server = guarded_server();
    let mut alice = let_in(&server, "s3cret");
    alice.read_greeting();
    alice.expect(&format!("* {} joined #lobby", alice.nick));
    let bearer = |token: &str| format!("Authorization: Bearer {token}");

    assert_eq!(curl(&[&server.url("/healthz")]), (200, "ok\n".into()));
    assert_eq!(curl(&[&server.url("/")]).0, 200, "the page is open to all");
    for (args, status, code) in [
        (vec![server.url("/api/rooms")], 401, "unauthorized"),
        (
            vec!["-H".into(), bearer("s3cre"), server.url("/api/rooms")],
            401,
            "unauthorized",
        ),
        (vec![server.url("/metrics")], 401, "unauthorized"),
        (
            vec![
                "-H".into(),
                bearer("s3cret"),
                server.url("/api/connections"),
            ],
            403,
            "forbidden",
        ),
        // The diary page takes the token from its URL, as a browser opens it.
        (vec![server.url("/diary")], 401, "unauthorized"),
        (vec![server.url("/diary?token=s3cret")], 403, "forbidden"),
        (
            vec![server.url("/api/connections?token=s3cret")],
            403,
            "forbidden",
        ),
        (
            vec![server.url("/api/rooms?token=s3cret")],
            401,
            "unauthorized",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, body) = curl(&args);
        assert_eq!(got, status, "{args:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], code, "{args:?}");
    }
    let (status, page) = curl(&[&server.url("/diary?token=root")]);
    assert_eq!(status, 200);
    assert!(page.contains("<title>switchboard diary</title>"), "{page}");
    let (status, diary) = curl(&[&server.url("/api/connections?token=root")]);
    assert_eq!(status, 200, "{diary}");
    let (status, head) = curl(&["-o", "/dev/null", "-D", "-", &server.url("/api/rooms")]);
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: Bearer"), "{head}");

    let (status, rooms) = curl(&["-H", &bearer("s3cret"), &server.url("/api/rooms")]);
    assert_eq!(status, 200, "{rooms}");
    assert!(rooms.contains(r#""room":"lobby""#), "{rooms}");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer("s3cret"),
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"from":"curl","text":"with a token"}"#,
        &server.url("/api/rooms/lobby/messages"),
    ]);
    assert_eq!(status, 201, "{body}");
    alice.expect("[#lobby] curl: with a token");
    let (status, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"from":"curl","text":"without"}"#,
        &server.url("/api/rooms/lobby/messages"),
    ]);
    assert_eq!(status, 401);
    alice.send("after");
    alice.expect(&format!("[#lobby] {}: after", alice.nick));
}

#[test]
fn websocket_clients_give_the_token_in_the_url() {
    let server = guarded_server();
    let mut alice = let_in(&server, "s3cret");
    alice.read_greeting();
    alice.expect(&format!("* {} joined #lobby", alice.nick));
    let base = format!("ws://{}/ws", server.local());
    crate::util::runtime().block_on(async {
        match tokio_tungstenite::connect_async(format!("{base}?nick=eve")).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
        match tokio_tungstenite::connect_async(format!("{base}?nick=eve&token=nope")).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}?nick=web&token=s3cret"))
            .await
            .expect("the token lets the WebSocket in");
        let Some(Ok(Message::Text(welcome))) = ws.next().await else {
            panic!("no welcome");
        };
        let welcome: Value = serde_json::from_str(&welcome).unwrap();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
    });
    alice.expect("* web joined #lobby");
}

#[test]
fn an_empty_token_is_refused_at_startup() {
    assert_one_line_error(
        &run_switchboard(&["serve", "--port", "0", "--token", ""], b""),
        "--token must be a non-empty word without spaces",
    );
}

#[test]
fn a_post_cannot_speak_for_someone_connected_without_the_admin_token() {
    let server = Server::start(&["serve", "--memory", "--admin-token", "root"]);
    let mut alice = LineClient::named(&server, "alice");
    let url = server.url("/api/rooms/lobby/messages");
    let post = |from: &str, text: &str, token: Option<&str>| {
        let body = format!(r#"{{"from":"{from}","text":"{text}"}}"#);
        let bearer = token.map(|token| format!("authorization: Bearer {token}"));
        let mut args = vec!["-X", "POST", "-H", "content-type: application/json"];
        if let Some(bearer) = &bearer {
            args.extend(["-H", bearer.as_str()]);
        }
        args.extend(["--data-binary", body.as_str(), url.as_str()]);
        curl(&args)
    };

    let (status, body) = post("ALICE", "I owe everyone money", None);
    assert_eq!(status, 409, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "nick_taken", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice"),
        "{body}"
    );

    assert_eq!(post("alice", "relayed by the bridge", Some("root")).0, 201);
    alice.expect("[#lobby] alice: relayed by the bridge");
    assert_eq!(post("carol", "nobody has this nick", None).0, 201);
    alice.expect("[#lobby] carol: nobody has this nick");
}
