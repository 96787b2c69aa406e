//! Nicknames and room names: what is allowed and how they compare.
//!
//! Both are 1 to 32 (nicks) or 64 (rooms) characters of `A-Za-z0-9_-`. Nicks
//! keep the case they were typed in but are unique case-insensitively; room
//! names are case-insensitive and stored lower-case, written `#name`.

use std::fmt;
use std::sync::Arc;

/// The longest nick.
pub const MAX_NICK: usize = 32;

/// The longest room name (without the `#`).
pub const MAX_ROOM: usize = 64;

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a valid nick.
    #[error("a nick is 1 to 32 letters, digits, '_' or '-'")]
    Nick,
    /// Not a valid room name.
    #[error("a room name is 1 to 64 letters, digits, '_' or '-' (written #name)")]
    Room,
}

/// Whether `name` is 1 to `max` characters of `A-Za-z0-9_-`.
fn is_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A user's nickname, as typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nick(Arc<str>);

impl Nick {
    /// Checks and wraps a nick.
    ///
    /// # Errors
    /// [`NameError::Nick`] when `name` is not 1–32 of `A-Za-z0-9_-`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if is_name(name, MAX_NICK) {
            Ok(Self(name.into()))
        } else {
            Err(NameError::Nick)
        }
    }

    /// The key two nicks are compared by: equal keys are the same nick.
    /// A nick already in lower case is its own key (no copy).
    pub fn key(&self) -> Arc<str> {
        if self.0.bytes().any(|b| b.is_ascii_uppercase()) {
            self.0.to_ascii_lowercase().into()
        } else {
            Arc::clone(&self.0)
        }
    }

    /// The nick as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nick the server gives guest number `number`: `guest-N`.
    pub fn guest(number: u64) -> Self {
        Self(format!("guest-{number}").into())
    }

    /// Whether this is a name of the `guest-N` form the server gives.
    pub fn is_guest(&self) -> bool {
        self.0
            .get(..6)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("guest-"))
            && self.0.len() > 6
            && self.0[6..].bytes().all(|b| b.is_ascii_digit())
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room's name, lower-case and without the `#`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// Checks and normalizes a room name, with or without its leading `#`.
    ///
    /// # Errors
    /// [`NameError::Room`] when the name is not 1–64 of `A-Za-z0-9_-`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let bare = name.strip_prefix('#').unwrap_or(name);
        if is_name(bare, MAX_ROOM) {
            Ok(Self(bare.to_ascii_lowercase().into()))
        } else {
            Err(NameError::Room)
        }
    }

    /// The name without `#`, as used in JSON and URLs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    /// Writes the room as people read it: `#name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_keep_case_but_compare_without_it() {
        let nick = Nick::parse("Alice_-9").unwrap();
        assert_eq!(nick.as_str(), "Alice_-9");
        assert_eq!(nick.key(), Nick::parse("aLICE_-9").unwrap().key());
        assert_eq!(
            Nick::parse(&"a".repeat(32)).map(|n| n.as_str().len()),
            Ok(32)
        );
    }

    #[test]
    fn bad_nicks_are_refused() {
        for bad in ["", "has space", "ünï", "a.b", "#chan", &"a".repeat(33)] {
            assert_eq!(Nick::parse(bad), Err(NameError::Nick), "{bad:?}");
        }
    }

    #[test]
    fn rooms_accept_a_hash_and_ignore_case() {
        let room = RoomName::parse("#Rust-Lang").unwrap();
        assert_eq!(room.as_str(), "rust-lang");
        assert_eq!(room.to_string(), "#rust-lang");
        assert_eq!(room, RoomName::parse("rust-lang").unwrap());
        assert!(RoomName::parse(&"r".repeat(64)).is_ok());
    }

    #[test]
    fn bad_rooms_are_refused() {
        for bad in ["", "#", "##x", "a b", "x!", &"r".repeat(65)] {
            assert_eq!(RoomName::parse(bad), Err(NameError::Room), "{bad:?}");
        }
    }
}
