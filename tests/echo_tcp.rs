//! `switchboard echo` over TCP: the tutorial exchange, every mode, many peers,
//! misbehaving peers, logging and shutdown.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use crate::util::{Server, read_exactly, repo_file, run, stdout, tool};

#[test]
fn the_node_tutorial_client_gets_its_echo() {
    let server = Server::start(&["echo"]);
    let mut node = tool("node");
    node.arg(repo_file("tests/node/tutorial-client.mjs"))
        .arg(server.port.to_string());
    let output = run(node, b"");
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "Connected to server",
            "Server says: Echo: Hello from client!",
            "Disconnected from server"
        ]
    );
}

#[test]
fn listens_dual_stack_by_default() {
    let server = Server::start(&["echo"]);
    assert!(server.addr.starts_with("[::]:"), "{}", server.addr);
    for host in ["127.0.0.1", "::1"] {
        let mut stream = TcpStream::connect((host, server.port)).expect("connects");
        stream.write_all(b"hi").unwrap();
        assert_eq!(read_exactly(&mut stream, 8), b"Echo: hi", "over {host}");
    }
}

#[test]
fn nc_gets_each_line_prefixed_and_the_last_on_half_close() {
    let server = Server::start(&["echo", "--lines"]);
    let mut nc = tool("nc");
    nc.args(["-N", "localhost", &server.port.to_string()]);
    let output = run(nc, b"one\ntwo\nthree");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "Echo: one\nEcho: two\nEcho: three");
}

#[test]
fn prefix_is_configurable() {
    let server = Server::start(&["echo", "--prefix", "you said: "]);
    let mut stream = server.connect();
    stream.write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut stream, 11), b"you said: x");
}

#[test]
fn raw_mode_round_trips_ten_megabytes_intact() {
    let server = Server::start(&["echo", "--raw"]);
    let stream = server.connect();
    let payload: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = payload.clone();
    let upload = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::with_capacity(payload.len());
    (&stream).read_to_end(&mut echoed).unwrap();
    upload.join().unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "echoed bytes differ from what was sent");
}

#[test]
fn two_hundred_concurrent_clients_each_get_their_own_bytes() {
    let server = Server::start(&["echo", "--raw"]);
    let clients: Vec<_> = (0..200u32)
        .map(|id| {
            let mut stream = server.connect();
            thread::spawn(move || {
                let payload: Vec<u8> = (0..20_000u32)
                    .flat_map(|i| (id * 100_000 + i).to_le_bytes())
                    .collect();
                let mut writer = stream.try_clone().unwrap();
                let sent = payload.clone();
                let upload = thread::spawn(move || {
                    writer.write_all(&sent).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut echoed = Vec::new();
                stream.read_to_end(&mut echoed).unwrap();
                upload.join().unwrap();
                echoed == payload
            })
        })
        .collect();
    let intact = clients
        .into_iter()
        .filter_map(|c| c.join().unwrap().then_some(()))
        .count();
    assert_eq!(intact, 200);
}

#[test]
fn half_close_gets_the_reply_then_end_of_stream() {
    let server = Server::start(&["echo"]);
    let mut stream = server.connect();
    stream.write_all(b"abc").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"Echo: abc");
}

#[test]
fn close_after_reply_ends_the_connection() {
    let server = Server::start(&["echo", "--close-after-reply"]);
    let mut stream = server.connect();
    stream.write_all(b"once").unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"Echo: once");
}

#[test]
fn logs_peer_and_file_descriptor_on_connect_and_disconnect() {
    let server = Server::start(&["echo"]);
    let mut stream = server.connect();
    let peer = stream.local_addr().unwrap().to_string();
    let connected = server.wait_for_log(&format!("connected {peer} (fd "));
    stream.write_all(b"x").unwrap();
    read_exactly(&mut stream, 7);
    drop(stream);
    let disconnected = server.wait_for_log(&format!("disconnected {peer} (fd "));
    let fd = |line: &str| {
        line.rsplit_once("(fd ")
            .map(|(_, rest)| rest[..rest.find(')').unwrap()].to_string())
    };
    assert_eq!(fd(&connected), fd(&disconnected));
}

#[test]
fn a_peer_that_resets_does_not_affect_others() {
    let server = Server::start(&["echo"]);
    let mut steady = server.connect();
    steady.write_all(b"before").unwrap();
    assert_eq!(read_exactly(&mut steady, 12), b"Echo: before");

    let resetter = socket2::Socket::from(server.connect());
    resetter
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    let resetter = TcpStream::from(resetter);
    (&resetter).write_all(b"going").unwrap();
    let peer = resetter.local_addr().unwrap().to_string();
    drop(resetter);
    server.wait_for_log(&format!("disconnected {peer}"));

    steady.write_all(b"after").unwrap();
    assert_eq!(read_exactly(&mut steady, 11), b"Echo: after");
}

#[test]
fn a_peer_that_never_reads_is_not_buffered_and_others_are_served() {
    let server = Server::start(&["echo", "--raw", "--host", "127.0.0.1"]);
    let baseline_kib = server.rss_kib();
    let flood = server.connect();
    flood
        .set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let limit = 256 * 1024 * 1024;
    let chunk = vec![b'z'; 1024 * 1024];
    let mut pushed = 0;
    // Write until the server stops taking bytes; a server that buffered
    // without limit would swallow all 256 MiB.
    while pushed < limit {
        match (&flood).write(&chunk) {
            Ok(written) => pushed += written,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(err) => panic!("flood write failed: {err}"),
        }
    }
    assert!(
        pushed < limit,
        "the server took {pushed} bytes from a peer that never reads"
    );

    let mut other = server.connect();
    other.write_all(b"still here").unwrap();
    assert_eq!(read_exactly(&mut other, 10), b"still here");

    let grown_kib = server.rss_kib().saturating_sub(baseline_kib);
    assert!(
        grown_kib < 16 * 1024,
        "server memory grew by {grown_kib} KiB while a peer did not read ({pushed} bytes pushed)"
    );
}

#[test]
fn sigterm_closes_connections_and_exits_zero() {
    let server = Server::start(&["echo"]);
    let mut stream = server.connect();
    stream.write_all(b"x").unwrap();
    read_exactly(&mut stream, 7);
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}
