//! Every failure a user can cause ends in one `error: …` line and a non-zero exit.

use std::io::Read;
use std::net::TcpListener;

use crate::util::{assert_one_line_error, closed_port, run_switchboard};

#[test]
fn port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run_switchboard(&["echo", "--host", "127.0.0.1", "--port", &port], b"");
    assert_one_line_error(
        &output,
        &format!("could not listen on 127.0.0.1:{port}: address already in use"),
    );
}

#[test]
fn connection_refused() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let output = run_switchboard(&["send", &addr, "x"], b"");
    assert_one_line_error(
        &output,
        &format!("could not connect to {addr}: connection refused"),
    );
    let output = run_switchboard(&["connect", &addr], b"");
    assert_one_line_error(
        &output,
        &format!("could not connect to {addr}: connection refused"),
    );
    let url = format!("ws://{addr}/");
    let output = run_switchboard(&["connect", &url], b"");
    assert_one_line_error(
        &output,
        &format!("could not connect to {addr}: connection refused"),
    );
}

#[test]
fn udp_to_a_closed_port_is_refused() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let output = run_switchboard(&["send", "--udp", "--timeout", "10", &addr, "x"], b"");
    assert_one_line_error(
        &output,
        &format!("could not connect to {addr}: connection refused"),
    );
}

#[test]
fn unresolvable_host() {
    let output = run_switchboard(&["send", "no-such-host.invalid:3000", "x"], b"");
    assert_one_line_error(&output, "could not resolve host 'no-such-host.invalid'");
    let output = run_switchboard(
        &["echo", "--host", "no-such-host.invalid", "--port", "0"],
        b"",
    );
    assert_one_line_error(&output, "could not resolve host 'no-such-host.invalid'");
}

#[test]
fn malformed_addresses_and_ports() {
    for (args, expected) in [
        (
            vec!["send", "localhost:http", "x"],
            "invalid address 'localhost:http'",
        ),
        (
            vec!["send", "localhost", "x"],
            "invalid address 'localhost'",
        ),
        (
            vec!["send", "localhost:0", "x"],
            "invalid address 'localhost:0'",
        ),
        (vec!["send", "::1:80", "x"], "invalid address '::1:80'"),
        (
            vec!["connect", "http://localhost:80/"],
            "invalid address 'http://localhost:80/'",
        ),
        (vec!["connect", "ws://"], "invalid address 'ws://'"),
        (
            vec!["echo", "--port", "70000"],
            "invalid value '70000' for '--port",
        ),
        (
            vec!["echo", "--port", "abc"],
            "invalid value 'abc' for '--port",
        ),
        (
            vec!["echo", "--listen", "localhost"],
            "invalid address 'localhost'",
        ),
        (
            vec!["send", "--timeout=-1", "localhost:1", "x"],
            "invalid --timeout -1",
        ),
        (
            vec!["send", "--timeout", "0", "localhost:1", "x"],
            "invalid --timeout 0",
        ),
    ] {
        let output = run_switchboard(&args, b"");
        assert_one_line_error(&output, expected);
    }
}

#[test]
fn conflicting_flags() {
    let output = run_switchboard(&["echo", "--udp", "--ws"], b"");
    assert_one_line_error(&output, "'--udp' cannot be used with '--ws'");
    let output = run_switchboard(&["echo", "--raw", "--prefix", "x"], b"");
    assert_one_line_error(&output, "cannot be used with");
}

#[test]
fn a_server_that_never_replies_times_out() {
    // Connections complete in the kernel's backlog even though nobody accepts.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let output = run_switchboard(&["send", "--timeout", "0.3", &addr, "anyone?"], b"");
    assert_one_line_error(&output, &format!("no reply from {addr} within 300ms"));
}

#[test]
fn a_server_that_closes_without_replying() {
    let rude = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = rude.local_addr().unwrap().to_string();
    let closer = std::thread::spawn(move || {
        let (mut stream, _) = rude.accept().unwrap();
        // Read the request first: closing with unread bytes would send a
        // reset instead of an orderly end of stream.
        let mut request = [0u8; 6];
        stream.read_exact(&mut request).unwrap();
        drop(stream);
    });
    let output = run_switchboard(&["send", &addr, "hello?"], b"");
    closer.join().unwrap();
    assert_one_line_error(
        &output,
        &format!("{addr} closed the connection without replying"),
    );
}

#[test]
fn a_missing_argument_is_named() {
    let output = run_switchboard(&["send"], b"");
    assert_one_line_error(&output, "were not provided: <ADDR> (see --help)");
    let output = run_switchboard(&["serve", "--tls-cert", "x.pem"], b"");
    assert_one_line_error(&output, "were not provided: --tls-key <FILE> (see --help)");
}
