//! `switchboard connect wss://…` against servers whose certificate is not in
//! the built-in roots: `--insecure` (`-k`) and `--cacert FILE`, with
//! certificates made by `serve --tls-self-signed` or by openssl.

use std::process::Output;

use serde_json::Value;

use crate::util::{
    Server, assert_one_line_error, closed_port, make_certificate, run_switchboard, scratch_dir,
    stderr, stdout,
};

/// What the user says once connected.
const SAY: &[u8] = b"{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"hello over wss\"}\n";

/// The hub's `/ws` on loopback as `alice`, over TLS.
fn wss_url(server: &Server) -> String {
    format!("wss://127.0.0.1:{}/ws?nick=alice", server.port)
}

/// Runs `connect URL FLAGS` with [`SAY`] on stdin.
fn connect(url: &str, flags: &[&str]) -> Output {
    let mut args = vec!["connect", url];
    args.extend_from_slice(flags);
    run_switchboard(&args, SAY)
}

/// Asserts the session worked: a welcome first, then alice's message back.
fn assert_said_hello(output: &Output) {
    assert!(output.status.success(), "{output:?}");
    let events: Vec<Value> = stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    assert_eq!(events.first().map(|e| &e["type"]), Some(&"welcome".into()));
    let said = events.iter().any(|event| {
        event["type"] == "message"
            && event["room"] == "lobby"
            && event["from"] == "alice"
            && event["text"] == "hello over wss"
    });
    assert!(said, "alice's message is not among {events:?}");
}

#[test]
fn insecure_talks_to_a_self_signed_server() {
    let server = Server::start(&["serve", "--tls-self-signed", "--memory"]);
    for flag in ["--insecure", "-k"] {
        let output = connect(&wss_url(&server), &[flag]);
        assert_said_hello(&output);
        assert_eq!(stderr(&output), "", "{flag} works silently");
    }
}

#[test]
fn a_self_signed_server_is_refused_without_insecure() {
    let server = Server::start(&["serve", "--tls-self-signed", "--memory"]);
    let url = wss_url(&server);
    assert_one_line_error(
        &connect(&url, &[]),
        &format!(
            "could not connect to {url}: the server's certificate is not trusted: \
             it is not issued by a trusted authority"
        ),
    );
}

#[test]
fn cacert_trusts_a_server_certificate_its_ca_issued() {
    let dir = scratch_dir("connect-ca");
    let (ca, ca_key) = make_certificate(&dir, "ca", &["-subj", "/CN=switchboard test CA"]);
    let (cert, key) = make_certificate(
        &dir,
        "server",
        &[
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    let (other_ca, _) = make_certificate(&dir, "other-ca", &["-subj", "/CN=another CA"]);
    let server = Server::start(&["serve", "--tls-cert", &cert, "--tls-key", &key, "--memory"]);
    let url = wss_url(&server);

    assert_said_hello(&connect(&url, &["--cacert", &ca]));
    for refused in [vec![], vec!["--cacert", other_ca.as_str()]] {
        assert_one_line_error(
            &connect(&url, &refused),
            "the server's certificate is not trusted: it is not issued by a trusted authority",
        );
    }
}

#[test]
fn cacert_trusts_a_self_signed_server_certificate() {
    let dir = scratch_dir("connect-self-signed");
    let (cert, key) = make_certificate(
        &dir,
        "server",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    );
    let server = Server::start(&["serve", "--tls-cert", &cert, "--tls-key", &key, "--memory"]);
    assert_said_hello(&connect(&wss_url(&server), &["--cacert", &cert]));
}

#[test]
fn a_ca_certificate_as_the_server_certificate_is_a_clear_error() {
    // What `openssl req -x509` makes by default: curl accepts it, rustls does not.
    let dir = scratch_dir("connect-ca-as-server");
    let (cert, key) = make_certificate(&dir, "server", &[]);
    let server = Server::start(&["serve", "--tls-cert", &cert, "--tls-key", &key, "--memory"]);
    assert_one_line_error(
        &connect(&wss_url(&server), &["--cacert", &cert]),
        "the server's certificate is not trusted: it is marked as a CA (CA:TRUE",
    );
}

#[test]
fn an_unusable_cacert_is_one_error_line_naming_the_file() {
    let dir = scratch_dir("connect-bad-cacert");
    let (_, key) = make_certificate(&dir, "server", &[]);
    let garbage = dir.join("garbage.pem").display().to_string();
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write garbage.pem");
    // Nothing listens: the file is read, and refused, before connecting.
    let url = format!("wss://127.0.0.1:{}/ws", closed_port());
    for (file, expected) in [
        (
            "/nonexistent".to_string(),
            "could not read CA certificate /nonexistent: no such file or directory".to_string(),
        ),
        (
            key.clone(),
            format!("could not read CA certificate {key}: no certificate in the file"),
        ),
        (
            garbage.clone(),
            format!("could not use CA certificate {garbage}: "),
        ),
    ] {
        assert_one_line_error(&connect(&url, &["--cacert", &file]), &expected);
    }
    assert_one_line_error(
        &connect(&url, &["--cacert", &garbage, "--insecure"]),
        "'--cacert <FILE>' cannot be used with '--insecure'",
    );
}

#[test]
fn tls_flags_without_tls_are_ignored_with_a_warning() {
    let tcp = Server::start(&["echo", "--lines"]);
    let output = run_switchboard(&["connect", &tcp.local(), "--insecure"], b"hi\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "Echo: hi\n");
    assert!(
        stderr(&output).contains("WARN --insecure is ignored: only wss:// URLs use TLS"),
        "{output:?}"
    );

    let ws = Server::start(&["echo", "--ws"]);
    let url = format!("ws://{}/", ws.local());
    let output = run_switchboard(&["connect", &url, "--cacert", "/nonexistent"], b"hi\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "hi\n");
    assert!(
        stderr(&output).contains("WARN --cacert is ignored: only wss:// URLs use TLS"),
        "{output:?}"
    );
}
