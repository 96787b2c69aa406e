//! The file-descriptor diary (docs/PROTOCOL.md 5.3): `/api/connections` lists
//! every connection, HTTP ones included, and upgraded to a WebSocket it tells
//! of each connection as it opens and closes, which is what the `/diary`
//! page draws (its browser test is in tests/node/page-test.mjs).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::util::{LineClient, Server, curl, runtime};

/// How long any one diary event may take to arrive.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// A live diary: the WebSocket at `/api/connections`.
type Diary = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next diary message that `wanted` accepts, skipping the others.
async fn next_where(diary: &mut Diary, wanted: impl Fn(&Value) -> bool) -> Value {
    let waiting = async {
        loop {
            let message = diary.next().await.expect("the diary is open").unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if wanted(&value) {
                return value;
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, waiting)
        .await
        .expect("the diary event arrived in time")
}

/// A change of `kind` (`opened`, `changed`, `closed`) to a connection on `transport`.
fn change(value: &Value, kind: &str, transport: &str) -> bool {
    value["type"] == kind && value["connection"]["transport"] == transport
}

#[test]
fn the_diary_lists_http_connections_too() {
    let server = Server::start(&["serve"]);
    let alice = LineClient::named(&server, "alice");
    let (status, diary) = curl(&[&server.url("/api/connections")]);
    assert_eq!(status, 200, "{diary}");
    let diary: Value = serde_json::from_str(&diary).unwrap();
    let entries = diary.as_array().unwrap();
    let chat = entries.iter().find(|e| e["nick"] == "alice").unwrap();
    assert_eq!(chat["transport"], "tcp");
    assert_eq!(
        chat["peer"],
        alice.socket().local_addr().unwrap().to_string()
    );
    // curl's own connection, serving this very request.
    let http = entries
        .iter()
        .find(|e| e["transport"] == "http")
        .unwrap_or_else(|| panic!("no HTTP connection in {diary}"));
    assert_eq!(http["nick"], Value::Null);
    assert_eq!(http["request"], "GET /api/connections");
    assert!(http["bytes_in"].as_u64() > Some(0), "{http}");
    assert_ne!(http["id"], chat["id"]);
}

#[test]
fn the_live_diary_tells_of_each_connection_as_it_opens_and_closes() {
    let server = Server::start(&["serve", "--admin-token", "root"]);
    let base = format!("ws://127.0.0.1:{}/api/connections", server.port);
    let runtime = runtime();
    let mut diary = runtime.block_on(async {
        match tokio_tungstenite::connect_async(base.clone()).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected 401 without the admin token, got {other:?}"),
        }
        let (mut diary, _) = tokio_tungstenite::connect_async(format!("{base}?token=root"))
            .await
            .expect("the admin token lets the diary in");
        // The whole diary first: it lists itself, the token not shown.
        let whole = next_where(&mut diary, |v| v["type"] == "connections").await;
        let own = &whole["connections"][0];
        assert_eq!(own["transport"], "ws", "{whole}");
        assert_eq!(own["request"], "GET /api/connections", "{whole}");
        diary
    });

    // An nc user: seen as it opens, named in a whole diary, seen as it leaves.
    let mut alice = LineClient::greeted(&server);
    let opened = runtime.block_on(next_where(&mut diary, |v| change(v, "opened", "tcp")));
    let alice_entry = &opened["connection"];
    assert_eq!(alice_entry["nick"], alice.nick.as_str());
    assert_eq!(
        alice_entry["rooms"],
        Value::Array(vec![]),
        "silent: in no room"
    );
    let alice_id = alice_entry["id"].clone();
    alice.first_line("/nick alice");
    alice.expect("* you are now known as alice");
    runtime.block_on(next_where(&mut diary, |v| {
        v["type"] == "connections"
            && v["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == alice_id && c["nick"] == "alice" && c["rooms"][0] == "lobby")
    }));

    // A short HTTP request: it opens, serves its request, closes.
    let (status, _) = curl(&[
        "-H",
        "Authorization: Bearer root",
        &server.url("/api/rooms"),
    ]);
    assert_eq!(status, 200);
    runtime.block_on(async {
        let served = next_where(&mut diary, |v| {
            change(v, "changed", "http") && v["connection"]["request"] == "GET /api/rooms"
        })
        .await;
        let id = served["connection"]["id"].clone();
        let closed = next_where(&mut diary, |v| {
            change(v, "closed", "http") && v["connection"]["id"] == id
        })
        .await;
        let entry = &closed["connection"];
        assert!(entry["bytes_in"].as_u64() > Some(0), "{entry}");
        assert!(entry["bytes_out"].as_u64() > Some(0), "{entry}");
    });

    // A browser's WebSocket starts as HTTP on the same file descriptor: the
    // HTTP connection closes as the chat connection opens (in either order).
    let url = format!("ws://127.0.0.1:{}/ws?nick=web", server.port);
    let web = runtime.block_on(async {
        let (web, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let upgrading = next_where(&mut diary, |v| {
            change(v, "changed", "http") && v["connection"]["request"] == "GET /ws"
        })
        .await;
        let fd = upgrading["connection"]["fd"].clone();
        let (mut http_closed, mut ws_opened) = (false, false);
        while !(http_closed && ws_opened) {
            let next = next_where(&mut diary, |v| v["connection"]["fd"] == fd).await;
            http_closed |= change(&next, "closed", "http");
            ws_opened |= change(&next, "opened", "ws");
        }
        web
    });
    alice.expect("* web joined #lobby");
    drop(web);
    alice.expect("* web left #lobby");

    alice.send("/quit");
    alice.expect("* bye");
    let closed = runtime.block_on(next_where(&mut diary, |v| change(v, "closed", "tcp")));
    assert_eq!(closed["connection"]["id"], alice_id);
    assert_eq!(closed["connection"]["nick"], "alice");
}
