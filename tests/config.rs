//! `serve --config FILE`, `SWITCHBOARD_*` variables, `--print-config`, and
//! the reload on SIGHUP (docs/PROTOCOL.md 5.5, Configuration and Reloading):
//! the real binary, real files, real signals, clients on loopback.

use std::io::Read;
use std::path::Path;
use std::process::Output;

use crate::chat_tls::TlsLineClient;
use crate::util::{
    LineClient, Server, assert_one_line_error, curl, make_certificate, run, scratch_dir, signal,
    stdout, switchboard,
};

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the file");
    path.display().to_string()
}

/// `switchboard serve ARGS --print-config` with the variables `env`.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = switchboard();
    command.arg("serve").args(args).arg("--print-config");
    command.envs(env.iter().copied());
    run(command, b"")
}

/// The value of `key` in printed TOML, as printed.
fn printed<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    toml.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(" = "))
}

/// The status of `GET /healthz` over TLS, trusting only `ca`.
fn healthz_trusting(server: &Server, ca: &str) -> u16 {
    let url = format!("https://127.0.0.1:{}/healthz", server.port);
    curl(&["--cacert", ca, &url]).0
}

#[test]
fn a_file_sets_the_address_and_a_limit() {
    let dir = scratch_dir("config-file");
    let file = write(
        &dir,
        "switchboard.toml",
        "listen = \"127.0.0.1:0\"\nmax-connections = 1\nmemory = true\n",
    );
    let mut command = switchboard();
    command.args(["serve", "--config", &file]);
    let server = Server::spawn(command);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    let _first = LineClient::greeted(&server);
    let mut refusal = String::new();
    server.connect().read_to_string(&mut refusal).unwrap();
    assert_eq!(refusal, "! server full (1 connections): try later\n");
}

#[test]
fn variables_override_the_file_and_flags_override_both() {
    let dir = scratch_dir("config-layers");
    let file = write(&dir, "layers.toml", "max-line = 100\nrate = 5\n");
    let from_file = print_config(&["--config", &file], &[]);
    assert!(from_file.status.success(), "{from_file:?}");
    let text = stdout(&from_file);
    assert_eq!(printed(&text, "max-line"), Some("100"), "{text}");
    assert_eq!(printed(&text, "rate"), Some("5.0"), "{text}");

    let variable = [("SWITCHBOARD_MAX_LINE", "300")];
    let text = stdout(&print_config(&["--config", &file], &variable));
    assert_eq!(printed(&text, "max-line"), Some("300"), "{text}");
    assert_eq!(printed(&text, "rate"), Some("5.0"), "{text}");

    let flag = ["--config", file.as_str(), "--max-line", "200"];
    let text = stdout(&print_config(&flag, &variable));
    assert_eq!(printed(&text, "max-line"), Some("200"), "{text}");

    let file_by_variable = [("SWITCHBOARD_CONFIG", file.as_str())];
    let text = stdout(&print_config(&[], &file_by_variable));
    assert_eq!(printed(&text, "max-line"), Some("100"), "{text}");
}

#[test]
fn print_config_reads_back_unchanged_and_binds_nothing() {
    let busy = Server::start(&["serve", "--memory"]);
    let taken = busy.local();
    let flags = [
        "--listen",
        taken.as_str(),
        "--memory",
        "--rate",
        "2.5",
        "--keep-days",
        "7.5",
        "--sync",
        "full",
        "--token",
        "s3cret",
        "--tls-self-signed",
    ];
    let first = print_config(&flags, &[]);
    assert!(first.status.success(), "{first:?}");
    let first = stdout(&first);
    assert_eq!(printed(&first, "keep-days"), Some("7.5"), "{first}");
    assert_eq!(printed(&first, "sync"), Some("\"full\""), "{first}");
    assert_eq!(printed(&first, "memory"), Some("true"), "{first}");

    let dir = scratch_dir("config-round-trip");
    let file = write(&dir, "printed.toml", &first);
    let second = print_config(&["--config", &file], &[]);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(stdout(&second), first);
}

#[test]
fn bad_files_are_one_line_errors_naming_the_file_and_the_key() {
    let dir = scratch_dir("config-errors");
    let unknown = write(&dir, "unknown.toml", "rate = 5\ncolour = \"blue\"\n");
    let bad_value = write(&dir, "bad.toml", "max-connections = \"lots\"\n");
    let bad_kind = write(&dir, "kind.toml", "memory = 1\n");
    let not_toml = write(&dir, "broken.toml", "rate = \n");
    let memory = write(&dir, "memory.toml", "memory = true\n");
    let missing = dir.join("missing.toml").display().to_string();
    let cases = [
        (
            &unknown,
            vec![],
            format!("{unknown}: line 2: unknown key `colour`"),
        ),
        (
            &bad_value,
            vec![],
            format!("{bad_value}: line 1: max-connections: invalid value 'lots'"),
        ),
        (
            &bad_kind,
            vec![],
            format!("{bad_kind}: line 1: memory: give true or false"),
        ),
        (&not_toml, vec![], format!("{not_toml}: line 1:")),
        (
            &missing,
            vec![],
            format!("cannot read config {missing}: no such file or directory"),
        ),
        (
            &memory,
            vec!["--data", "elsewhere"],
            "cannot be used with".into(),
        ),
    ];
    for (file, extra, expected) in cases {
        let mut args = vec!["serve", "--config", file.as_str()];
        args.extend(extra);
        let mut command = switchboard();
        command.args(&args);
        assert_one_line_error(&run(command, b""), &expected);
    }
}

#[test]
fn sighup_brings_a_new_certificate_and_keeps_tls_clients() {
    let dir = scratch_dir("reload-certificate");
    let (old_cert, old_key) = make_certificate(&dir, "old", &[]);
    let (new_cert, new_key) = make_certificate(&dir, "new", &[]);
    let (cert, key) = (dir.join("live.pem"), dir.join("live-key.pem"));
    std::fs::copy(&old_cert, &cert).unwrap();
    std::fs::copy(&old_key, &key).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let server = Server::start(&["serve", "--tls-cert", &cert, "--tls-key", &key]);
    let mut before = TlsLineClient::connect(&server);
    let welcome = before.line();
    assert!(welcome.starts_with("* welcome guest-"), "{welcome}");
    assert_eq!(healthz_trusting(&server, &old_cert), 200);

    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log(&format!("reloaded: TLS certificate {cert}"));

    assert_eq!(healthz_trusting(&server, &new_cert), 200);
    assert_eq!(
        healthz_trusting(&server, &old_cert),
        0,
        "the old one is gone"
    );
    before.send("/nick stayed");
    before.line();
    before.expect("* you are now known as stayed");
    let mut plain = LineClient::named(&server, "plain");
    plain.send("still there?");
    let mut line = before.line();
    while line.starts_with("* ") {
        line = before.line();
    }
    assert_eq!(line, "[#lobby] plain: still there?");
}

#[test]
fn sighup_refuses_a_broken_pair_and_keeps_the_old_one() {
    let dir = scratch_dir("reload-broken");
    let (old_cert, old_key) = make_certificate(&dir, "old", &[]);
    let (_, other_key) = make_certificate(&dir, "other", &[]);
    let key = dir.join("live-key.pem");
    std::fs::copy(&old_key, &key).unwrap();
    let key = key.display().to_string();
    let server = Server::start(&["serve", "--tls-cert", &old_cert, "--tls-key", &key]);

    std::fs::copy(&other_key, &key).unwrap();
    signal(server.pid(), libc::SIGHUP);
    let refused = server.wait_for_log("reload: TLS certificate refused, the old one stays");
    assert!(
        refused.contains("could not use the TLS certificate and key"),
        "{refused}"
    );
    assert_eq!(healthz_trusting(&server, &old_cert), 200);

    std::fs::remove_file(&key).unwrap();
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log(&format!("could not read TLS key {key}"));
    assert_eq!(healthz_trusting(&server, &old_cert), 200);
}

#[test]
fn sighup_changes_the_token_and_keeps_who_is_in() {
    let dir = scratch_dir("reload-token");
    let file = write(&dir, "token.toml", "token = \"old\"\nmax-connections = 3\n");
    let server = Server::start(&["serve", "--config", &file]);
    let mut inside = LineClient::connected(&server);
    inside.expect("* this server needs a token: send /auth TOKEN");
    inside.send("/auth old");
    inside.read_greeting();
    inside.line();

    write(
        &dir,
        "token.toml",
        "token = \"new\"\nmax-connections = 4\npresence-limit = 5\n",
    );
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log("reloaded: client token changed");
    server.wait_for_log("reloaded: --max-connections 3 → 4");
    server.wait_for_log(&format!(
        "reload: --presence-limit changed in {file}, restart to apply"
    ));

    let rooms = server.url("/api/rooms");
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    assert_eq!(curl(&["-H", &bearer("old"), &rooms]).0, 401);
    assert_eq!(curl(&["-H", &bearer("new"), &rooms]).0, 200);
    inside.send("/nick kept");
    inside.expect("* you are now known as kept");

    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log("reload: nothing changed");
}

#[test]
fn sighup_with_a_bad_file_changes_nothing() {
    let dir = scratch_dir("reload-bad");
    let file = write(&dir, "limits.toml", "max-connections = 1\n");
    let server = Server::start(&["serve", "--config", &file]);
    let _first = LineClient::greeted(&server);
    write(&dir, "limits.toml", "max-connections = 0\n");
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log(
        "reload refused, nothing changed: --burst, --queue, --max-connections and --max-rooms must be positive",
    );
    let mut refusal = String::new();
    server.connect().read_to_string(&mut refusal).unwrap();
    assert_eq!(refusal, "! server full (1 connections): try later\n");

    write(&dir, "limits.toml", "max-connections = 2\n");
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log("reloaded: --max-connections 1 → 2");
    let _second = LineClient::greeted(&server);
}

#[test]
fn sighup_changes_the_per_address_limits() {
    let dir = scratch_dir("reload-per-address");
    let file = write(
        &dir,
        "limits.toml",
        "trust = \"none\"\nmax-per-address = 1\n",
    );
    let server = Server::start(&["serve", "--config", &file]);
    let _first = LineClient::greeted(&server);
    let mut refusal = String::new();
    server.connect().read_to_string(&mut refusal).unwrap();
    assert_eq!(
        refusal,
        "! too many connections from your address (1): try later\n"
    );

    write(
        &dir,
        "limits.toml",
        "trust = \"none\"\nmax-per-address = 2\n",
    );
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log("reloaded: --max-per-address 1 → 2");
    let _second = LineClient::greeted(&server);
}

/// Posts `text` to `#lobby` over the HTTP API: the status.
fn post_to_lobby(server: &Server, text: &str) -> u16 {
    let body = format!(r#"{{"from":"api","text":"{text}"}}"#);
    let url = server.url("/api/rooms/lobby/messages");
    let headers = "content-type: application/json";
    curl(&["-X", "POST", "-H", headers, "-d", &body, &url]).0
}

#[test]
fn sighup_changes_the_post_limits() {
    let dir = scratch_dir("reload-posts");
    let file = write(&dir, "posts.toml", "rate = 0.01\nburst = 1\n");
    let server = Server::start(&["serve", "--config", &file]);
    assert_eq!(post_to_lobby(&server, "first"), 201);
    assert_eq!(post_to_lobby(&server, "second"), 429, "over the burst");

    write(&dir, "posts.toml", "rate = 0.01\nburst = 3\n");
    signal(server.pid(), libc::SIGHUP);
    server.wait_for_log("reloaded: --burst 1 → 3");
    let statuses: Vec<u16> = ["a", "b", "c", "d"]
        .iter()
        .map(|text| post_to_lobby(&server, text))
        .collect();
    assert_eq!(statuses, [201, 201, 201, 429], "the new burst, from afresh");
}
