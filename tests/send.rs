//! `switchboard send`: one message, the first reply, against switchboard and
//! against the Node tutorial's server.

use crate::util::{Server, repo_file, run_switchboard, stdout, tool};

#[test]
fn send_against_the_node_tutorial_server() {
    let mut node = tool("node");
    node.arg(repo_file("tests/node/tutorial-server.mjs"))
        .arg("0");
    let server = Server::spawn(node);
    let output = run_switchboard(&["send", &server.local(), "Hello from client!"], b"");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "Echo: Hello from client!\n");
}

#[test]
fn send_reads_the_message_from_stdin_when_none_is_given() {
    let server = Server::start(&["echo"]);
    let output = run_switchboard(&["send", &format!("localhost:{}", server.port)], b"piped\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "Echo: piped\n");
}

#[test]
fn send_accepts_ipv6_and_bare_port_addresses() {
    let server = Server::start(&["echo"]);
    for addr in [format!("[::1]:{}", server.port), server.port.to_string()] {
        let output = run_switchboard(&["send", &addr, "x"], b"");
        assert_eq!(stdout(&output), "Echo: x\n", "to {addr}");
    }
}
