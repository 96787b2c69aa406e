//! The line protocol of `nc` users (docs/PROTOCOL.md 5.1): parsing a typed line into a
//! request, and writing events as the lines people read.
//!
//! What the server writes, one per line: `[#room] nick: text` (a message),
//! `[dm] nick: text` (a direct message to you), `* …` (a notice) and `! …` (an
//! error about your last line). Control characters in peers' text are shown
//! as `�` so nobody can forge lines or drive another user's terminal.

use std::fmt::Write;

use bytes::Bytes;

use crate::hub::event::{ErrorCode, Event};
use crate::hub::session::{Command, Request};
use crate::protocol::Input;

/// The `/help` text.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME        change your nick",
    "  /join ROOM        join a room (and talk there)",
    "  /part [ROOM]      leave a room",
    "  /rooms            list the rooms",
    "  /who [ROOM]       list who is in a room",
    "  /msg NICK TEXT    send a direct message",
    "  /history [N]      show the last N messages of the room",
    "  /json             switch to the JSON protocol",
    "  /quit             leave",
    "any other line is said in the current room (start it with // to say a /)",
];

/// Parses one line (without its newline).
///
/// # Errors
/// The error event to send back: an unknown command or missing arguments.
pub fn parse(line: &str) -> Result<Input, Event> {
    let say = |text: &str| {
        Input::Request(Request {
            command: Command::Say {
                room: None,
                text: text.to_string(),
            },
            reference: None,
        })
    };
    if line.is_empty() {
        return Ok(Input::Nothing);
    }
    let Some(command_line) = line.strip_prefix('/') else {
        return Ok(say(line));
    };
    if command_line.starts_with('/') {
        return Ok(say(command_line));
    }
    let (word, rest) = command_line
        .split_once(' ')
        .map_or((command_line, ""), |(w, r)| (w, r.trim()));
    let request = |command| {
        Ok(Input::Request(Request {
            command,
            reference: None,
        }))
    };
    let optional = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
    match word.to_ascii_lowercase().as_str() {
        "nick" if !rest.is_empty() => request(Command::Nick(rest.to_string())),
        "join" if !rest.is_empty() => request(Command::Join {
            room: rest.to_string(),
            since: None,
        }),
        "part" | "leave" => request(Command::Part(optional(rest))),
        "rooms" | "list" => request(Command::Rooms),
        "who" | "names" => request(Command::Who(optional(rest))),
        "msg" | "dm" => match rest.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => request(Command::Dm {
                to: to.to_string(),
                text: text.trim_start().to_string(),
            }),
            _ => Err(usage("/msg NICK TEXT")),
        },
        "history" => match rest {
            "" => request(Command::History {
                room: None,
                since: None,
                limit: Some(20),
            }),
            count => match count.parse::<usize>() {
                Ok(limit) if limit > 0 => request(Command::History {
                    room: None,
                    since: None,
                    limit: Some(limit),
                }),
                _ => Err(usage("/history [N] with N a positive number")),
            },
        },
        "json" => Ok(Input::SwitchToJson),
        "auth" if !rest.is_empty() => Ok(Input::Auth(rest.to_string())),
        "auth" => Err(usage("/auth TOKEN")),
        "quit" | "exit" => Ok(Input::Quit),
        "help" | "?" => Ok(Input::Help),
        "nick" => Err(usage("/nick NAME")),
        "join" => Err(usage("/join ROOM")),
        _ => Err(Event::error(
            ErrorCode::UnknownCommand,
            format!("unknown command /{word} - type /help"),
            None,
        )),
    }
}

/// The error for a command used wrongly.
fn usage(form: &str) -> Event {
    Event::error(ErrorCode::UnknownCommand, format!("usage: {form}"), None)
}

/// Writes `event` as the lines a line client reads (empty for events that
/// have no line form, such as the ack of a message, which is the message itself).
pub fn encode(event: &Event) -> Bytes {
    let mut out = String::new();
    match event {
        Event::Welcome { nick, fd } => {
            let _ = writeln!(out, "* welcome {nick} (fd {fd}) - type /help");
        }
        Event::Message(m) => {
            let _ = writeln!(out, "[{}] {}: {}", m.room, m.from, printable(&m.text));
        }
        Event::Dm(m) => {
            let _ = writeln!(out, "[dm] {}: {}", m.from, printable(&m.text));
        }
        Event::DmSent(m) => {
            let _ = writeln!(out, "* dm to {}: {}", m.to, printable(&m.text));
        }
        Event::Ack {
            nick: Some(nick), ..
        } => {
            let _ = writeln!(out, "* you are now known as {nick}");
        }
        Event::Ack { .. } => {}
        Event::Joined { room, nick, .. } => {
            let _ = writeln!(out, "* {nick} joined {room}");
        }
        Event::Parted { room, nick, .. } => {
            let _ = writeln!(out, "* {nick} left {room}");
        }
        Event::NickChanged { old, new } => {
            let _ = writeln!(out, "* {old} is now known as {new}");
        }
        Event::History { room, messages, .. } => {
            let count = messages.len();
            let noun = if count == 1 { "message" } else { "messages" };
            let _ = writeln!(out, "* history of {room}: {count} {noun}");
            for m in messages {
                let _ = writeln!(out, "[{}] {}: {}", m.room, m.from, printable(&m.text));
            }
        }
        Event::Who { room, nicks, .. } => {
            let names: Vec<&str> = nicks.iter().map(|n| n.as_str()).collect();
            let _ = match names.as_slice() {
                [] => writeln!(out, "* {room} (0): nobody"),
                _ => writeln!(out, "* {room} ({}): {}", names.len(), names.join(", ")),
            };
        }
        Event::Rooms(rooms) if rooms.is_empty() => out.push_str("* no rooms\n"),
        Event::Rooms(rooms) => {
            let list: Vec<String> = rooms
                .iter()
                .map(|(room, n)| format!("{room} ({n})"))
                .collect();
            let _ = writeln!(out, "* rooms: {}", list.join(", "));
        }
        Event::Notice(text) => {
            let _ = writeln!(out, "* {}", printable(text));
        }
        Event::Error { message, .. } => {
            let _ = writeln!(out, "! {}", printable(message));
        }
    }
    Bytes::from(out)
}

/// `text` with control characters (other than tab) shown as `�`.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::model::ChatMessage;
    use crate::model::names::{Nick, RoomName};
    use crate::protocol::arbitrary;

    fn command(line: &str) -> Command {
        match parse(line) {
            Ok(Input::Request(request)) => request.command,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn plain_lines_are_said_and_double_slash_escapes() {
        assert_eq!(
            command("hello"),
            Command::Say {
                room: None,
                text: "hello".into()
            }
        );
        assert_eq!(
            command("//me waves"),
            Command::Say {
                room: None,
                text: "/me waves".into()
            }
        );
        assert_eq!(parse(""), Ok(Input::Nothing));
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(command("/nick bob"), Command::Nick("bob".into()));
        assert_eq!(
            command("/JOIN #rust"),
            Command::Join {
                room: "#rust".into(),
                since: None
            }
        );
        assert_eq!(command("/part"), Command::Part(None));
        assert_eq!(command("/who #x"), Command::Who(Some("#x".into())));
        assert_eq!(
            command("/msg bob hi  there"),
            Command::Dm {
                to: "bob".into(),
                text: "hi  there".into()
            }
        );
        assert_eq!(
            command("/history 5"),
            Command::History {
                room: None,
                since: None,
                limit: Some(5)
            }
        );
        assert_eq!(parse("/json"), Ok(Input::SwitchToJson));
        assert_eq!(parse("/quit"), Ok(Input::Quit));
        assert_eq!(parse("/auth s3 cret"), Ok(Input::Auth("s3 cret".into())));
        assert!(parse("/auth").is_err());
    }

    #[test]
    fn unknown_commands_and_missing_arguments_are_errors() {
        for bad in [
            "/frobnicate",
            "/nick",
            "/join",
            "/msg bob",
            "/msg",
            "/history x",
            "/history 0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn events_read_as_the_spec_says() {
        let message = Arc::new(ChatMessage {
            room: RoomName::parse("lobby").unwrap(),
            id: 7,
            from: Nick::parse("alice").unwrap(),
            text: "hi\nforged".into(),
            ts: SystemTime::UNIX_EPOCH,
        });
        assert_eq!(
            encode(&Event::Message(message)),
            "[#lobby] alice: hi\u{fffd}forged\n"
        );
        let welcome = Event::Welcome {
            nick: Nick::parse("guest-1").unwrap(),
            fd: 9,
        };
        assert_eq!(encode(&welcome), "* welcome guest-1 (fd 9) - type /help\n");
        let error = Event::error(ErrorCode::NickTaken, "nick bob is taken", None);
        assert_eq!(encode(&error), "! nick bob is taken\n");
        let ack = Event::Ack {
            reference: None,
            id: Some(3),
            nick: None,
        };
        assert!(encode(&ack).is_empty());
    }

    #[test]
    fn history_and_who_read_as_english_with_one_or_none() {
        let room = RoomName::parse("lobby").unwrap();
        let message = Arc::new(ChatMessage {
            room: room.clone(),
            id: 1,
            from: Nick::parse("alice").unwrap(),
            text: "hi".into(),
            ts: SystemTime::UNIX_EPOCH,
        });
        let history = |messages| Event::History {
            room: room.clone(),
            messages,
            reference: None,
        };
        assert_eq!(
            encode(&history(vec![Arc::clone(&message)])),
            "* history of #lobby: 1 message\n[#lobby] alice: hi\n"
        );
        assert_eq!(
            encode(&history(Vec::new())),
            "* history of #lobby: 0 messages\n"
        );
        let who = |nicks| Event::Who {
            room: room.clone(),
            nicks,
            reference: None,
        };
        assert_eq!(encode(&who(Vec::new())), "* #lobby (0): nobody\n");
        let nicks = vec![Nick::parse("alice").unwrap(), Nick::parse("bob").unwrap()];
        assert_eq!(encode(&who(nicks)), "* #lobby (2): alice, bob\n");
    }

    /// `/word` in any mix of cases, one of `words` (a command and its aliases).
    fn word(words: &'static [&'static str]) -> impl Strategy<Value = String> {
        (select(words), proptest::collection::vec(any::<bool>(), 8)).prop_map(|(word, upper)| {
            let word = word.chars().zip(upper.into_iter().cycle());
            let typed: String = word
                .map(|(c, upper)| if upper { c.to_ascii_uppercase() } else { c })
                .collect();
            format!("/{typed}")
        })
    }

    /// An argument as parsed: not empty, no newline, no blanks around it.
    fn argument() -> impl Strategy<Value = String> {
        "[^\\s][^\\n]{0,20}".prop_map(|arg| arg.trim_end().to_string())
    }

    /// A space after the command word, then any blanks.
    fn gap() -> impl Strategy<Value = String> {
        "[ ][ \t]{0,2}"
    }

    /// Blanks at the end of a line with arguments.
    fn trail() -> impl Strategy<Value = String> {
        "[ \t]{0,2}"
    }

    /// A request without `ref`, as every line command is.
    fn request(command: Command) -> Input {
        Input::Request(Request {
            command,
            reference: None,
        })
    }

    /// `/word ARGUMENT` and the input `make` makes of the argument.
    fn with_argument(
        words: &'static [&'static str],
        make: fn(String) -> Input,
    ) -> impl Strategy<Value = (String, Input)> {
        (word(words), gap(), argument(), trail())
            .prop_map(move |(w, g, arg, t)| (format!("{w}{g}{arg}{t}"), make(arg)))
    }

    /// `/word` alone (maybe with spaces after it) and its input.
    fn alone(
        words: &'static [&'static str],
        input: Input,
    ) -> impl Strategy<Value = (String, Input)> {
        (word(words), "[ ]{0,2}").prop_map(move |(w, t)| (format!("{w}{t}"), input.clone()))
    }

    /// A line a user may type, and what it must parse as.
    fn typed() -> impl Strategy<Value = (String, Input)> {
        prop_oneof![
            with_argument(&["nick"], |nick| request(Command::Nick(nick))),
            with_argument(&["join"], |room| request(Command::Join {
                room,
                since: None
            })),
            with_argument(&["part", "leave"], |room| request(Command::Part(Some(
                room
            )))),
            alone(&["part", "leave"], request(Command::Part(None))),
            with_argument(&["who", "names"], |room| request(Command::Who(Some(room)))),
            alone(&["who", "names"], request(Command::Who(None))),
            alone(&["rooms", "list"], request(Command::Rooms)),
            (
                word(&["msg", "dm"]),
                gap(),
                "[^\\s]{1,10}",
                gap(),
                argument(),
                trail()
            )
                .prop_map(|(w, g, to, g2, text, t)| {
                    let line = format!("{w}{g}{to}{g2}{text}{t}");
                    (line, request(Command::Dm { to, text }))
                }),
            alone(
                &["history"],
                request(Command::History {
                    room: None,
                    since: None,
                    limit: Some(20)
                })
            ),
            (word(&["history"]), gap(), 1..=usize::MAX, trail()).prop_map(|(w, g, n, t)| {
                let history = Command::History {
                    room: None,
                    since: None,
                    limit: Some(n),
                };
                (format!("{w}{g}{n}{t}"), request(history))
            }),
            with_argument(&["auth"], Input::Auth),
            alone(&["json"], Input::SwitchToJson),
            alone(&["quit", "exit"], Input::Quit),
            alone(&["help", "?"], Input::Help),
            "[^\\n]{1,30}".prop_map(|text| {
                let line = if text.starts_with('/') {
                    format!("/{text}")
                } else {
                    text.clone()
                };
                (line, request(Command::Say { room: None, text }))
            }),
        ]
    }

    /// Whether `shown` is `text` with its control characters (but tab) as `�`.
    fn shown_as(shown: &str, text: &str) -> bool {
        shown.chars().count() == text.chars().count()
            && shown
                .chars()
                .zip(text.chars())
                .all(|(s, t)| s == t || (s == '\u{fffd}' && t.is_control() && t != '\t'))
    }

    proptest! {
        /// Any line: no panic; text not starting with `/` is said as it is,
        /// and a refusal is always `unknown_command` (there is no `ref`).
        #[test]
        fn any_line_is_an_input_or_an_unknown_command(line in arbitrary::text()) {
            match parse(&line) {
                Ok(Input::Request(Request { command: Command::Say { room: None, text }, .. }))
                    if !line.starts_with('/') => prop_assert_eq!(text, line),
                Ok(input) => prop_assert!(
                    line.starts_with('/') || (line.is_empty() && input == Input::Nothing),
                    "{:?} gave {:?}", line, input
                ),
                Err(error) => prop_assert!(
                    matches!(error, Event::Error { code: ErrorCode::UnknownCommand, reference: None, .. }),
                    "{:?}", error
                ),
            }
        }

        /// Every command typed as a person would (any case, blanks around
        /// the arguments, aliases, `//` to say a `/`) parses as meant. Not a
        /// round trip: a tab cannot end the command word, and the text of
        /// `/msg` loses blanks at both ends (a said line keeps them).
        #[test]
        fn commands_typed_parse_as_meant((line, input) in typed()) {
            prop_assert_eq!(parse(&line), Ok(input), "{:?}", line);
        }

        /// Any event: whole lines (as many as it has), each starting with
        /// its marker and free of control characters but tab, so no peer can
        /// forge a line or drive a terminal; a peer's text reads back as it
        /// was, with its control characters as `�`.
        #[test]
        fn events_are_lines_with_peer_text_made_printable(event in arbitrary::event()) {
            let bytes = encode(&event);
            let out = std::str::from_utf8(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Event::Ack { nick: None, .. } = event {
                prop_assert_eq!(out, "");
                return Ok(());
            }
            let lines: Vec<&str> = out
                .strip_suffix('\n')
                .ok_or_else(|| TestCaseError::fail(format!("no newline at the end: {out:?}")))?
                .split('\n')
                .collect();
            let expected = match &event {
                Event::History { messages, .. } => 1 + messages.len(),
                _ => 1,
            };
            prop_assert_eq!(lines.len(), expected, "{:?}", out);
            for line in &lines {
                prop_assert!(
                    ["[#", "[dm] ", "* ", "! "].iter().any(|marker| line.starts_with(marker)),
                    "{:?}", line
                );
                prop_assert!(!line.chars().any(|c| c.is_control() && c != '\t'), "{:?}", line);
            }
            let peer_text = |head: String, text: &str, line: &str| {
                let shown = line.strip_prefix(&head).is_some_and(|shown| shown_as(shown, text));
                prop_assert!(shown, "{:?} does not show {:?} after {:?}", line, text, head);
                Ok(())
            };
            match &event {
                Event::Message(m) => peer_text(format!("[{}] {}: ", m.room, m.from), &m.text, lines[0])?,
                Event::Dm(m) => peer_text(format!("[dm] {}: ", m.from), &m.text, lines[0])?,
                Event::DmSent(m) => peer_text(format!("* dm to {}: ", m.to), &m.text, lines[0])?,
                Event::Notice(text) => peer_text("* ".into(), text, lines[0])?,
                Event::Error { message, .. } => peer_text("! ".into(), message, lines[0])?,
                Event::History { messages, .. } => {
                    for (m, line) in messages.iter().zip(&lines[1..]) {
                        peer_text(format!("[{}] {}: ", m.room, m.from), &m.text, line)?;
                    }
                }
                _ => {}
            }
        }
    }
}
