//! Attacks run for real against `switchboard serve` on loopback, each bounded
//! in count and time: slow and silent connections by the thousand, 50 MB of
//! random bytes on every transport, a flooder beside a member who keeps
//! chatting, a member that never reads, malformed HTTP, and SIGTERM with a
//! thousand clients and messages in flight. Bad WebSocket upgrades and frames
//! are in `chat_web.rs` (`websocket_abuse_is_answered_per_the_rfc_and_harms_nobody`).
//!
//! The attacks take turns ([`one_at_a_time`]): each measures the server's
//! memory or a member's latency, which another attack beside it would disturb.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::chat_durability::history;
use crate::chat_web::{frame, raw_websocket, read_frame};
use crate::util::{LineClient, Server, fresh_data_dir, runtime};

/// How many connections the slow and silent attacks open.
const CROWD: usize = 1000;

/// How long a newcomer may wait to be served while an attack goes on.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// How many random bytes each flood sends.
const FLOOD: usize = 50 * 1024 * 1024;

/// How much an attack may grow the server's memory, in KiB. A server that
/// kept what a flood sent would grow by the whole 50 MB, and one that
/// buffered for a member that never reads by its 10 MB; one that only passes
/// bytes through keeps a few buffers (a read scratch per thread, a 64 KiB
/// message or body, 8 KiB lines, 1,024 queued events) plus what the
/// allocator and SQLite's page cache hold on to. Measured: 0.3 to 5 MiB.
const GROWTH_KIB: u64 = 16 * 1024;

/// The server's HTTP head timeout (docs/PROTOCOL.md 5.5).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server gives a request's body once its head is in
/// (docs/PROTOCOL.md 5.5).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after its timeout a connection may still take to be closed on a
/// loaded two-core machine.
const CLOSE_SLACK: Duration = Duration::from_secs(5);

/// What a line client reads last when the server stops (docs/PROTOCOL.md 1).
const GOODBYE: &str = "* server shutting down";

/// How long a read in these tests may wait before the server counts as hung.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Makes the attacks take turns: each measures memory or latency, which
/// another attack beside it would disturb.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seeded random bytes (xorshift64): the same flood on every run.
struct Noise(u64);

impl Noise {
    /// Fills `bytes` with the next random bytes.
    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }

    /// `len` random bytes.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.fill(&mut bytes);
        bytes
    }
}

/// Says `text` as `member` and waits for its own copy, its acknowledgement,
/// skipping whatever else arrives; how long that took.
fn round_trip(member: &mut LineClient, text: &str) -> Duration {
    let started = Instant::now();
    member.send(text);
    let own = format!("[#lobby] {}: {text}", member.nick);
    for _ in 0..1_000_000 {
        if member.line() == own {
            return started.elapsed();
        }
    }
    panic!("{} never got {text:?} back", member.nick);
}

/// Asserts that newcomers are served within [`SERVED_WITHIN`]: an HTTP
/// request answered, and a line client that speaks first welcomed, joined
/// and answered (one that stays silent waits out the 250 ms sniff).
fn assert_newcomers_served(server: &Server, nick: &str) {
    let started = Instant::now();
    let mut http = server.connect();
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_until_closed(&mut http);
    assert!(reply.starts_with(b"HTTP/1.1 200 "), "{reply:?}");
    let mut line = LineClient::connected(server);
    line.socket().set_read_timeout(Some(READ_DEADLINE)).unwrap();
    line.send(&format!("/nick {nick}"));
    line.read_greeting();
    let guest = line.nick.clone();
    line.expect(&format!("* {guest} joined #lobby"));
    line.expect(&format!("* you are now known as {nick}"));
    let waited = started.elapsed();
    assert!(waited < SERVED_WITHIN, "a newcomer waited {waited:?}");
}

/// Reads until the server closes (or resets) the connection, failing the
/// test if it neither closes nor sends within [`READ_DEADLINE`].
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(READ_DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0; 16 * 1024];
    for _ in 0..10_000 {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(read) => got.extend_from_slice(&chunk[..read]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return got,
            Err(err) => panic!("no close within {READ_DEADLINE:?} ({err}); got {got:?}"),
        }
    }
    panic!("the server kept sending: {} bytes", got.len());
}

/// Opens `count` connections to `port` at once, each sending `first` (if
/// anything); each with the moment it was opened.
async fn open(
    port: u16,
    count: usize,
    first: &'static [u8],
) -> Vec<(tokio::net::TcpStream, Instant)> {
    use futures_util::{StreamExt, stream};
    stream::iter(0..count)
        .map(|_| async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connects");
            let opened = Instant::now();
            stream
                .write_all(first)
                .await
                .expect("sends its first bytes");
            (stream, opened)
        })
        .buffer_unordered(200)
        .collect()
        .await
}

/// A slowloris connection: one more byte every 2 s, never a whole head (or
/// body), until the server closes it; how long it lived, and what the
/// server said before closing.
async fn trickle(mut stream: tokio::net::TcpStream, opened: Instant) -> (Duration, Vec<u8>) {
    let pace = Duration::from_secs(2);
    let mut beat = tokio::time::interval_at((opened + pace).into(), pace);
    let mut answer = Vec::new();
    let mut chunk = [0; 1024];
    for _ in 0..60 {
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return (opened.elapsed(), answer),
                Ok(read) => answer.extend_from_slice(&chunk[..read]),
            },
            _ = beat.tick() => {
                if stream.write_all(b"X").await.is_err() {
                    let _ = stream.read_to_end(&mut answer).await;
                    return (opened.elapsed(), answer);
                }
            }
        }
    }
    panic!(
        "a slowloris connection still open after {:?}",
        opened.elapsed()
    );
}

/// A slowloris connection that asserts the server's answer before closing
/// starts with `expected` (nothing at all when empty); how long it lived.
async fn trickle_expecting(
    stream: tokio::net::TcpStream,
    opened: Instant,
    expected: &'static str,
) -> Duration {
    let (life, answer) = trickle(stream, opened).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with(expected) && (expected.is_empty() == answer.is_empty()),
        "expected {expected:?}, got {answer:?}"
    );
    life
}

/// Reads from `stream` until the server closes it; how long it lived.
async fn until_closed(mut stream: tokio::net::TcpStream, opened: Instant) -> Duration {
    let mut sink = [0; 4096];
    for _ in 0..1000 {
        if matches!(stream.read(&mut sink).await, Ok(0) | Err(_)) {
            return opened.elapsed();
        }
    }
    panic!("a connection kept getting bytes for {:?}", opened.elapsed());
}

/// Waits (bounded) for `lives` and asserts each ended between `at` and
/// `at` + [`CLOSE_SLACK`].
fn assert_closed_at(
    runtime: &tokio::runtime::Runtime,
    lives: Vec<tokio::task::JoinHandle<Duration>>,
    at: Duration,
) {
    let lived = runtime.block_on(async {
        let all = futures_util::future::join_all(lives);
        tokio::time::timeout(at + CLOSE_SLACK * 2, all)
            .await
            .expect("every connection closed")
    });
    for life in lived {
        let life = life.expect("the connection's task finished");
        assert!(
            life >= at.saturating_sub(Duration::from_millis(500)) && life <= at + CLOSE_SLACK,
            "closed after {life:?}, expected about {at:?}"
        );
    }
}

#[test]
fn a_thousand_slowloris_connections_starve_nobody_and_are_closed_at_their_timeouts() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve", "--memory"]);
    let runtime = runtime();
    let slow_heads = runtime.block_on(open(server.port, CROWD, b"GET / HTTP/1.1\r\nHost: x\r\n"));
    // Slow POSTs: a whole head, then a body a byte at a time.
    let slow_bodies = runtime.block_on(open(
        server.port,
        CROWD / 10,
        b"POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    ));
    // And one that finished a request and sits on its kept-alive connection.
    let mut idle = runtime.block_on(open(
        server.port,
        1,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    let heads: Vec<_> = slow_heads
        .into_iter()
        .map(|(stream, opened)| runtime.spawn(trickle_expecting(stream, opened, "")))
        .collect();
    let bodies: Vec<_> = slow_bodies
        .into_iter()
        .map(|(stream, opened)| runtime.spawn(trickle_expecting(stream, opened, "HTTP/1.1 408 ")))
        .collect();
    assert_newcomers_served(&server, "newcomer");
    let (kept_alive, opened) = idle.pop().expect("one connection");
    let idle_life = runtime.spawn(until_closed(kept_alive, opened));
    assert_closed_at(&runtime, heads, HEAD_TIMEOUT);
    assert_closed_at(&runtime, bodies, BODY_TIMEOUT);
    assert_closed_at(&runtime, vec![idle_life], HEAD_TIMEOUT);
    assert_newcomers_served(&server, "latecomer");
}

#[test]
fn a_thousand_silent_connections_starve_nobody_and_are_closed_at_the_silent_timeout() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve", "--memory", "--silent-timeout", "3"]);
    let runtime = runtime();
    let silent = runtime.block_on(open(server.port, CROWD, b""));
    let lives: Vec<_> = silent
        .into_iter()
        .map(|(stream, opened)| runtime.spawn(greeted_then_closed(stream, opened)))
        .collect();
    assert_newcomers_served(&server, "newcomer");
    assert_closed_at(&runtime, lives, Duration::from_secs(3));
    assert_newcomers_served(&server, "latecomer");
}

/// A silent line client: it reads its welcome, then the silent timeout's
/// notice, then the close; how long it lived.
async fn greeted_then_closed(stream: tokio::net::TcpStream, opened: Instant) -> Duration {
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let welcome = lines.next_line().await.expect("reads").expect("a welcome");
    assert!(welcome.starts_with("* welcome guest-"), "{welcome:?}");
    let notice = lines.next_line().await.expect("reads");
    assert_eq!(notice.as_deref(), Some("* closing: nothing said for 3 s"));
    assert_eq!(lines.next_line().await.expect("reads"), None);
    opened.elapsed()
}

/// Asserts the server grew by at most [`GROWTH_KIB`] since `before`.
fn assert_memory_bounded(server: &Server, before: u64) {
    let after = server.rss_kib();
    assert!(
        after.saturating_sub(before) <= GROWTH_KIB,
        "the server grew from {before} KiB to {after} KiB"
    );
}

/// Reads `stream` line by line until the server closes it; every line, in
/// a thread of its own (the flooder must not stall on its own answers).
fn drain_lines(stream: &TcpStream) -> thread::JoinHandle<Vec<String>> {
    let stream = stream.try_clone().expect("clone stream");
    stream.set_read_timeout(Some(READ_DEADLINE)).unwrap();
    thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stream).split(b'\n') {
            match line {
                Ok(line) => lines.push(String::from_utf8_lossy(&line).into_owned()),
                Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
                Err(err) => panic!("no line within {READ_DEADLINE:?}: {err}"),
            }
        }
        lines
    })
}

#[test]
fn fifty_megabytes_of_random_bytes_on_a_line_connection_harm_nobody() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve"]);
    let mut member = LineClient::named(&server, "member");
    let before = server.rss_kib();
    let flooder = LineClient::named(&server, "flooder");
    let answers = drain_lines(flooder.socket());
    let mut flood = flooder.socket();
    let mut noise = Noise(0x5eed);
    let mut chunk = vec![0; 64 * 1024];
    for sent in (0..FLOOD).step_by(chunk.len()) {
        noise.fill(&mut chunk);
        flood.write_all(&chunk).expect("the server reads on");
        if sent % (5 * 1024 * 1024) == 0 {
            round_trip(&mut member, &format!("during {sent}"));
        }
    }
    // The flood's last line ends, and /quit (which the rate limit never
    // holds back) still works.
    flood.write_all(b"\n/quit\n").unwrap();
    let answers = answers.join().expect("the reader finished");
    assert_eq!(answers.last().map(String::as_str), Some("* bye"));
    let refused = answers.iter().filter(|a| a.starts_with("! ")).count();
    assert!(refused > 1000, "only {refused} lines refused");
    for answer in &answers {
        assert!(
            ["! ", "* ", "[#lobby] "]
                .iter()
                .any(|m| answer.starts_with(m)),
            "{answer:?}"
        );
    }
    round_trip(&mut member, "after");
    assert_memory_bounded(&server, before);
}

/// Reads one HTTP response: its status and body (by its `Content-Length`).
fn read_response(reader: &mut impl BufRead) -> (u16, Vec<u8>) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let mut length = 0;
    for _ in 0..100 {
        let mut header = String::new();
        reader.read_line(&mut header).expect("a header");
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    (status, body)
}

#[test]
fn fifty_megabytes_of_random_bytes_over_http_harm_nobody() {
    let _turn = one_at_a_time();
    // `--rate 0`: the 800 posts below must reach the JSON parser, not the
    // per-address post limit (tests/bounds.rs covers that one).
    let server = Server::start(&["serve", "--rate", "0"]);
    let mut member = LineClient::named(&server, "member");
    let before = server.rss_kib();

    // As a request head: refused at the first byte that cannot be in one;
    // the server stops reading long before 50 MB.
    let head = server.connect();
    let writer = {
        let mut head = head.try_clone().unwrap();
        thread::spawn(move || {
            let mut noise = Noise(0x4ead);
            let mut sent = head.write(b"GET / HTTP/1.1\r\n").unwrap_or(0);
            let mut chunk = vec![0; 64 * 1024];
            while sent < FLOOD {
                noise.fill(&mut chunk);
                match head.write(&chunk) {
                    Ok(written) => sent += written,
                    Err(_) => break,
                }
            }
            sent
        })
    };
    let reply = read_until_closed(&mut head.try_clone().unwrap());
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    let sent = writer.join().unwrap();
    assert!(sent < FLOOD, "the server read all {sent} bytes of garbage");

    // As request bodies on one kept-alive connection: 800 posts of 64,000
    // random bytes, each refused as bad JSON.
    let posts = FLOOD / 64_000;
    let stream = server.connect();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut noise = Noise(0xb0d1);
            for _ in 0..posts {
                let head = "POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\n\
                            Content-Type: application/json\r\nContent-Length: 64000\r\n\r\n";
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&noise.bytes(64_000)).unwrap();
            }
        })
    };
    let mut responses = BufReader::new(stream);
    for post in 0..posts {
        let (status, body) = read_response(&mut responses);
        let body: Value = serde_json::from_slice(&body).expect("a JSON error");
        // Random bytes are rarely JSON at all (`bad_json`); those that
        // start like a number or a string are JSON of the wrong shape.
        let code = &body["error"]["code"];
        assert!(
            status == 400 && (code == "bad_json" || code == "missing_field"),
            "{status} {body}"
        );
        if post % 100 == 0 {
            round_trip(&mut member, &format!("during post {post}"));
        }
    }
    writer.join().unwrap();
    round_trip(&mut member, "after");
    assert_memory_bounded(&server, before);
}

#[test]
fn fifty_megabytes_of_random_bytes_in_websocket_frames_harm_nobody() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve"]);
    let mut member = LineClient::named(&server, "member");
    let before = server.rss_kib();
    let ws = raw_websocket(&server);
    let answers = {
        let mut ws = ws.try_clone().unwrap();
        thread::spawn(move || {
            let mut texts = Vec::new();
            for _ in 0..1_000_000 {
                match read_frame(&mut ws) {
                    (0x8, payload) => return (texts, u16::from_be_bytes([payload[0], payload[1]])),
                    (0x1, payload) => {
                        texts.push(serde_json::from_slice::<Value>(&payload).unwrap())
                    }
                    (0x9, _) => {}
                    (opcode, _) => panic!("an unexpected frame {opcode:#x}"),
                }
            }
            panic!("no close frame");
        })
    };
    // Binary messages of random bytes: each answered with an error.
    let mut noise = Noise(0xf4a3);
    let frames = FLOOD / 64_000;
    for sent in 0..frames {
        (&ws).write_all(&frame(0x2, &noise.bytes(64_000))).unwrap();
        if sent % 100 == 0 {
            round_trip(&mut member, &format!("during frame {sent}"));
        }
    }
    // A text message of random bytes is not UTF-8: close 1007.
    (&ws).write_all(&frame(0x1, &noise.bytes(1000))).unwrap();
    let (texts, code) = answers.join().expect("the reader finished");
    assert_eq!(code, 1007);
    let errors: Vec<&Value> = texts.iter().filter(|t| t["type"] == "error").collect();
    assert_eq!(errors.len(), frames, "one error per binary message");
    for error in errors {
        assert!(
            error["code"] == "bad_json" || error["code"] == "rate_limited",
            "{error}"
        );
    }
    round_trip(&mut member, "after");
    assert_memory_bounded(&server, before);
}

#[test]
fn a_flooding_connection_is_throttled_while_a_member_round_trips_in_under_50_ms() {
    let _turn = one_at_a_time();
    // The member's 200 round trips fit its burst; the flooder's do not.
    let server = Server::start(&["serve", "--memory", "--rate", "50", "--burst", "250"]);
    let mut member = LineClient::named(&server, "member");
    let flooder = LineClient::named(&server, "flooder");
    let slowed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stream, slowed) = (flooder.socket().try_clone().unwrap(), Arc::clone(&slowed));
        stream.set_read_timeout(Some(READ_DEADLINE)).unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let line = line.expect("the flooder's answers");
                if line.starts_with("! slow down: try again in ") {
                    slowed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let writer = {
        let (mut stream, stop) = (flooder.socket().try_clone().unwrap(), Arc::clone(&stop));
        thread::spawn(move || {
            let batch = "flood\n".repeat(700);
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                stream.write_all(batch.as_bytes()).unwrap();
            }
            stream.shutdown(Shutdown::Write).unwrap();
        })
    };
    let flooding = Instant::now();
    while slowed.load(Ordering::Relaxed) < 1000 {
        assert!(
            flooding.elapsed() < READ_DEADLINE,
            "the flood was never throttled"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let mut trips: Vec<Duration> = (0..200)
        .map(|n| round_trip(&mut member, &format!("ping {n}")))
        .collect();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    reader.join().unwrap();
    trips.sort();
    let p99 = trips[197];
    assert!(
        p99 < Duration::from_millis(50),
        "p99 {p99:?}; all: {trips:?}"
    );
    assert!(
        slowed.load(Ordering::Relaxed) > 10_000,
        "the flooder was hardly throttled"
    );
}

#[test]
fn a_member_that_never_reads_is_disconnected_and_memory_stays_flat() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve", "--rate", "0"]);
    let stalled = LineClient::named(&server, "stalled");
    let mut talker = LineClient::named(&server, "talker");
    round_trip(&mut talker, "warm up");
    let before = server.rss_kib();
    let messages = 20_000;
    let text = |n: usize| format!("{n:05} {}", "x".repeat(500));
    let writer = {
        let mut stream = talker.socket().try_clone().unwrap();
        thread::spawn(move || {
            for n in 0..messages {
                stream
                    .write_all(format!("{}\n", text(n)).as_bytes())
                    .unwrap();
            }
        })
    };
    // The stalled member starts reading only once the room has heard it
    // was let go: then it gets what its socket held, and why it was closed.
    let (go, ready) = std::sync::mpsc::channel::<()>();
    let stalled_reader = thread::spawn(move || {
        let mut stalled = stalled;
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("the stalled member was let go");
        stalled.until_closed()
    });
    let mut go = Some(go);
    let mut next = 0;
    for _ in 0..messages * 2 {
        let line = talker.line();
        if line == "* stalled left #lobby" {
            go.take().expect("one departure").send(()).unwrap();
            continue;
        }
        assert_eq!(line, format!("[#lobby] talker: {}", text(next)));
        next += 1;
        if next == messages {
            break;
        }
    }
    assert!(go.is_none(), "the stalled member was never let go");
    writer.join().unwrap();
    let heard = stalled_reader.join().unwrap();
    assert_eq!(
        heard.last().map(String::as_str),
        Some("* disconnected: too slow to keep up (1024 events queued)"),
        "{} lines before",
        heard.len()
    );
    let got = heard
        .iter()
        .filter(|l| l.starts_with("[#lobby] talker: "))
        .count();
    assert!(got < messages, "it got all {got} messages");
    let after = server.rss_kib();
    assert!(
        after.saturating_sub(before) <= GROWTH_KIB,
        "the server grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn a_member_that_never_reads_its_history_is_closed_at_the_idle_timeout() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve", "--memory", "--rate", "0", "--idle-timeout", "2"]);
    // 8 MB of history: more than the socket buffers between the two hold.
    let mut writer = LineClient::named(&server, "writer");
    let big = "h".repeat(8000);
    let history: String = (0..1000).map(|n| format!("{n} {big}\n")).collect();
    let mut stream = writer.socket().try_clone().unwrap();
    let sending = thread::spawn(move || stream.write_all(history.as_bytes()).unwrap());
    writer.expect_past_notices(&format!("[#lobby] writer: 0 {big}"));
    for n in 1..1000 {
        writer.expect(&format!("[#lobby] writer: {n} {big}"));
    }
    sending.join().unwrap();
    // It asks for all of it, with a small receive buffer, and never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = server.local().parse().unwrap();
    socket.connect(&address.into()).unwrap();
    let mut reader = TcpStream::from(socket);
    reader.write_all(b"/nick reader\n/history 1000\n").unwrap();
    let asked = Instant::now();
    // The diary lists it until the server lets go of it.
    for _ in 0..1000 {
        let (_, diary) = crate::util::curl(&[&server.url("/api/connections")]);
        let diary: Value = serde_json::from_str(&diary).expect("the diary");
        let listed = diary
            .as_array()
            .expect("a list")
            .iter()
            .any(|c| c["nick"] == "reader");
        if !listed {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(2) + CLOSE_SLACK,
            "still connected after {:?}",
            asked.elapsed()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "let go after {:?}, before the idle timeout",
        asked.elapsed()
    );
    // The writer was idle as long: the server closed it too, and nothing else.
    assert_newcomers_served(&server, "newcomer");
}

/// One of the thousand line clients of the shutdown attack.
struct Member {
    lines: tokio::io::BufReader<tokio::net::TcpStream>,
    nick: String,
}

/// Connects `count` line clients named `c0`, `c1`, …; each is a member of
/// `#lobby` and has read the answer to its `/nick`.
async fn members(port: u16, count: usize) -> Vec<Member> {
    use futures_util::{StreamExt, stream};
    stream::iter(0..count)
        .map(|n| async move {
            let nick = format!("c{n}");
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connects");
            stream
                .write_all(format!("/nick {nick}\n").as_bytes())
                .await
                .unwrap();
            let mut member = Member {
                lines: tokio::io::BufReader::new(stream),
                nick,
            };
            member
                .read_until(&format!("* you are now known as {}", member.nick))
                .await;
            member
        })
        .buffer_unordered(200)
        .collect()
        .await
}

impl Member {
    /// The next line, `None` once the server closed (or reset) the connection.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.lines.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
        }
    }

    /// Reads up to and including `expected`.
    async fn read_until(&mut self, expected: &str) {
        for _ in 0..10_000 {
            match self.line().await {
                Some(line) if line == expected => return,
                Some(_) => {}
                None => panic!("{} closed before {expected:?}", self.nick),
            }
        }
        panic!("{} never read {expected:?}", self.nick);
    }

    /// Reads until the server closes; the last line it sent.
    async fn last_words(&mut self) -> Option<String> {
        let mut last = None;
        for _ in 0..1_000_000 {
            match self.line().await {
                Some(line) => last = Some(line),
                None => return last,
            }
        }
        panic!("{} was never closed", self.nick);
    }

    /// Says numbered messages in its own room `#NICK`, each after the
    /// previous one came back (its ack), until the server stops it; what
    /// was acknowledged and its last line.
    async fn talk(mut self, acks: Arc<AtomicUsize>) -> (Vec<String>, Option<String>) {
        let mut acked = Vec::new();
        for n in 0..1_000_000 {
            let text = format!("{}-{n}", self.nick);
            if self
                .lines
                .get_mut()
                .write_all(format!("{text}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let own = format!("[#{}] {}: {text}", self.nick, self.nick);
            if !self.ack(&own).await {
                return (acked, self.last_words().await.or(Some(GOODBYE.into())));
            }
            acked.push(text);
            acks.fetch_add(1, Ordering::Relaxed);
        }
        (acked, self.last_words().await)
    }

    /// Reads past others' presence in `#lobby` to `own`, the ack of what it
    /// said (`true`), or to the server's goodbye (`false`).
    async fn ack(&mut self, own: &str) -> bool {
        for _ in 0..10_000 {
            match self.line().await.as_deref() {
                Some(line) if line == own => return true,
                Some(GOODBYE) => return false,
                Some(_) => {}
                None => panic!("{} was closed without a goodbye", self.nick),
            }
        }
        panic!("{} never got {own:?} back", self.nick);
    }
}

#[test]
fn sigterm_with_a_thousand_clients_and_messages_in_flight_loses_nothing_and_tells_everyone() {
    let _turn = one_at_a_time();
    let data = fresh_data_dir();
    let data = data.to_str().expect("a UTF-8 path").to_string();
    let server = Server::start(&["serve", "--data", &data, "--rate", "0"]);
    let runtime = runtime();
    let talkers = 20;
    let (mut speakers, listeners) = runtime.block_on(async {
        let mut crowd = members(server.port, CROWD).await;
        let listeners = crowd.split_off(talkers);
        for speaker in &mut crowd {
            let room = speaker.nick.clone();
            speaker
                .lines
                .get_mut()
                .write_all(format!("/join {room}\n").as_bytes())
                .await
                .unwrap();
            speaker
                .read_until(&format!("* {room} joined #{room}"))
                .await;
        }
        (crowd, listeners)
    });
    let acks = Arc::new(AtomicUsize::new(0));
    let rooms: Vec<String> = speakers.iter().map(|s| s.nick.clone()).collect();
    let talking: Vec<_> = speakers
        .drain(..)
        .map(|speaker| runtime.spawn(speaker.talk(Arc::clone(&acks))))
        .collect();
    let listening: Vec<_> = listeners
        .into_iter()
        .map(|mut listener| runtime.spawn(async move { listener.last_words().await }))
        .collect();
    let started = Instant::now();
    while acks.load(Ordering::Relaxed) < 2000 {
        assert!(started.elapsed() < READ_DEADLINE, "the talkers got no acks");
        thread::sleep(Duration::from_millis(10));
    }

    let stopping = Instant::now();
    let status = server.terminate();
    let took = stopping.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(5),
        "the server took {took:?} to stop"
    );

    let (said, told) = runtime.block_on(async {
        let said = futures_util::future::join_all(talking);
        let told = futures_util::future::join_all(listening);
        tokio::time::timeout(READ_DEADLINE, async { (said.await, told.await) })
            .await
            .expect("every client was closed")
    });
    let goodbye = Some(GOODBYE.to_string());
    for last in told {
        assert_eq!(last.expect("the listener's task finished"), goodbye);
    }
    let restarted = Server::start(&["serve", "--data", &data]);
    for (room, said) in rooms.iter().zip(said) {
        let (acked, last) = said.expect("the talker's task finished");
        assert_eq!(last, goodbye, "what {room} heard last");
        let stored: HashSet<String> = history(&restarted, room)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|text| !stored.contains(*text))
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged but not stored in #{room}: {lost:?}"
        );
    }
}

#[test]
fn malformed_http_gets_a_4xx_or_is_served_and_the_server_keeps_serving() {
    let _turn = one_at_a_time();
    let server = Server::start(&["serve", "--memory"]);
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let post =
        "POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let cases: [(&str, String, &str); 8] = [
        (
            "a bad request line",
            "GET / HTTP/1.1 and more\r\nHost: x\r\n\r\n".into(),
            "400",
        ),
        (
            "a header without a colon",
            "GET / HTTP/1.1\r\nHost x\r\n\r\n".into(),
            "400",
        ),
        ("a 100 KB header", big_header, "431"),
        (
            "a bad content-length",
            format!("{post}Content-Length: ten\r\n\r\n"),
            "400",
        ),
        (
            "two content-lengths",
            format!("{post}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"),
            "400",
        ),
        (
            "bad chunking",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"),
            "400",
        ),
        ("HTTP/0.9", "GET /\r\n".into(), "400"),
        (
            "CONNECT, as to a proxy",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n".into(),
            "4",
        ),
    ];
    for (what, request, status) in cases {
        let mut stream = server.connect();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            thread::spawn(move || {
                let _ = stream.write_all(request.as_bytes());
            })
        };
        let reply = String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned();
        writer.join().unwrap();
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {reply:?}"
        );
    }
    // Absolute form, as a proxy is asked: served from this server's own path
    // (RFC 9112 3.2.2), never forwarded.
    let mut stream = server.connect();
    stream
        .write_all(b"GET http://example.invalid/healthz HTTP/1.1\r\nHost: example.invalid\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("\r\n\r\nok\n"),
        "{reply:?}"
    );
    assert_newcomers_served(&server, "newcomer");
}
