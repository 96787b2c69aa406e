//! The browser pages in a real headless Chromium, driven by
//! tests/node/page-test.mjs: the chat page (`GET /`) with two browsers and real
//! `nc` clients in two rooms, direct messages, history, slash commands, a
//! dropped connection, both layouts and dark mode; and the diary page
//! (`GET /diary`) as `nc` and curl come and go. The server asks for a token,
//! which each page takes from its own address.

use std::process::Stdio;
use std::time::Duration;

use crate::util::{Server, curl, repo_file, tool, wait_with_deadline};

/// How long the whole browser session may take.
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);

/// The screenshots the browser test saves, under `target/screenshots/`.
const SCREENSHOTS: [&str; 4] = [
    "chat-1280.png",
    "chat-390.png",
    "chat-dark.png",
    "diary.png",
];

#[test]
fn people_chat_in_the_browser_with_nc_and_the_diary_shows_them_come_and_go() {
    // The script seeds a room with 120 posts from one address at once: a
    // burst over the default 50 that posts are held to per address.
    let server = Server::start(&[
        "serve",
        "--memory",
        "--burst",
        "200",
        "--token",
        "page-token",
        "--admin-token",
        "diary-token",
    ]);
    let shots = repo_file("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(shots.join(name));
    }

    let mut node = tool("node");
    node.arg(repo_file("tests/node/page-test.mjs"))
        .arg(server.port.to_string())
        .arg(&shots)
        .args(["page-token", "diary-token"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut browser = node.spawn().expect("node starts");
    let mut out = browser.stdout.take().expect("stdout piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).map(|_| text)
    });
    let status = wait_with_deadline(&mut browser, BROWSER_DEADLINE);
    let printed = reader.join().unwrap().unwrap();
    assert!(status.success(), "the browser test failed: {printed}");
    assert_eq!(printed, "page: ok\n");
    for name in SCREENSHOTS {
        let png = std::fs::read(shots.join(name)).expect("screenshot saved");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
}

#[test]
fn the_pages_put_peer_text_in_as_text_only() {
    let server = Server::start(&["serve", "--memory"]);
    for path in ["/", "/diary"] {
        let (status, page) = curl(&[&server.url(path)]);
        assert_eq!(status, 200);
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!page.contains(sink), "{path} uses {sink}");
        }
        assert!(page.contains("textContent"), "{path}");
    }
}
