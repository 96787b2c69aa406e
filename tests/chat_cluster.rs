//! Several `serve` processes as one hub through a real `redis-server`
//! (docs/PROTOCOL.md 5.6): every message reaches everyone once in the same
//! id order on every node, nicks are unique across nodes, direct messages
//! and `who` cross nodes, a client moving between nodes resumes with
//! `since`, and the nodes ride out Redis restarts and each other's deaths.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{
    COMMAND_DEADLINE, LineClient, Redis, Server, curl, runtime, scratch_dir, signal,
};

/// A node of the hub in `redis`, named `name`.
fn node(redis: &Redis, name: &str) -> Server {
    Server::start(&[
        "serve",
        "--redis",
        &redis.url(),
        "--node-name",
        name,
        "--rate",
        "0",
    ])
}

/// A line client switched to JSON, named `nick`, in `room`.
struct JsonLine {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl JsonLine {
    fn join(server: &Server, nick: &str, room: &str) -> Self {
        let stream = server.connect();
        let writer = stream.try_clone().unwrap();
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
        };
        client.send_raw(&format!("/nick {nick}\n/json\n"));
        client.send(json!({"type": "join", "room": room, "ref": "joined"}));
        client.until(|v| v["ref"] == "joined");
        client
    }

    fn send_raw(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn send(&mut self, value: Value) {
        self.send_raw(&format!("{value}\n"));
    }

    /// The next JSON object (greeting lines before `/json` are skipped).
    fn next(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("a line");
            assert!(read > 0, "the server closed the connection");
            if let Ok(value) = serde_json::from_str(&line) {
                return value;
            }
        }
    }

    /// Reads until an object matches `wanted`; returns it.
    fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let value = self.next();
            if wanted(&value) {
                return value;
            }
        }
    }

    /// The next `count` messages of `room`, as (id, from, text).
    fn messages(&mut self, room: &str, count: usize) -> Vec<(u64, String, String)> {
        (0..count)
            .map(|_| message(&self.until(|v| v["type"] == "message" && v["room"] == room)))
            .collect()
    }
}

/// A JSON message as (id, from, text).
fn message(value: &Value) -> (u64, String, String) {
    (
        value["id"].as_u64().expect("id"),
        value["from"].as_str().expect("from").to_string(),
        value["text"].as_str().expect("text").to_string(),
    )
}

/// Posts `text` to `room` on `server` as `from`; the status and body.
fn post(server: &Server, room: &str, from: &str, text: &str) -> (u16, Value) {
    let body = json!({"from": from, "text": text}).to_string();
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        &body,
        &server.url(&format!("/api/rooms/{room}/messages")),
    ]);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Reads lines (each bounded by the client's read timeout) until `expected`.
fn read_until(client: &mut LineClient, expected: &str) {
    while client.line() != expected {}
}

/// Every message of `room` as a node's HTTP history has it, oldest first.
fn history(server: &Server, room: &str) -> Vec<(u64, String, String)> {
    let url = server.url(&format!("/api/rooms/{room}/messages?since=0&limit=1000"));
    let (status, body) = curl(&[&url]);
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(message)
        .collect()
}

/// Retries `attempt` (each try is a real request) until it gives a value;
/// fails after `limit`.
fn eventually<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_message_reaches_everyone_once_in_the_same_order_on_three_nodes() {
    let redis = Redis::start();
    let nodes = [node(&redis, "a"), node(&redis, "b"), node(&redis, "c")];
    let per_sender = 30;
    let total = per_sender * 4;
    let mut alice = JsonLine::join(&nodes[0], "alice", "team");
    let mut carol = JsonLine::join(&nodes[2], "carol", "team");
    let port_b = nodes[1].port;
    let (bob_ready, ready) = std::sync::mpsc::channel();
    let bob = thread::spawn(move || {
        runtime().block_on(async move {
            let url = format!("ws://127.0.0.1:{port_b}/ws?nick=bob&room=team");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
            // Ready once a member: what is said before bob joins is not his.
            while let Some(Ok(reply)) = ws.next().await {
                if reply
                    .to_text()
                    .is_ok_and(|text| text.contains(r#""type":"joined""#))
                {
                    break;
                }
            }
            bob_ready.send(()).unwrap();
            for n in 0..per_sender {
                let say = json!({"type": "say", "room": "team", "text": format!("bob {n}")});
                ws.send(Message::text(say.to_string())).await.unwrap();
            }
            let mut seen = Vec::new();
            let collect = async {
                while seen.len() < total {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) => {
                            let value: Value = serde_json::from_str(&text).unwrap();
                            if value["type"] == "message" {
                                seen.push(message(&value));
                            }
                        }
                        Some(Ok(_)) => {}
                        other => panic!("bob's WebSocket ended: {other:?}"),
                    }
                }
            };
            let done = tokio::time::timeout(COMMAND_DEADLINE / 2, collect).await;
            assert!(done.is_ok(), "bob got {} of {total}: {seen:?}", seen.len());
            seen
        })
    });
    ready.recv_timeout(COMMAND_DEADLINE).unwrap();
    for n in 0..per_sender {
        alice.send(json!({"type": "say", "room": "team", "text": format!("alice {n}")}));
        carol.send(json!({"type": "say", "room": "team", "text": format!("carol {n}")}));
        assert_eq!(post(&nodes[2], "team", "curl", &format!("curl {n}")).0, 201);
    }
    let seen_by_alice = alice.messages("team", total);
    let seen_by_carol = carol.messages("team", total);
    let seen_by_bob = bob.join().unwrap();
    let ids: Vec<u64> = seen_by_alice.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=total as u64).collect::<Vec<_>>(),
        "one id each, in order"
    );
    let texts: HashSet<&str> = seen_by_alice.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(texts.len(), total, "nothing twice");
    assert_eq!(seen_by_bob, seen_by_alice, "bob (node b) saw the same");
    assert_eq!(seen_by_carol, seen_by_alice, "carol (node c) saw the same");
    assert_eq!(
        history(&nodes[1], "team"),
        seen_by_alice,
        "and so does the history"
    );
}

#[test]
fn nicks_are_unique_across_nodes_and_free_again_when_let_go() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut alice = LineClient::named(&a, "alice");
    let mut impostor = LineClient::greeted(&b);
    impostor.first_line("/nick ALICE");
    impostor.expect("! nick ALICE is taken");
    impostor.send("/nick guest-424242");
    impostor.expect("! guest-424242 is a name the server gives to guests: choose another");
    alice.send("/quit");
    alice.until_closed();
    eventually(COMMAND_DEADLINE, || {
        impostor.send("/nick alice");
        (impostor.line() == "* you are now known as alice").then_some(())
    });
}

#[test]
fn direct_messages_who_and_rooms_cross_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut alice = LineClient::named(&a, "alice");
    let mut bob = LineClient::named(&b, "bob");
    alice.send("/msg BOB psst");
    read_until(&mut alice, "* dm to bob: psst");
    read_until(&mut bob, "[dm] alice: psst");
    alice.send("/msg nobody hello?");
    read_until(&mut alice, "! no such nick: nobody");
    eventually(COMMAND_DEADLINE, || {
        alice.send("/who");
        let who = alice.line();
        (who == "* #lobby (2): alice, bob").then_some(())
    });
    let (status, body) = curl(&[&b.url("/api/connections")]);
    assert_eq!(status, 200);
    let diary: Value = serde_json::from_str(&body).unwrap();
    let mine: Vec<&Value> = diary
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["transport"] == "tcp")
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "each node lists its own connections: {diary}"
    );
    assert_eq!(mine[0]["node"], "b");
    assert_eq!(mine[0]["nick"], "bob");
    let nodes: HashSet<&str> = diary
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        HashSet::from(["b"]),
        "curl's own request is b's too: {diary}"
    );
}

#[test]
fn a_client_moving_to_another_node_resumes_with_since() {
    let redis = Redis::start();
    let nodes = [node(&redis, "a"), node(&redis, "b"), node(&redis, "c")];
    for n in 1..=5 {
        post(&nodes[2], "dev", "curl", &format!("m{n}"));
    }
    let mut first = JsonLine::join(&nodes[0], "roamer", "dev");
    first.send(json!({"type": "history", "room": "dev", "ref": "h"}));
    let seen = first.until(|v| v["ref"] == "h")["messages"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(seen, 5);
    drop(first);
    for n in 6..=8 {
        post(&nodes[2], "dev", "curl", &format!("m{n}"));
    }
    let mut moved = JsonLine::join(&nodes[1], "roamer", "lobby");
    moved.send(json!({"type": "join", "room": "dev", "since": seen}));
    let replayed = moved.messages("dev", 3);
    let expected: Vec<(u64, String, String)> = (6..=8)
        .map(|n| (n, "curl".to_string(), format!("m{n}")))
        .collect();
    assert_eq!(replayed, expected);
}

#[test]
fn redis_restarting_with_its_data_loses_nothing_and_nodes_carry_on() {
    let dir = scratch_dir("redis-aof");
    let redis = Redis::persistent(&dir);
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut alice = JsonLine::join(&a, "alice", "ops");
    let mut bob = JsonLine::join(&b, "bob", "ops");
    for n in 1..=3 {
        assert_eq!(post(&a, "ops", "curl", &format!("before {n}")).0, 201);
    }
    alice.messages("ops", 3);
    bob.messages("ops", 3);
    let port = redis.port;
    let redis = redis.restart();
    assert_eq!(redis.port, port);
    // The nodes kept their clients; once they reconnect, messages flow again.
    let id = eventually(COMMAND_DEADLINE, || {
        let (status, body) = post(&b, "ops", "curl", "after");
        (status == 201).then(|| body["id"].as_u64().unwrap())
    });
    assert_eq!(id, 4, "ids go on");
    assert_eq!(
        alice.messages("ops", 1),
        [(4, "curl".into(), "after".into())]
    );
    assert_eq!(bob.messages("ops", 1), [(4, "curl".into(), "after".into())]);
    assert_eq!(history(&a, "ops").len(), 4);
    eventually(COMMAND_DEADLINE, || {
        (curl(&[&a.url("/healthz")]).0 == 200).then_some(())
    });
}

#[test]
fn while_redis_is_down_messages_are_refused_and_after_it_lost_its_data_ids_go_on() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut alice = JsonLine::join(&a, "alice", "ops");
    for n in 1..=5 {
        assert_eq!(post(&a, "ops", "curl", &format!("m{n}")).0, 201);
    }
    alice.messages("ops", 5);
    let port = redis.kill();
    let (status, body) = post(&a, "ops", "curl", "into the void");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    alice.send(json!({"type": "say", "room": "ops", "text": "anyone?", "ref": 9}));
    let refused = alice.until(|v| v["ref"] == 9);
    assert_eq!(
        refused["type"], "error",
        "never an ack for an unstored message: {refused}"
    );
    assert_eq!(refused["code"], "unavailable");
    eventually(COMMAND_DEADLINE, || {
        (curl(&[&b.url("/healthz")]).0 == 503).then_some(())
    });

    let _redis = Redis::start_on(port);
    let id = eventually(COMMAND_DEADLINE, || {
        let (status, body) = post(&b, "ops", "curl", "back");
        (status == 201).then(|| body["id"].as_u64().unwrap())
    });
    assert_eq!(id, 6, "Redis lost everything, yet no id is given twice");
    assert_eq!(
        alice.messages("ops", 1),
        [(6, "curl".into(), "back".into())]
    );
    let mut late = JsonLine::join(&b, "late", "lobby");
    late.send(json!({"type": "join", "room": "ops", "since": 2}));
    let lost = late.until(|v| v["type"] == "error");
    assert_eq!(lost["code"], "history_lost", "{lost}");
    assert_eq!(late.messages("ops", 1), [(6, "curl".into(), "back".into())]);
}

#[test]
fn a_node_killed_hard_harms_no_other_and_its_nicks_come_free() {
    let redis = Redis::start();
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let mut alice = LineClient::named(&a, "alice");
    let _bob = LineClient::named(&b, "bob");
    let mut carol = LineClient::named(&c, "carol");
    signal(b.pid(), libc::SIGKILL);
    alice.send("still here?");
    read_until(&mut carol, "[#lobby] alice: still here?");
    carol.send("yes");
    read_until(&mut alice, "[#lobby] carol: yes");
    // bob's node is gone: within its time to live, the nick is free again.
    let mut newcomer = LineClient::named(&c, "newcomer");
    eventually(Duration::from_secs(20), || {
        newcomer.send("/nick bob");
        let answer = newcomer.line();
        (answer == "* you are now known as bob").then_some(())
    });
    drop(b);
}

#[test]
fn a_node_started_later_has_the_whole_history() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    for n in 1..=12 {
        post(&a, "archive", "curl", &format!("m{n}"));
    }
    let late = node(&redis, "late");
    let stored = history(&late, "archive");
    assert_eq!(stored.len(), 12);
    assert_eq!(stored[11], (12, "curl".into(), "m12".into()));
    let (_, rooms) = curl(&[&late.url("/api/rooms")]);
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    assert!(
        rooms
            .as_array()
            .unwrap()
            .contains(&json!({"room": "archive", "members": 0, "last_id": 12})),
        "{rooms}"
    );
}
