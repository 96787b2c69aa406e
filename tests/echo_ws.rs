//! `switchboard echo --ws` with third-party clients and with `connect ws://`.

use crate::util::{Server, repo_file, run, run_switchboard, stdout, tool};

#[test]
fn python_websockets_client_gets_text_and_binary_back_unchanged() {
    let server = Server::start(&["echo", "--ws"]);
    let mut python = tool("python3");
    python
        .arg(repo_file("tests/python/ws_echo_client.py"))
        .arg(format!("ws://127.0.0.1:{}/", server.port));
    let output = run(python, b"");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout(&output),
        "text: ok\nunicode text: ok\nempty text: ok\nbinary: ok\nlarge binary: ok\n"
    );
}

#[test]
fn connect_sends_each_stdin_line_as_a_message_and_prints_replies() {
    let server = Server::start(&["echo", "--ws", "--prefix", "re: "]);
    let url = format!("ws://localhost:{}/", server.port);
    let output = run_switchboard(&["connect", &url], b"hello\r\nworld\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "re: hello\nre: world\n");
}

#[test]
fn connect_to_ipv6_websocket_url() {
    let server = Server::start(&["echo", "--ws"]);
    let url = format!("ws://[::1]:{}/", server.port);
    let output = run_switchboard(&["connect", &url], b"over six\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "over six\n");
}

#[test]
fn plain_http_and_bad_handshakes_get_an_http_error_without_harm() {
    let server = Server::start(&["echo", "--ws"]);
    let upgrade = "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n";
    for (request, status) in [
        (
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            "HTTP/1.1 426 Upgrade Required",
        ),
        (
            format!(
                "{upgrade}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
            "HTTP/1.1 426 Upgrade Required",
        ),
        (
            format!("{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: nope\r\n\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "\x16\x03\x01 not http at all\r\n\r\n".to_string(),
            "HTTP/1.1 400 Bad Request",
        ),
    ] {
        let output = run_switchboard(&["send", &server.local(), &request], b"");
        assert!(output.status.success(), "{output:?}");
        let reply = stdout(&output);
        assert!(reply.starts_with(status), "{request:?} got {reply:?}");
        if status.contains("426") {
            assert!(
                reply
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{reply}"
            );
        }
    }
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let output = run_switchboard(&["connect", &url], b"still works\n");
    assert_eq!(stdout(&output), "still works\n");
}
