//! The browser page (`GET /`) in a real headless Chromium: two tabs and an
//! `nc` client in one room (tests/node/page-test.mjs drives the browser), on
//! a server that asks for a token: the page passes on the one in its URL.

use std::thread;

use crate::util::{LineClient, Server, repo_file, run, stdout, tool};

#[test]
fn two_browser_tabs_and_nc_chat_and_a_dropped_tab_recovers() {
    let server = Server::start(&["serve", "--token", "page-token"]);
    let mut nc = LineClient::connected(&server);
    nc.expect("* this server needs a token: send /auth TOKEN");
    nc.send("/auth page-token");
    nc.read_greeting();
    nc.send("/nick nc");
    nc.expect("* you are now known as nc");
    nc.nick = "nc".into();
    let screenshot = repo_file("target/screenshots/chat-page.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&screenshot);

    let mut node = tool("node");
    node.arg(repo_file("tests/node/page-test.mjs"))
        .arg(server.port.to_string())
        .arg(&screenshot)
        .arg("page-token");
    let browser = thread::spawn(move || run(node, b""));

    nc.expect_past_notices("[#lobby] alice: hello from alice");
    nc.send("hello from nc");
    nc.expect("[#lobby] nc: hello from nc");
    nc.expect_past_notices("[#lobby] bob: <img src=x onerror=alert(1)>");
    nc.expect_past_notices("[#lobby] poster: while you were away");
    nc.expect_past_notices("[#lobby] alice: after the reconnect");

    let output = browser.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "page: ok\n");
    let png = std::fs::read(&screenshot).expect("screenshot saved");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
}
