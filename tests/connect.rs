//! `switchboard connect` over TCP: netcat in a pipe.

use crate::util::{Server, run_switchboard, stdout};

#[test]
fn piped_lines_go_out_and_replies_print_until_the_server_closes() {
    let server = Server::start(&["echo", "--lines"]);
    let output = run_switchboard(&["connect", &server.local()], b"hi\nthere\n");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "Echo: hi\nEcho: there\n");
}

#[test]
fn output_after_stdin_ends_is_still_printed() {
    // An unterminated last line is only answered once we half-close.
    let server = Server::start(&["echo", "--lines", "--prefix", "< "]);
    let output = run_switchboard(&["connect", &server.local()], b"no newline");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "< no newline");
}
