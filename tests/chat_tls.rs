//! `serve` over TLS (docs/PROTOCOL.md 5.5): line, HTTP and WebSocket clients on one port,
//! each through a real TLS client (`openssl s_client`, curl, Python
//! `websockets`), with certificates made at startup or loaded from files.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use crate::util::{
    Server, assert_one_line_error, curl, make_certificate, repo_file, run, run_switchboard,
    scratch_dir, stdout, tool, wait_with_deadline,
};

/// How long a line from the server may take.
const LINE_DEADLINE: Duration = Duration::from_secs(10);

/// A line client over TLS: `openssl s_client`, which is `nc` for TLS.
pub(crate) struct TlsLineClient {
    child: Child,
    input: ChildStdin,
    lines: Receiver<String>,
}

impl TlsLineClient {
    /// Connects to the server (without verifying its certificate).
    pub(crate) fn connect(server: &Server) -> Self {
        let mut child = s_client(server, Stdio::null());
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in output.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            input,
            lines,
        }
    }

    /// Sends one line.
    pub(crate) fn send(&mut self, line: &str) {
        writeln!(self.input, "{line}").expect("write to openssl");
    }

    /// The next line from the server.
    pub(crate) fn line(&mut self) -> String {
        self.lines
            .recv_timeout(LINE_DEADLINE)
            .expect("a line from the server in time")
    }

    /// Asserts the next line is `expected`.
    pub(crate) fn expect(&mut self, expected: &str) {
        assert_eq!(self.line(), expected);
    }
}

impl Drop for TlsLineClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_client` connected to `server` (its certificate not verified),
/// with piped input and output and its diagnostics to `stderr`.
fn s_client(server: &Server, stderr: Stdio) -> Child {
    tool("openssl")
        .args(["s_client", "-quiet", "-connect", &server.local()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("openssl s_client starts")
}

#[test]
fn line_http_and_websocket_clients_meet_over_tls_on_one_port() {
    let server = Server::start(&["serve", "--tls-self-signed", "--token", "t0k"]);
    let https = |path: &str| format!("https://{}{path}", server.local());

    let mut nc = TlsLineClient::connect(&server);
    nc.expect("* this server needs a token: send /auth TOKEN");
    nc.send("/auth t0k");
    let welcome = nc.lines.recv_timeout(LINE_DEADLINE).expect("welcome");
    assert!(welcome.starts_with("* welcome guest-"), "{welcome}");
    nc.lines.recv_timeout(LINE_DEADLINE).expect("joined #lobby");
    nc.send("/nick tls-nc");
    nc.expect("* you are now known as tls-nc");

    let mut python = tool("python3");
    python
        .arg(repo_file("tests/python/ws_chat_client.py"))
        .args([
            &format!("wss://{}/ws?nick=py&room=lobby&token=t0k", server.local()),
            "curl",
            "hello from python",
            "3",
        ]);
    let python = thread::spawn(move || run(python, b""));
    nc.expect("* py joined #lobby");

    nc.send("hello over tls");
    nc.expect("[#lobby] tls-nc: hello over tls");
    let (status, body) = curl(&[
        "-k",
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer t0k",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"from":"curl","text":"hello from curl"}"#,
        &https("/api/rooms/lobby/messages"),
    ]);
    assert_eq!(status, 201, "{body}");
    nc.expect("[#lobby] curl: hello from curl");
    nc.expect("[#lobby] py: hello from python");
    let python = python.join().unwrap();
    assert!(python.status.success(), "{python:?}");
    assert_eq!(
        stdout(&python).lines().collect::<Vec<_>>(),
        [
            "tls-nc: hello over tls",
            "curl: hello from curl",
            "py: hello from python"
        ]
    );

    // Plain clients are still served on the same port.
    assert_eq!(curl(&[&server.url("/healthz")]), (200, "ok\n".into()));
    assert_eq!(curl(&["-k", &https("/healthz")]), (200, "ok\n".into()));

    // The diary tells the transports apart, TLS included.
    let (status, diary) = curl(&[
        "-k",
        "-H",
        "Authorization: Bearer t0k",
        &https("/api/connections"),
    ]);
    assert_eq!(status, 200, "{diary}");
    let diary: serde_json::Value = serde_json::from_str(&diary).unwrap();
    let transport_of = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
        diary
            .as_array()
            .unwrap()
            .iter()
            .find(|e| wanted(e))
            .map(|e| e["transport"].clone())
    };
    assert_eq!(
        transport_of(&|e| e["nick"] == "tls-nc"),
        Some("tls".into()),
        "{diary}"
    );
    assert_eq!(
        transport_of(&|e| e["request"] == "GET /api/connections"),
        Some("https".into()),
        "{diary}"
    );
}

#[test]
fn a_broken_handshake_is_dropped_and_harms_nobody() {
    let server = Server::start(&["serve", "--tls-self-signed"]);
    let mut broken = server.connect();
    // A TLS record header, then bytes that are no ClientHello.
    broken
        .write_all(b"\x16\x03\x01\x00\x05hello, not a handshake")
        .unwrap();
    let mut rest = Vec::new();
    if let Err(err) = std::io::Read::read_to_end(&mut broken, &mut rest) {
        let waited = matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
        assert!(!waited, "the server hangs up instead of waiting: {err}");
    }
    assert!(
        !String::from_utf8_lossy(&rest).contains("welcome"),
        "no chat for a broken handshake: {rest:?}"
    );
    let https = format!("https://{}/healthz", server.local());
    assert_eq!(curl(&["-k", &https]), (200, "ok\n".into()));
}

#[test]
fn a_websocket_over_tls_ends_with_close_notify() {
    let server = Server::start(&["serve", "--tls-self-signed"]);
    let mut client = s_client(&server, Stdio::piped());
    // The upgrade, then a masked close frame (1000); stdin stays open so that
    // only the server's end of the session ends the client.
    let mut input = client.stdin.take().expect("stdin");
    input
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
              \x88\x82\x01\x02\x03\x04\x02\xea",
        )
        .expect("write to openssl");
    wait_with_deadline(&mut client, LINE_DEADLINE);
    drop(input);
    let (mut received, mut errors) = (Vec::new(), String::new());
    let mut stdout = client.stdout.take().expect("stdout");
    let mut stderr = client.stderr.take().expect("stderr");
    stdout.read_to_end(&mut received).expect("read stdout");
    stderr.read_to_string(&mut errors).expect("read stderr");
    let head = String::from_utf8_lossy(&received);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !errors.contains("unexpected eof"),
        "the server ended TLS without close_notify: {errors}"
    );
}

#[test]
fn a_certificate_from_files_verifies_with_curl() {
    let dir = scratch_dir("files");
    let (cert, key) = make_certificate(&dir, "server", &[]);
    let server = Server::start(&["serve", "--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://127.0.0.1:{}/healthz", server.port);
    assert_eq!(curl(&["--cacert", &cert, &url]), (200, "ok\n".into()));
    let (status, _) = curl(&[&url]);
    assert_eq!(status, 0, "an unknown certificate is refused by default");
}

#[test]
fn unreadable_or_mismatched_certificates_are_clear_errors() {
    let dir = scratch_dir("errors");
    let (cert, _) = make_certificate(&dir, "one", &[]);
    let (_, other_key) = make_certificate(&dir, "two", &[]);
    let missing = dir.join("missing.pem").display().to_string();
    let cases = [
        (
            &missing,
            &other_key,
            format!("could not read TLS certificate {missing}: no such file or directory"),
        ),
        (&cert, &cert, "could not read TLS key".to_string()),
        (
            &cert,
            &other_key,
            "could not use the TLS certificate and key".to_string(),
        ),
    ];
    for (cert, key, expected) in cases {
        let args = ["serve", "--port", "0", "--tls-cert", cert, "--tls-key", key];
        assert_one_line_error(&run_switchboard(&args, b""), &expected);
    }
}
