//! `switchboard echo --udp`: one reply datagram per datagram.

use std::net::UdpSocket;
use std::time::Duration;

use crate::util::{Server, run_switchboard, stdout};

/// A UDP socket connected to the server, with a receive deadline.
fn udp_client(server: &Server, host: &str) -> UdpSocket {
    let local = if host.contains(':') {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.connect((host, server.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
}

#[test]
fn each_datagram_gets_one_prefixed_reply_over_ipv4_and_ipv6() {
    let server = Server::start(&["echo", "--udp"]);
    assert!(server.addr.starts_with("[::]:"), "{}", server.addr);
    for host in ["127.0.0.1", "::1"] {
        let socket = udp_client(&server, host);
        let mut reply = [0; 64];
        for message in ["ping", "pong"] {
            socket.send(message.as_bytes()).unwrap();
            let len = socket.recv(&mut reply).unwrap();
            assert_eq!(
                &reply[..len],
                format!("Echo: {message}").as_bytes(),
                "over {host}"
            );
        }
    }
}

#[test]
fn line_mode_prefixes_every_line_of_a_datagram() {
    let server = Server::start(&["echo", "--udp", "--lines", "--prefix", "> "]);
    let socket = udp_client(&server, "127.0.0.1");
    socket.send(b"a\nb").unwrap();
    let mut reply = [0; 64];
    let len = socket.recv(&mut reply).unwrap();
    assert_eq!(&reply[..len], b"> a\n> b");
}

#[test]
fn send_udp_prints_the_reply() {
    let server = Server::start(&["echo", "--udp"]);
    let output = run_switchboard(&["send", "--udp", &server.local(), "datagram"], b"");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "Echo: datagram\n");
}
