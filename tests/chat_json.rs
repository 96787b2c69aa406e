//! `switchboard serve`: the JSON protocol through `/json`, ordering and replay
//! guarantees (docs/PROTOCOL.md 5.2, 5.4), and many clients at once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;

use serde_json::{Value, json};

use crate::util::{LineClient, Server, runtime};

/// A line client switched to the JSON protocol.
struct JsonClient {
    client: LineClient,
}

impl JsonClient {
    /// Greets, takes `nick`, switches to JSON and checks the JSON welcome.
    fn named(server: &Server, nick: &str) -> Self {
        let mut client = LineClient::named(server, nick);
        client.send("/json");
        let mut json = Self { client };
        let welcome = json.next();
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["nick"], nick);
        assert!(welcome["fd"].as_u64().is_some(), "{welcome}");
        json
    }

    fn send(&mut self, value: Value) {
        self.client.send(&value.to_string());
    }

    fn next(&mut self) -> Value {
        let line = self.client.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// The next object that is not someone else's presence notice (replies to
    /// our own requests carry a `ref` or our nick).
    fn next_not_presence(&mut self) -> Value {
        loop {
            let value = self.next();
            let presence =
                value["type"] == "joined" || value["type"] == "parted" || value["type"] == "nick";
            if !presence || value.get("ref").is_some() {
                return value;
            }
        }
    }
}

#[test]
fn every_json_request_and_reply() {
    let server = Server::start(&["serve"]);
    let mut alice = JsonClient::named(&server, "alice");
    let mut bob = JsonClient::named(&server, "bob");
    assert_eq!(
        alice.next(),
        json!({"type":"joined","room":"lobby","nick":"guest-2"})
    );
    assert_eq!(
        alice.next(),
        json!({"type":"nick","from":"guest-2","nick":"bob"})
    );

    alice.send(json!({"type":"join","room":"#Dev","ref":"j"}));
    assert_eq!(
        alice.next(),
        json!({"type":"joined","room":"dev","nick":"alice","ref":"j"})
    );
    bob.send(json!({"type":"join","room":"dev"}));
    assert_eq!(
        bob.next(),
        json!({"type":"joined","room":"dev","nick":"bob"})
    );
    assert_eq!(
        alice.next(),
        json!({"type":"joined","room":"dev","nick":"bob"})
    );

    alice.send(json!({"type":"say","room":"dev","text":"ship it","ref":{"n":1}}));
    assert_eq!(alice.next(), json!({"type":"ack","ref":{"n":1},"id":1}));
    for client in [&mut alice, &mut bob] {
        let message = client.next();
        assert_eq!(message["type"], "message");
        assert_eq!(
            (message["room"].clone(), message["id"].clone()),
            (json!("dev"), json!(1))
        );
        assert_eq!(
            (message["from"].clone(), message["text"].clone()),
            (json!("alice"), json!("ship it"))
        );
        let ts = message["ts"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }

    bob.send(json!({"type":"dm","to":"alice","text":"psst","ref":2}));
    let sent = bob.next();
    assert_eq!(
        (
            sent["type"].clone(),
            sent["from"].clone(),
            sent["to"].clone()
        ),
        (json!("dm"), json!("bob"), json!("alice"))
    );
    assert_eq!(bob.next(), json!({"type":"ack","ref":2,"id":sent["id"]}));
    assert_eq!(alice.next(), sent);

    bob.send(json!({"type":"who","room":"dev","ref":3}));
    assert_eq!(
        bob.next(),
        json!({"type":"who","room":"dev","nicks":["alice","bob"],"ref":3})
    );
    bob.send(json!({"type":"history","room":"dev","limit":10}));
    let history = bob.next();
    assert_eq!(history["type"], "history");
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
    assert_eq!(history["messages"][0]["text"], "ship it");

    bob.send(json!({"type":"nick","nick":"robert","ref":4}));
    assert_eq!(bob.next(), json!({"type":"ack","ref":4,"nick":"robert"}));
    assert_eq!(
        alice.next(),
        json!({"type":"nick","from":"bob","nick":"robert"})
    );
    bob.send(json!({"type":"part","room":"dev","ref":5}));
    assert_eq!(
        bob.next(),
        json!({"type":"parted","room":"dev","nick":"robert","ref":5})
    );
    assert_eq!(
        alice.next(),
        json!({"type":"parted","room":"dev","nick":"robert"})
    );
}

#[test]
fn malformed_json_gets_an_error_and_nothing_else() {
    let server = Server::start(&["serve"]);
    let mut client = JsonClient::named(&server, "fuzzy");
    for (input, code) in [
        ("{nope", "bad_json"),
        ("[1,2,3]", "bad_json"),
        ("42", "bad_json"),
        (r#"{"type":"dance","ref":1}"#, "unknown_type"),
        (
            r#"{"type":"say","room":"lobby","ref":"r"}"#,
            "missing_field",
        ),
        (r#"{"text":"no type"}"#, "missing_field"),
        (r#"{"type":"join","room":7}"#, "bad_field"),
        (r#"{"type":"join","room":"bad room"}"#, "invalid_room"),
        (r#"{"type":"nick","nick":""}"#, "invalid_nick"),
        (
            r#"{"type":"say","room":"elsewhere","text":"x"}"#,
            "not_in_room",
        ),
        (r#"{"type":"say","room":"lobby","text":""}"#, "empty_text"),
        (
            r#"{"type":"say","room":"lobby","text":" \n "}"#,
            "empty_text",
        ),
        (r#"{"type":"dm","to":"ghost","text":"x"}"#, "no_such_nick"),
    ] {
        client.client.send(input);
        let reply = client.next();
        assert_eq!(
            (reply["type"].clone(), reply["code"].clone()),
            (json!("error"), json!(code)),
            "{input}"
        );
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
        let sent: Option<Value> = serde_json::from_str(input).ok();
        if let Some(reference) = sent.as_ref().and_then(|v| v.get("ref")) {
            assert_eq!(&reply["ref"], reference, "{input}");
        }
    }
    client.send(json!({"type":"say","room":"lobby","text":"still fine","ref":"ok"}));
    assert_eq!(client.next()["ref"], "ok");
    assert_eq!(client.next()["text"], "still fine");
}

#[test]
fn join_with_since_replays_then_goes_live_with_no_gap_and_no_duplicate() {
    let server = Server::start(&[
        "serve", "--rate", "100000", "--burst", "100000", "--queue", "100000",
    ]);
    let mut alice = JsonClient::named(&server, "alice");
    alice.send(json!({"type":"join","room":"replay"}));
    alice.next();
    let total = 600u64;
    // Alice's own acks and messages are drained so she never blocks.
    let drain = TcpStream::try_clone(alice.client.socket()).unwrap();
    thread::spawn(move || std::io::copy(&mut &drain, &mut std::io::sink()));
    // Alice talks without pause while Bob joins part-way with `since`.
    let talker = thread::spawn(move || {
        for n in 1..=total {
            alice.send(json!({"type":"say","room":"replay","text":format!("m{n}")}));
        }
        alice
    });
    let mut bob = JsonClient::named(&server, "bob");
    bob.send(json!({"type":"join","room":"replay","since":0,"ref":"late"}));
    assert_eq!(
        bob.next_not_presence(),
        json!({"type":"joined","room":"replay","nick":"bob","ref":"late"})
    );
    let mut ids = Vec::new();
    while ids.len() < total as usize {
        let message = bob.next_not_presence();
        assert_eq!(message["type"], "message", "{message}");
        assert_eq!(message["text"], format!("m{}", message["id"]));
        ids.push(message["id"].as_u64().unwrap());
    }
    assert_eq!(ids, (1..=total).collect::<Vec<_>>());
    drop(talker.join().unwrap());

    // Reconnecting with the last id seen gives exactly what was missed.
    let mut carol = JsonClient::named(&server, "carol");
    carol.send(json!({"type":"join","room":"replay","since":total - 3,"ref":"back"}));
    assert_eq!(carol.next_not_presence()["type"], "joined");
    let replayed: Vec<Value> = (0..3)
        .map(|_| carol.next_not_presence()["id"].clone())
        .collect();
    assert_eq!(replayed, [json!(total - 2), json!(total - 1), json!(total)]);
}

#[test]
fn five_senders_times_a_thousand_arrive_once_in_id_order_for_every_member() {
    // A deep queue: this test is about order, not about dropping slow readers
    // (the test machine may starve the reading threads for a while).
    let server = Server::start(&[
        "serve", "--rate", "100000", "--burst", "100000", "--queue", "100000",
    ]);
    let senders = 5;
    let per_sender = 1000;
    let mut listeners: Vec<JsonClient> = (0..2)
        .map(|i| JsonClient::named(&server, &format!("l{i}")))
        .collect();
    let mut connections = Vec::new();
    for s in 0..senders {
        let mut client = LineClient::named(&server, &format!("s{s}"));
        client.send("/json");
        client.line();
        connections.push(client);
    }
    let readers: Vec<_> = listeners
        .drain(..)
        .map(|mut listener| {
            thread::spawn(move || {
                let mut seen = Vec::new();
                while seen.len() < senders * per_sender {
                    let message = listener.next_not_presence();
                    if message["type"] == "message" {
                        seen.push((
                            message["id"].as_u64().unwrap(),
                            message["text"].as_str().unwrap().to_string(),
                        ));
                    }
                }
                seen
            })
        })
        .collect();
    let writers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(s, client)| {
            let mut stream = TcpStream::try_clone(client.socket()).unwrap();
            thread::spawn(move || {
                let reader = thread::spawn(move || {
                    // Senders are members too: they must read to keep up.
                    let mut lines =
                        BufReader::new(TcpStream::try_clone(client.socket()).unwrap()).lines();
                    let mut messages = 0;
                    while messages < senders * per_sender {
                        let line = lines.next().unwrap().unwrap();
                        messages += usize::from(line.contains("\"type\":\"message\""));
                    }
                    messages
                });
                for n in 0..per_sender {
                    let say = json!({"type":"say","room":"lobby","text":format!("s{s}-{n}")});
                    stream.write_all(format!("{say}\n").as_bytes()).unwrap();
                }
                reader.join().unwrap()
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.join().unwrap(), senders * per_sender);
    }
    let views: Vec<Vec<(u64, String)>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    for view in &views {
        let ids: Vec<u64> = view.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            (1..=(senders * per_sender) as u64).collect::<Vec<_>>(),
            "ids in order, each once"
        );
        let texts: HashSet<&String> = view.iter().map(|(_, text)| text).collect();
        assert_eq!(texts.len(), senders * per_sender, "every message once");
        for s in 0..senders {
            let own: Vec<&String> = view
                .iter()
                .map(|(_, t)| t)
                .filter(|t| t.starts_with(&format!("s{s}-")))
                .collect();
            let expected: Vec<String> = (0..per_sender).map(|n| format!("s{s}-{n}")).collect();
            assert!(
                own.iter().zip(&expected).all(|(a, b)| *a == b),
                "sender {s} in its order"
            );
        }
    }
    assert_eq!(views[0], views[1], "every member sees the same order");
}

/// Opens `count` line clients to the server on `port`, each named `cN` with
/// its first line (which makes it a member of `#lobby`).
async fn crowd(port: u16, count: usize) -> Vec<TokioLines> {
    use futures_util::{StreamExt, stream};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    stream::iter(0..count)
        .map(|n| async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            stream
                .write_all(format!("/nick c{n}\n").as_bytes())
                .await
                .unwrap();
            let mut lines = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            // The welcome, our own join, others' presence while the room
            // is small, then the nick.
            let named = format!("* you are now known as c{n}\n");
            while line != named {
                line.clear();
                assert!(lines.read_line(&mut line).await.unwrap() > 0, "closed");
            }
            lines
        })
        .buffer_unordered(500)
        .collect()
        .await
}

/// A line client read through tokio.
type TokioLines = tokio::io::BufReader<tokio::net::TcpStream>;

/// The first room message `lines` reads (`None` if the server closes first).
async fn next_room_message(lines: &mut TokioLines) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap() == 0 {
            return None;
        }
        if line.starts_with("[#lobby]") {
            return Some(line);
        }
    }
}

#[test]
fn five_thousand_line_clients_in_one_room_all_get_a_message() {
    let server = Server::start(&["serve"]);
    let port = server.port;
    let runtime = runtime();
    let delivered = runtime.block_on(async move {
        use tokio::io::AsyncWriteExt;
        let mut clients = crowd(port, 5000).await;
        clients[0]
            .get_mut()
            .write_all(b"hello five thousand\n")
            .await
            .unwrap();
        let waits = clients.into_iter().map(|mut lines| async move {
            next_room_message(&mut lines)
                .await
                .is_some_and(|line| line.ends_with(": hello five thousand\n"))
        });
        let timed = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            futures_util::future::join_all(waits),
        );
        timed
            .await
            .expect("delivered within a minute")
            .into_iter()
            .filter(|got| *got)
            .count()
    });
    assert_eq!(delivered, 5000);
}

#[test]
fn a_message_said_just_before_shutdown_reaches_the_whole_room() {
    let server = Server::start(&["serve"]);
    let port = server.port;
    let runtime = runtime();
    let mut clients = runtime.block_on(async move {
        use tokio::io::AsyncWriteExt;
        let mut clients = crowd(port, 3000).await;
        let speaker = &mut clients[0];
        speaker.get_mut().write_all(b"last words\n").await.unwrap();
        let echo = next_room_message(speaker).await.expect("own message");
        assert!(echo.ends_with(": last words\n"), "{echo:?}");
        clients
    });
    // Stopped the moment the speaker has its own copy: the others' copies
    // may still be queued, and must go out before the goodbye.
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let heard = runtime.block_on(async move {
        use tokio::io::AsyncReadExt;
        let reads = clients.iter_mut().skip(1).map(|lines| async move {
            let mut rest = String::new();
            lines.read_to_string(&mut rest).await.unwrap();
            let got = rest.contains(": last words\n") && rest.ends_with("* server shutting down\n");
            (got, rest)
        });
        futures_util::future::join_all(reads).await
    });
    // On failure, say what a client that missed out did read: the message
    // without the goodbye (cut off at the shutdown grace), or neither.
    let missed: Vec<&String> = heard
        .iter()
        .filter(|(got, _)| !got)
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(
        heard.iter().filter(|(got, _)| *got).count(),
        2999,
        "{} clients missed out; the first read {:?}",
        missed.len(),
        missed.first()
    );
}
