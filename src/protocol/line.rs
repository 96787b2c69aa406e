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
            let _ = writeln!(out, "* history of {room}: {} messages", messages.len());
            for m in messages {
                let _ = writeln!(out, "[{}] {}: {}", m.room, m.from, printable(&m.text));
            }
        }
        Event::Who { room, nicks, .. } => {
            let names: Vec<&str> = nicks.iter().map(|n| n.as_str()).collect();
            let _ = writeln!(out, "* {room} ({}): {}", nicks.len(), names.join(", "));
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

    use super::*;
    use crate::model::ChatMessage;
    use crate::model::names::{Nick, RoomName};

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
}
