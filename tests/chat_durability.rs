//! What is never lost (docs/PROTOCOL.md 5.4): history in SQLite (the
//! default) survives `kill -9` and a restart, ids go on where they stopped,
//! and a client that reconnects with `since` misses nothing and sees nothing
//! twice; retention; rooms without members; and each fault a user can meet
//! (a data directory that cannot be used, a corrupt or newer database, a
//! second server on the same directory, a full disk).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{
    COMMAND_DEADLINE, LineClient, Server, assert_one_line_error, curl, fresh_data_dir,
    run_switchboard, runtime, signal, tool,
};

/// A hub keeping its history in `dir`, without a rate limit.
fn hub_in(dir: &Path, extra: &[&str]) -> Server {
    let dir = dir.to_str().expect("a UTF-8 path");
    let mut args = vec!["serve", "--data", dir, "--rate", "0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Every message of `room`, oldest first, read a page at a time over HTTP.
pub(crate) fn history(server: &Server, room: &str) -> Vec<(u64, String)> {
    let mut messages = Vec::new();
    let mut since = 0;
    loop {
        let url = server.url(&format!(
            "/api/rooms/{room}/messages?since={since}&limit=1000"
        ));
        let (status, body) = curl(&[&url]);
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).expect("JSON");
        let page = page["messages"].as_array().expect("messages").clone();
        let Some(last) = page.last() else {
            return messages;
        };
        since = last["id"].as_u64().expect("id");
        for message in &page {
            let id = message["id"].as_u64().expect("id");
            let text = message["text"].as_str().expect("text").to_string();
            messages.push((id, text));
        }
    }
}

/// One HTTP/1.1 connection kept alive, for many posts.
struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpClient {
    fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(COMMAND_DEADLINE))?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// Posts `text` to `room` as `from`; the status and the body.
    fn post(&mut self, room: &str, from: &str, text: &str) -> std::io::Result<(u16, Value)> {
        let body = json!({"from": from, "text": text}).to_string();
        write!(
            self.writer,
            "POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: test\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let mut length = 0;
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header)?;
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        let body = serde_json::from_slice(&body).map_err(|_| std::io::ErrorKind::InvalidData)?;
        Ok((status, body))
    }
}

/// How many acknowledged messages the senders have counted, and a way to
/// wait for a number of them.
#[derive(Default)]
struct Acks {
    count: Mutex<usize>,
    grew: Condvar,
}

impl Acks {
    fn add(&self) {
        *self.count.lock().unwrap() += 1;
        self.grew.notify_all();
    }

    /// Waits (bounded) until `target` messages were acknowledged.
    fn wait_for(&self, target: usize) {
        let count = self.count.lock().unwrap();
        let (count, timeout) = self
            .grew
            .wait_timeout_while(count, COMMAND_DEADLINE, |count| *count < target)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {count} acknowledged messages, waited for {target}"
        );
    }
}

/// What one sender learned: every text it sent (acknowledged or not), and
/// the acknowledged ones with their ids (`None` where the protocol shows no
/// id: a line client's ack is its own message coming back).
#[derive(Default)]
struct Sent {
    texts: Vec<String>,
    acked: Vec<(String, Option<u64>)>,
}

/// Sends numbered messages with `send` until it fails; what it sent.
fn keep_sending(
    name: &str,
    acks: &Acks,
    mut send: impl FnMut(&str) -> Result<Option<u64>, String>,
) -> Sent {
    let mut sent = Sent::default();
    for n in 0.. {
        let text = format!("{name}-{n}");
        sent.texts.push(text.clone());
        match send(&text) {
            Ok(id) => {
                sent.acked.push((text, id));
                acks.add();
            }
            Err(_) => return sent,
        }
    }
    sent
}

/// A plain line client: its ack is its own `[#crash] name: text` line.
fn line_sender(port: u16, acks: &Acks) -> Sent {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(COMMAND_DEADLINE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer.write_all(b"/nick liner\n/join crash\n").unwrap();
    keep_sending("liner", acks, |text| {
        writeln!(writer, "{text}").map_err(|e| e.to_string())?;
        let own = format!("[#crash] liner: {text}");
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return Err("closed".into()),
                Ok(_) if line.trim_end() == own => return Ok(None),
                Ok(_) => {}
            }
        }
    })
}

/// A line client in `/json` mode: acks carry ids.
fn json_line_sender(port: u16, acks: &Acks) -> Sent {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(COMMAND_DEADLINE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer
        .write_all(b"/nick jsoner\n/json\n{\"type\":\"join\",\"room\":\"crash\"}\n")
        .unwrap();
    let mut reference = 0;
    keep_sending("jsoner", acks, |text| {
        reference += 1;
        let say = json!({"type": "say", "room": "crash", "text": text, "ref": reference});
        writeln!(writer, "{say}").map_err(|e| e.to_string())?;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return Err("closed".into()),
                Ok(_) => {}
            }
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if value["ref"] == reference {
                return match value["type"].as_str() {
                    Some("ack") => Ok(value["id"].as_u64()),
                    _ => Err(value.to_string()),
                };
            }
        }
    })
}

/// A WebSocket client speaking JSON.
fn ws_sender(port: u16, acks: &Acks) -> Sent {
    runtime().block_on(async {
        let url = format!("ws://127.0.0.1:{port}/ws?nick=webber&room=crash");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        let mut reference = 0;
        let mut sent = Sent::default();
        for n in 0.. {
            reference += 1;
            let text = format!("webber-{n}");
            sent.texts.push(text.clone());
            let say = json!({"type": "say", "room": "crash", "text": text, "ref": reference});
            if ws.send(Message::text(say.to_string())).await.is_err() {
                return sent;
            }
            let id = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(reply))) => {
                        let value: Value = serde_json::from_str(&reply).unwrap_or_default();
                        if value["ref"] == reference {
                            break value["id"].as_u64();
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return sent,
                }
            };
            let Some(id) = id else {
                return sent;
            };
            sent.acked.push((text, Some(id)));
            acks.add();
        }
        sent
    })
}

/// An HTTP client posting over one kept-alive connection.
fn http_sender(port: u16, acks: &Acks) -> Sent {
    let mut client = HttpClient::connect(port).expect("connects");
    keep_sending("poster", acks, |text| {
        match client.post("crash", "poster", text) {
            Ok((201, body)) => Ok(body["id"].as_u64()),
            Ok((status, body)) => Err(format!("{status} {body}")),
            Err(err) => Err(err.to_string()),
        }
    })
}

/// A number between `low` and `high` that differs from run to run.
fn somewhere_between(low: usize, high: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    low + nanos % (high - low)
}

#[test]
fn every_acknowledged_message_survives_kill_9_and_ids_go_on() {
    let dir = fresh_data_dir();
    let server = hub_in(&dir, &[]);
    let port = server.port;
    let acks = Arc::new(Acks::default());
    let senders: [fn(u16, &Acks) -> Sent; 4] =
        [line_sender, json_line_sender, ws_sender, http_sender];
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            let acks = Arc::clone(&acks);
            thread::spawn(move || sender(port, &acks))
        })
        .collect();
    let kill_after = somewhere_between(1000, 4000);
    acks.wait_for(kill_after);
    signal(server.pid(), libc::SIGKILL);
    let sent: Vec<Sent> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    drop(server);

    let server = hub_in(&dir, &[]);
    let stored = history(&server, "crash");
    let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids grow strictly"
    );
    let by_text: HashMap<&str, u64> = stored.iter().map(|(id, t)| (t.as_str(), *id)).collect();
    assert_eq!(by_text.len(), stored.len(), "no text stored twice");
    let all_sent: HashSet<&str> = sent
        .iter()
        .flat_map(|s| s.texts.iter().map(String::as_str))
        .collect();
    for (_, text) in &stored {
        assert!(
            all_sent.contains(text.as_str()),
            "{text:?} was stored but never sent whole"
        );
    }
    let mut acked = 0;
    for (text, id) in sent.iter().flat_map(|s| &s.acked) {
        let stored_id = by_text.get(text.as_str()).copied();
        assert!(stored_id.is_some(), "acknowledged {text:?} is lost");
        if let Some(id) = id {
            assert_eq!(stored_id, Some(*id), "{text:?} kept its id");
        }
        acked += 1;
    }
    assert!(acked >= kill_after, "{acked} acknowledged");
    let last = *ids.last().expect("history");
    let mut client = HttpClient::connect(server.port).unwrap();
    let (status, body) = client.post("crash", "after", "after the crash").unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], last + 1, "ids go on where they stopped");
}

#[test]
fn clients_reconnecting_with_since_across_a_restart_miss_nothing_and_see_nothing_twice() {
    let dir = fresh_data_dir();
    let server = hub_in(&dir, &[]);
    let mut poster = HttpClient::connect(server.port).unwrap();
    for n in 1..=5 {
        poster.post("dev", "curl", &format!("before-{n}")).unwrap();
    }
    let seen = 3;
    drop(poster);
    server.terminate();
    let server = hub_in(&dir, &[]);
    let mut poster = HttpClient::connect(server.port).unwrap();
    for n in 6..=8 {
        let (status, body) = poster.post("dev", "curl", &format!("after-{n}")).unwrap();
        assert_eq!((status, body["id"].as_u64()), (201, Some(n)));
    }
    let expected: Vec<(u64, String)> = (4..=8)
        .map(|n| {
            let when = if n <= 5 { "before" } else { "after" };
            (n, format!("{when}-{n}"))
        })
        .collect();

    let mut line = LineClient::named(&server, "liner");
    line.send("/json");
    line.line();
    line.send(&json!({"type": "join", "room": "dev", "since": seen}).to_string());
    let mut replayed = Vec::new();
    while replayed.len() < expected.len() {
        let value: Value = serde_json::from_str(&line.line()).unwrap();
        if value["type"] == "message" {
            replayed.push(id_and_text(&value));
        }
    }
    assert_eq!(replayed, expected, "a line client in /json mode");

    let port = server.port;
    let from_ws = runtime().block_on(async move {
        let url = format!("ws://127.0.0.1:{port}/ws?nick=webber&room=dev&since={seen}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        let mut messages = Vec::new();
        while messages.len() < 5 {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("the WebSocket closed");
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "message" {
                messages.push(id_and_text(&value));
            }
        }
        // Live from here: one more message, once.
        ws.send(Message::text(
            json!({"type": "say", "room": "dev", "text": "live", "ref": 1}).to_string(),
        ))
        .await
        .unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("the WebSocket closed");
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "message" {
                messages.push(id_and_text(&value));
                return messages;
            }
        }
    });
    let mut with_live = expected;
    with_live.push((9, "live".into()));
    assert_eq!(from_ws, with_live, "a WebSocket client");
}

/// The id and text of a JSON `message`.
fn id_and_text(message: &Value) -> (u64, String) {
    let id = message["id"].as_u64().expect("id");
    (id, message["text"].as_str().expect("text").to_string())
}

#[test]
fn rooms_with_history_are_listed_without_members_also_after_a_restart() {
    let dir = fresh_data_dir();
    let server = hub_in(&dir, &[]);
    let mut poster = HttpClient::connect(server.port).unwrap();
    poster.post("archive", "curl", "kept").unwrap();
    poster.post("archive", "curl", "kept too").unwrap();
    let listed = |server: &Server| {
        let (status, body) = curl(&[&server.url("/api/rooms")]);
        assert_eq!(status, 200);
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let archive = json!({"room": "archive", "members": 0, "last_id": 2});
    assert!(
        listed(&server).as_array().unwrap().contains(&archive),
        "{}",
        listed(&server)
    );
    drop(poster);
    server.terminate();
    let server = hub_in(&dir, &[]);
    assert_eq!(listed(&server), json!([archive]), "nobody is connected");
    let mut nc = LineClient::greeted(&server);
    nc.first_line("/rooms");
    assert_eq!(nc.line(), "* rooms: #archive (0), #lobby (1)");
}

#[test]
fn retention_keeps_the_newest_messages_and_ids_still_go_on() {
    let dir = fresh_data_dir();
    let server = hub_in(&dir, &["--keep-messages", "3"]);
    let mut poster = HttpClient::connect(server.port).unwrap();
    for n in 1..=10 {
        poster.post("short", "curl", &format!("m{n}")).unwrap();
    }
    let kept = wait_until(|| {
        let kept = history(&server, "short");
        (kept.len() == 3).then_some(kept)
    });
    assert_eq!(
        kept,
        [(8, "m8".into()), (9, "m9".into()), (10, "m10".into())]
    );
    drop(poster);
    server.terminate();
    let server = hub_in(&dir, &["--keep-messages", "3"]);
    let (status, body) = HttpClient::connect(server.port)
        .unwrap()
        .post("short", "curl", "m11")
        .unwrap();
    assert_eq!((status, body["id"].as_u64()), (201, Some(11)));
}

#[test]
fn retention_by_age_empties_a_quiet_room() {
    let dir = fresh_data_dir();
    // A thousandth of a day: about 86 seconds would be too long for a test,
    // so the age is a few seconds' worth of a day.
    let server = hub_in(&dir, &["--keep-days", "0.00003"]);
    let mut poster = HttpClient::connect(server.port).unwrap();
    poster.post("fleeting", "curl", "soon gone").unwrap();
    assert_eq!(history(&server, "fleeting").len(), 1);
    wait_until(|| history(&server, "fleeting").is_empty().then_some(()));
    let (_, body) = poster.post("fleeting", "curl", "next").unwrap();
    assert_eq!(body["id"], 2, "the id is not used again");
}

/// Polls `check` (its own request takes time, no sleeping here beyond a
/// short pause between polls) until it gives a value; fails after the
/// command deadline.
fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_data_directory_that_cannot_be_used_is_named_in_the_error() {
    let file = fresh_data_dir();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "not a directory").unwrap();
    let inside_a_file = file.join("data");
    for (dir, expected) in [
        (
            inside_a_file.to_str().unwrap(),
            inside_a_file.to_str().unwrap(),
        ),
        ("/proc/switchboard-data", "/proc/switchboard-data"),
    ] {
        let output = run_switchboard(&["serve", "--port", "0", "--data", dir], b"");
        assert_one_line_error(&output, expected);
    }
}

#[test]
fn a_corrupt_or_foreign_database_is_refused_at_start_by_name() {
    for content in [
        b"this is not a database, just text that is long enough to look like a file".to_vec(),
        {
            let mut fake = b"SQLite format 3\0".to_vec();
            fake.extend(std::iter::repeat_n(0xA5, 8192));
            fake
        },
    ] {
        let dir = fresh_data_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("switchboard.db");
        std::fs::write(&db, content).unwrap();
        let output = run_switchboard(
            &["serve", "--port", "0", "--data", dir.to_str().unwrap()],
            b"",
        );
        assert_one_line_error(&output, db.to_str().unwrap());
    }
}

#[test]
fn a_database_from_a_newer_switchboard_is_refused() {
    let dir = fresh_data_dir();
    hub_in(&dir, &[]).terminate();
    let db = dir.join("switchboard.db");
    let mut python = tool("python3");
    python.args([
        "-c",
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
         c.execute('PRAGMA user_version = 999'); c.commit()",
        db.to_str().unwrap(),
    ]);
    assert!(crate::util::run(python, b"").status.success());
    let output = run_switchboard(
        &["serve", "--port", "0", "--data", dir.to_str().unwrap()],
        b"",
    );
    assert_one_line_error(&output, db.to_str().unwrap());
    assert!(crate::util::stderr(&output).contains("newer"), "{output:?}");
}

#[test]
fn a_second_server_on_the_same_directory_is_refused_and_the_first_goes_on() {
    let dir = fresh_data_dir();
    let first = hub_in(&dir, &[]);
    let output = run_switchboard(
        &["serve", "--port", "0", "--data", dir.to_str().unwrap()],
        b"",
    );
    assert_one_line_error(&output, dir.to_str().unwrap());
    let (status, _) = HttpClient::connect(first.port)
        .unwrap()
        .post("still", "curl", "here")
        .unwrap();
    assert_eq!(status, 201);
}

#[test]
fn a_full_disk_refuses_messages_with_an_error_and_recovers_without_a_restart() {
    let dir = fresh_data_dir();
    let mut command = tool("prlimit");
    command
        .arg("--fsize=400000:unlimited")
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--port", "0", "--rate", "0", "--data"])
        .arg(&dir);
    let server = Server::spawn(command);
    let mut poster = HttpClient::connect(server.port).unwrap();
    let big = "x".repeat(8000);
    let mut acked = BTreeMap::new();
    let refusal = loop {
        let n = acked.len();
        let (status, body) = poster.post("disk", "curl", &format!("{n}:{big}")).unwrap();
        if status != 201 {
            break (status, body);
        }
        acked.insert(body["id"].as_u64().unwrap(), n);
        assert!(acked.len() < 1000, "the file size limit never hit");
    };
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "unavailable");
    server.wait_for_log("message not stored");
    assert_eq!(curl(&[&server.url("/healthz")]).0, 503);
    // A line client is told too (a checkpoint may free a little room in
    // between, so it may get a message or two in first).
    let mut nc = LineClient::named(&server, "witness");
    nc.send("/join disk");
    nc.expect("* witness joined #disk");
    let line = "y".repeat(7000);
    let mut line_acked = 0;
    loop {
        nc.send(&line);
        let told = nc.line();
        if told.starts_with("! message not stored") {
            break;
        }
        assert_eq!(told, format!("[#disk] witness: {line}"));
        line_acked += 1;
        assert!(line_acked < 1000, "the line client is never refused");
    }

    let raised = Command::new("prlimit")
        .arg(format!("--pid={}", server.pid()))
        .arg("--fsize=unlimited")
        .status()
        .unwrap();
    assert!(raised.success());
    let (status, body) = poster.post("disk", "curl", "after the cleanup").unwrap();
    assert_eq!(status, 201, "{body}");
    let acked_before = acked.len() + line_acked;
    assert_eq!(
        body["id"].as_u64(),
        Some(acked_before as u64 + 1),
        "refused messages used no id"
    );
    assert_eq!(curl(&[&server.url("/healthz")]), (200, "ok\n".into()));
    let stored = history(&server, "disk");
    assert_eq!(
        stored.len(),
        acked_before + 1,
        "every acknowledged message is there"
    );
}
