//! Bounds on what a peer can grow (docs/PROTOCOL.md 5.5) and what a TLS
//! client is told by a port without TLS: a ClientHello is answered with an
//! alert (5).

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::util::{Server, curl, run, stderr, tool};

#[test]
fn a_client_hello_on_a_port_without_tls_gets_a_fatal_alert() {
    let server = Server::start(&["serve", "--memory"]);
    let url = format!("https://127.0.0.1:{}/healthz", server.port);
    let mut command = tool("curl");
    command.args(["-sS", "--max-time", "10", &url]);
    let output = run(command, b"");
    let said = stderr(&output);
    // curl's exit code 35: the TLS handshake failed (not 7, not 56: no reset).
    assert_eq!(output.status.code(), Some(35), "{said}");
    assert!(said.contains("alert handshake failure"), "{said}");

    let mut s_client = tool("openssl");
    s_client.args(["s_client", "-connect", &server.local()]);
    let output = run(s_client, b"");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("alert handshake failure"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        curl(&[&server.url("/healthz")]),
        (200, "ok\n".into()),
        "plain HTTP is still served"
    );
}

#[test]
fn the_alert_is_the_whole_answer_to_a_client_hello() {
    let server = Server::start(&["serve", "--memory"]);
    let mut stream: TcpStream = server.connect();
    stream
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0])
        .unwrap();
    let mut alert = Vec::new();
    stream.read_to_end(&mut alert).expect("the server closes");
    assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
}
