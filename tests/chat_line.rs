//! `switchboard serve` with line clients: the conversation of docs/PROTOCOL.md 5.1 to the
//! letter, every kind of bad input, and the protections of 5.5.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{LineClient, Server, assert_one_line_error, curl, run_switchboard};

#[test]
fn a_conversation_between_three_nc_clients() {
    let server = Server::start(&["serve"]);
    let mut alice = LineClient::greeted(&server);
    let alice_guest = alice.nick.clone();
    alice.first_line("/nick alice");
    alice.expect("* you are now known as alice");

    // Each newcomer joins #lobby with its first line, which is when the
    // others hear of it.
    let mut bob = LineClient::greeted(&server);
    let bob_guest = bob.nick.clone();
    bob.first_line("/nick bob");
    bob.expect("* you are now known as bob");
    alice.expect(&format!("* {bob_guest} joined #lobby"));
    alice.expect(&format!("* {bob_guest} is now known as bob"));

    let mut carol = LineClient::greeted(&server);
    let carol_guest = carol.nick.clone();
    carol.first_line("/nick carol");
    carol.expect("* you are now known as carol");
    alice.expect(&format!("* {carol_guest} joined #lobby"));
    bob.expect(&format!("* {carol_guest} joined #lobby"));
    alice.expect(&format!("* {carol_guest} is now known as carol"));
    bob.expect(&format!("* {carol_guest} is now known as carol"));
    assert_ne!(alice_guest, bob_guest);

    alice.send("Hi");
    for client in [&mut alice, &mut bob, &mut carol] {
        client.expect("[#lobby] alice: Hi");
    }

    bob.send("/msg alice psst");
    bob.expect("* dm to alice: psst");
    alice.expect("[dm] bob: psst");

    carol.send("/who");
    carol.expect("* #lobby (3): alice, bob, carol");
    carol.send("/join #rust");
    carol.expect("* carol joined #rust");
    carol.send("anyone here?");
    carol.expect("[#rust] carol: anyone here?");
    alice.send("/rooms");
    alice.expect("* rooms: #lobby (3), #rust (1)");
    carol.send("/part");
    carol.expect("* carol left #rust");

    bob.send("/quit");
    bob.expect("* bye");
    assert!(bob.until_closed().is_empty());
    alice.expect("* bob left #lobby");
    carol.expect("* bob left #lobby");
    alice.send("/who #lobby");
    alice.expect("* #lobby (2): alice, carol");
    alice.send("/history 2");
    alice.expect("* history of #lobby: 1 message");
    alice.expect("[#lobby] alice: Hi");
}

#[test]
fn help_lists_the_commands() {
    let server = Server::start(&["serve"]);
    let mut client = LineClient::greeted(&server);
    client.first_line("/help");
    client.expect("* commands:");
    let lines: Vec<String> = (0..10).map(|_| client.line()).collect();
    for command in [
        "/nick", "/join", "/part", "/rooms", "/who", "/msg", "/history", "/json", "/quit",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(command)),
            "{command} missing from {lines:?}"
        );
    }
}

#[test]
fn every_kind_of_bad_input_gets_an_error_and_the_connection_keeps_working() {
    let server = Server::start(&["serve"]);
    let mut bob = LineClient::named(&server, "bob");
    let mut client = LineClient::greeted(&server);

    // Refused lines are answered, but they are not a first line: the client
    // joins #lobby only with the first line it gets across.
    let mut too_long = vec![b'x'; 9000];
    too_long.push(b'\n');
    client.send_bytes(&too_long);
    client.expect("! line too long (limit 8192 bytes): dropped");
    client.send_bytes(b"\xff\xfe broken\n");
    client.expect("! line is not valid UTF-8: dropped");
    bob.send("/who");
    bob.expect("* #lobby (1): bob");
    client.first_line("/frobnicate");
    client.expect("! unknown command /frobnicate - type /help");
    bob.expect(&format!("* {} joined #lobby", client.nick));
    for (line, error) in [
        ("/frobnicate", "! unknown command /frobnicate - type /help"),
        ("/nick", "! usage: /nick NAME"),
        (
            "/nick not valid",
            "! a nick is 1 to 32 letters, digits, '_' or '-'",
        ),
        ("/nick BOB", "! nick BOB is taken"),
        (
            "/join #no!",
            "! a room name is 1 to 64 letters, digits, '_' or '-' (written #name)",
        ),
        ("/msg nobody hi", "! no such nick: nobody"),
        ("/msg bob", "! usage: /msg NICK TEXT"),
        ("/part #nowhere", "! you are not in #nowhere"),
        (
            "/history many",
            "! usage: /history [N] with N a positive number",
        ),
    ] {
        client.send(line);
        client.expect(error);
    }
    client.send("still here");
    client.expect(&format!("[#lobby] {}: still here", client.nick));
    bob.expect(&format!("[#lobby] {}: still here", client.nick));
}

#[test]
fn a_line_without_a_room_is_refused_until_one_is_joined() {
    let server = Server::start(&["serve"]);
    let mut client = LineClient::greeted(&server);
    client.first_line("/part");
    client.expect(&format!("* {} left #lobby", client.nick));
    client.send("hello?");
    client.expect("! you are not in a room: /join one");
    client.send("/join lobby");
    client.expect(&format!("* {} joined #lobby", client.nick));
}

#[test]
fn the_rate_limit_answers_instead_of_staying_silent() {
    let server = Server::start(&["serve", "--rate", "1", "--burst", "3"]);
    let mut client = LineClient::greeted(&server);
    let burst: String = (0..5).map(|i| format!("m{i}\n")).collect();
    client.send_bytes(burst.as_bytes());
    client.expect(&format!("* {} joined #lobby", client.nick));
    for i in 0..3 {
        client.expect(&format!("[#lobby] {}: m{i}", client.nick));
    }
    for _ in 0..2 {
        let line = client.line();
        assert!(line.starts_with("! slow down: try again in "), "{line:?}");
    }
}

#[test]
fn a_client_that_speaks_first_is_served_without_waiting() {
    let server = Server::start(&["serve"]);
    let mut stream = server.connect();
    stream.write_all(b"/nick early\nhello\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let guest = lines[0]
        .strip_prefix("* welcome ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(nick, _)| nick)
        .unwrap_or_else(|| panic!("no welcome: {lines:?}"));
    assert_eq!(
        &lines[1..],
        [
            &format!("* {guest} joined #lobby"),
            "* you are now known as early",
            "[#lobby] early: hello"
        ]
    );
}

#[test]
fn an_idle_connection_is_told_and_closed() {
    let server = Server::start(&["serve", "--idle-timeout", "1"]);
    let mut client = LineClient::named(&server, "idler");
    assert_eq!(client.until_closed(), ["* closing: idle for 1 s"]);
    // Before its first line, the shorter of the two waits applies.
    let mut silent = LineClient::greeted(&server);
    assert_eq!(silent.until_closed(), ["* closing: idle for 1 s"]);
}

#[test]
fn a_silent_connection_is_greeted_but_is_nobody_until_it_speaks() {
    let server = Server::start(&["serve", "--silent-timeout", "3"]);
    let mut alice = LineClient::named(&server, "alice");
    // Greeted like anyone: `nc` users wait for the server to speak first.
    let mut silent = LineClient::greeted(&server);
    let greeted = Instant::now();
    let ghost = silent.nick.clone();

    // Nobody sees it: no join notice (alice's next line is her answer), not
    // in who, not in any count, and not someone to send a direct message.
    alice.send("/who");
    alice.expect("* #lobby (1): alice");
    alice.send("/rooms");
    alice.expect("* rooms: #lobby (1)");
    let (status, rooms) = curl(&[&server.url("/api/rooms")]);
    assert_eq!(status, 200);
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms[0]["members"], 1, "{rooms}");
    alice.send(&format!("/msg {ghost} are you there?"));
    alice.expect(&format!("! no such nick: {ghost}"));
    // The diary lists it: it is a connection, in no room.
    let (_, diary) = curl(&[&server.url("/api/connections")]);
    let diary: Value = serde_json::from_str(&diary).unwrap();
    let entry = diary
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["nick"] == ghost.as_str())
        .unwrap_or_else(|| panic!("{ghost} missing from {diary}"));
    assert_eq!(
        (&entry["transport"], &entry["rooms"]),
        (&"tcp".into(), &Value::Array(vec![]))
    );

    // Saying nothing, it is closed after --silent-timeout, not the idle timeout.
    assert_eq!(silent.until_closed(), ["* closing: nothing said for 3 s"]);
    let waited = greeted.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
    alice.send("/who");
    alice.expect("* #lobby (1): alice");

    // One that speaks joins as anyone does, and its line is answered.
    let mut bob = LineClient::greeted(&server);
    let guest = bob.nick.clone();
    bob.first_line("hello");
    bob.expect(&format!("[#lobby] {guest}: hello"));
    alice.expect(&format!("* {guest} joined #lobby"));
    alice.expect(&format!("[#lobby] {guest}: hello"));
}

#[test]
fn a_silent_timeout_of_zero_is_refused_at_startup() {
    let output = run_switchboard(&["serve", "--port", "0", "--silent-timeout", "0"], b"");
    assert_one_line_error(&output, "--silent-timeout must be at least 1 second");
}

#[test]
fn shutdown_tells_every_client_and_exits_zero() {
    let server = Server::start(&["serve"]);
    let mut clients: Vec<LineClient> = (0..3).map(|_| LineClient::greeted(&server)).collect();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    for client in &mut clients {
        assert_eq!(client.until_closed(), ["* server shutting down"]);
    }
}

#[test]
fn a_full_server_refuses_with_a_reason() {
    let server = Server::start(&["serve", "--max-connections", "1"]);
    let _first = LineClient::greeted(&server);
    let mut second = server.connect();
    let mut refusal = String::new();
    second.read_to_string(&mut refusal).unwrap();
    assert_eq!(refusal, "! server full (1 connections): try later\n");
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_room_goes_on() {
    let server = Server::start(&[
        "serve", "--queue", "8", "--rate", "100000", "--burst", "100000",
    ]);
    let stalled = LineClient::named(&server, "stalled");
    stalled
        .socket()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut talker = LineClient::named(&server, "talker");
    let mut listener = LineClient::named(&server, "listener");
    let newcomer = format!("* {} joined #lobby", "guest-3");
    talker.expect(&newcomer);
    talker.expect("* guest-3 is now known as listener");
    let big = "z".repeat(8000);
    let said = format!("[#lobby] talker: {big}");
    let left = "* stalled left #lobby";
    // Push until the stalled client's socket buffers and its queue are full and
    // the hub lets go of it; everyone else keeps getting every message, and
    // both hear that it left (at whatever point in their stream).
    let (mut talker_heard, mut listener_heard) = (false, false);
    for _ in 0..20_000 {
        talker.send(&big);
        for (client, heard) in [
            (&mut talker, &mut talker_heard),
            (&mut listener, &mut listener_heard),
        ] {
            let mut line = client.line();
            if line == left {
                *heard = true;
                line = client.line();
            }
            assert_eq!(line, said);
        }
        if talker_heard && listener_heard {
            break;
        }
    }
    assert!(
        talker_heard && listener_heard,
        "the stalled client was never dropped"
    );
    talker.send("after");
    talker.expect("[#lobby] talker: after");
    listener.expect("[#lobby] talker: after");
    drop(stalled);
}

#[test]
fn blank_lines_history_counts_and_empty_rooms_read_as_english() {
    let server = Server::start(&["serve", "--memory"]);
    let mut alice = LineClient::named(&server, "alice");
    alice.send("   \t ");
    alice.expect("! empty message");
    alice.send("only one");
    alice.expect("[#lobby] alice: only one");
    alice.send("/history");
    alice.expect("* history of #lobby: 1 message");
    alice.expect("[#lobby] alice: only one");
    alice.send("/who #nosuch");
    alice.expect("* #nosuch (0): nobody");
}
