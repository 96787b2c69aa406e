//! What the Redis engine keeps in Redis, and the commands that read and
//! write it (docs/ARCHITECTURE.md, "Several nodes"). No state of its own.
//!
//! Keys, all under `sb:`:
//! - `sb:epoch`: a random name for this Redis's data, set once. A Redis that
//!   restarted without its data has none (or another): the nodes notice
//!   before they write.
//! - `sb:rooms`: a hash of every room with history and its last id.
//! - `sb:room:{room}:seq`, `sb:room:{room}:log`: the room's id counter and
//!   its history, a stream whose entry ids are the message ids (`41-0`).
//! - `sb:dm:seq`, `sb:dm:log`: the same for direct messages.
//! - the channel `sb:committed`: every committed message, published by the
//!   script that committed it.
//!
//! One Lua script appends a message: it checks the epoch, takes the next id,
//! adds the entry, records the room's last id and publishes the message, in
//! one step, so every node sees the same ids in the same order.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::{RedisError, Script, Value};
use serde::Deserialize;

use crate::log::{Committed, Draft};
use crate::model::{ChatMessage, DirectMessage, Nick, RoomName};

/// The channel every committed message is published on.
pub const CHANNEL: &str = "sb:committed";

/// The key naming this Redis's data.
const EPOCH: &str = "sb:epoch";

/// The hash of rooms and their last ids.
const ROOMS: &str = "sb:rooms";

/// The direct messages' id counter.
const DIRECT_SEQ: &str = "sb:dm:seq";

/// The direct messages' stream.
const DIRECT_LOG: &str = "sb:dm:log";

/// The most direct messages kept: nothing reads them back, so they are
/// capped rather than kept for ever.
const DIRECT_KEEP: u64 = 100_000;

/// The reply of the append script when the epoch is not the caller's.
const EPOCH_CHANGED: &str = "EPOCH";

/// A room's id counter.
fn seq_key(room: &RoomName) -> String {
    format!("sb:room:{}:seq", room.as_str())
}

/// A room's history.
pub fn log_key(room: &RoomName) -> String {
    format!("sb:room:{}:log", room.as_str())
}

/// Appends one room message: checks the epoch, gives the id, adds the entry
/// (trimmed to `ARGV[5]` entries when set), records the last id, publishes.
const APPEND_ROOM: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('EPOCH changed')
end
local id = redis.call('INCR', KEYS[3])
local now = redis.call('TIME')
local ts = now[1] * 1000 + math.floor(now[2] / 1000)
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[5], id .. '-0', 'f', ARGV[3], 't', ARGV[4], 'ts', ts)
else
  redis.call('XADD', KEYS[4], id .. '-0', 'f', ARGV[3], 't', ARGV[4], 'ts', ts)
end
redis.call('HSET', KEYS[2], ARGV[2], id)
redis.call('PUBLISH', ARGV[6], cjson.encode({'m', ARGV[2], id, ARGV[3], ARGV[4], ts}))
return {id, ts}
";

/// Appends one direct message, like [`APPEND_ROOM`].
const APPEND_DIRECT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('EPOCH changed')
end
local id = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local ts = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], id .. '-0', 'f', ARGV[2], 'to', ARGV[3], 't', ARGV[4], 'ts', ts)
redis.call('PUBLISH', ARGV[5], cjson.encode({'d', '', id, ARGV[2], ARGV[4], ts, ARGV[3]}))
return {id, ts}
";

/// Sets the epoch if there is none; returns the epoch in force.
const ESTABLISH_EPOCH: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// Moves each counter in `KEYS` up to the id in the same place of `ARGV`
/// (never down), and the rooms hash with it: after Redis lost its data, ids
/// go on above what this node had seen instead of starting again.
const RESEED: &str = r"
for i, key in ipairs(KEYS) do
  local known = tonumber(ARGV[i * 2])
  local current = tonumber(redis.call('GET', key) or '0')
  if current < known then
    redis.call('SET', key, known)
    if ARGV[i * 2 - 1] ~= '' then
      redis.call('HSET', 'sb:rooms', ARGV[i * 2 - 1], known)
    end
  end
end
return 1
";

/// The scripts, loaded into Redis at start and again after it restarted;
/// appends call them by hash (`EVALSHA`).
pub struct Scripts {
    append_room: Script,
    append_direct: Script,
    establish_epoch: Script,
    reseed: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            append_room: Script::new(APPEND_ROOM),
            append_direct: Script::new(APPEND_DIRECT),
            establish_epoch: Script::new(ESTABLISH_EPOCH),
            reseed: Script::new(RESEED),
        }
    }
}

/// Why an append did not commit.
#[derive(Debug)]
pub enum AppendError {
    /// Redis's data is not the epoch the node knows: it lost its data, or
    /// another set of data replaced it.
    EpochChanged,
    /// Redis does not know the script (it restarted): load it and retry.
    NoScript,
    /// Redis refused or could not be reached.
    Redis(RedisError),
}

impl From<RedisError> for AppendError {
    fn from(err: RedisError) -> Self {
        let said = |text: Option<&str>| text.is_some_and(|t| t.starts_with(EPOCH_CHANGED));
        if said(err.code()) || said(err.detail()) {
            Self::EpochChanged
        } else if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
            Self::NoScript
        } else {
            Self::Redis(err)
        }
    }
}

impl Scripts {
    /// Sends the append script for each of `drafts` under `epoch`, in one
    /// pipeline: they run in this order; the outcome of each.
    ///
    /// # Errors
    /// The connection's error when the pipeline could not be sent or
    /// answered (then none of them is known to have run).
    pub async fn append_all(
        &self,
        connection: &mut ConnectionManager,
        epoch: &str,
        drafts: &[&Draft],
        keep_messages: Option<u64>,
    ) -> Result<Vec<Result<Committed, AppendError>>, RedisError> {
        let keep = keep_messages.map(|n| n.to_string()).unwrap_or_default();
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for draft in drafts {
            let command = pipeline.cmd("EVALSHA");
            match draft {
                Draft::Room { room, from, text } => {
                    command
                        .arg(self.append_room.get_hash())
                        .arg(4)
                        .arg(EPOCH)
                        .arg(ROOMS)
                        .arg(seq_key(room))
                        .arg(log_key(room))
                        .arg(epoch)
                        .arg(room.as_str())
                        .arg(from.as_str())
                        .arg(&**text)
                        .arg(&keep)
                        .arg(CHANNEL);
                }
                Draft::Direct { from, to, text } => {
                    command
                        .arg(self.append_direct.get_hash())
                        .arg(3)
                        .arg(EPOCH)
                        .arg(DIRECT_SEQ)
                        .arg(DIRECT_LOG)
                        .arg(epoch)
                        .arg(from.as_str())
                        .arg(to.as_str())
                        .arg(&**text)
                        .arg(CHANNEL)
                        .arg(DIRECT_KEEP);
                }
            }
        }
        let replies: Vec<redis::RedisResult<(u64, u64)>> = pipeline.query_async(connection).await?;
        Ok(drafts
            .iter()
            .zip(replies)
            .map(|(draft, reply)| {
                let (id, ts) = reply?;
                Ok(committed(draft, id, ts))
            })
            .collect())
    }

    /// Loads the append scripts into Redis, so that appends sent at once
    /// run in the order they were sent (a script Redis does not know yet
    /// is loaded by whichever append meets it first, and they overtake each
    /// other meanwhile).
    ///
    /// # Errors
    /// Redis's error.
    pub async fn load(&self, connection: &mut ConnectionManager) -> Result<(), RedisError> {
        self.append_room.load_async(connection).await?;
        self.append_direct.load_async(connection).await?;
        Ok(())
    }

    /// The epoch in force, set to `candidate` if Redis has none.
    ///
    /// # Errors
    /// Redis's error.
    pub async fn establish_epoch(
        &self,
        connection: &mut ConnectionManager,
        candidate: &str,
    ) -> Result<String, RedisError> {
        self.establish_epoch
            .key(EPOCH)
            .arg(candidate)
            .invoke_async(connection)
            .await
    }

    /// Moves the counters of `rooms` and of the direct messages up to what
    /// this node has seen (see [`RESEED`]).
    ///
    /// # Errors
    /// Redis's error.
    pub async fn reseed(
        &self,
        connection: &mut ConnectionManager,
        rooms: &[(RoomName, u64)],
        direct: u64,
    ) -> Result<(), RedisError> {
        let mut invocation = self.reseed.prepare_invoke();
        for (room, last) in rooms {
            invocation.key(seq_key(room)).arg(room.as_str()).arg(*last);
        }
        invocation.key(DIRECT_SEQ).arg("").arg(direct);
        invocation.invoke_async::<()>(connection).await
    }
}

/// Every room with history and its last id.
///
/// # Errors
/// Redis's error.
pub async fn rooms(connection: &mut ConnectionManager) -> Result<Vec<(RoomName, u64)>, RedisError> {
    let all: Vec<(String, u64)> = redis::cmd("HGETALL")
        .arg(ROOMS)
        .query_async(connection)
        .await?;
    Ok(all
        .into_iter()
        .filter_map(|(name, last)| Some((RoomName::parse(&name).ok()?, last)))
        .collect())
}

/// The last direct-message id given.
///
/// # Errors
/// Redis's error.
pub async fn last_direct(connection: &mut ConnectionManager) -> Result<u64, RedisError> {
    let last: Option<u64> = redis::cmd("GET")
        .arg(DIRECT_SEQ)
        .query_async(connection)
        .await?;
    Ok(last.unwrap_or(0))
}

/// Messages of `room` with `after < id <= up_to`, oldest first, at most `limit`.
///
/// # Errors
/// Redis's error.
pub async fn room_range(
    connection: &mut ConnectionManager,
    room: &RoomName,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<Arc<ChatMessage>>, RedisError> {
    if after >= up_to || limit == 0 {
        return Ok(Vec::new());
    }
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(log_key(room))
        .arg(format!("{}-0", after + 1))
        .arg(range_end(up_to))
        .arg("COUNT")
        .arg(limit)
        .query_async(connection)
        .await?;
    Ok(room_messages(room, reply))
}

/// The newest `limit` messages of `room`, oldest first.
///
/// # Errors
/// Redis's error.
pub async fn room_latest(
    connection: &mut ConnectionManager,
    room: &RoomName,
    limit: usize,
) -> Result<Vec<Arc<ChatMessage>>, RedisError> {
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(log_key(room))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(limit)
        .query_async(connection)
        .await?;
    let mut messages = room_messages(room, reply);
    messages.reverse();
    Ok(messages)
}

/// Direct messages with `after < id <= up_to`, oldest first, at most `limit`.
///
/// # Errors
/// Redis's error.
pub async fn direct_range(
    connection: &mut ConnectionManager,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<Arc<DirectMessage>>, RedisError> {
    if after >= up_to {
        return Ok(Vec::new());
    }
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(DIRECT_LOG)
        .arg(format!("{}-0", after + 1))
        .arg(range_end(up_to))
        .arg("COUNT")
        .arg(limit)
        .query_async(connection)
        .await?;
    Ok(reply
        .ids
        .iter()
        .filter_map(|entry| {
            Some(Arc::new(DirectMessage {
                id: entry_id(&entry.id)?,
                from: Nick::parse(&field(&entry.map, "f")?).ok()?,
                to: Nick::parse(&field(&entry.map, "to")?).ok()?,
                text: field(&entry.map, "t")?.into(),
                ts: time(field(&entry.map, "ts")?.parse().ok()?),
            }))
        })
        .collect())
}

/// Deletes the messages of `room` older than `cutoff`, a page at a time;
/// how many it deleted.
///
/// # Errors
/// Redis's error.
pub async fn prune_older_than(
    connection: &mut ConnectionManager,
    room: &RoomName,
    cutoff: SystemTime,
) -> Result<usize, RedisError> {
    let oldest = room_range(connection, room, 0, u64::MAX, 500).await?;
    let Some(first_kept) = oldest
        .iter()
        .find(|m| m.ts >= cutoff)
        .map(|m| m.id)
        .or_else(|| oldest.last().map(|m| m.id + 1))
    else {
        return Ok(0);
    };
    let deleted = oldest.iter().filter(|m| m.id < first_kept).count();
    if deleted > 0 {
        redis::cmd("XTRIM")
            .arg(log_key(room))
            .arg("MINID")
            .arg(format!("{first_kept}-0"))
            .query_async::<()>(connection)
            .await?;
    }
    Ok(deleted)
}

/// The message `draft` became, with the id and time the script gave it.
fn committed(draft: &Draft, id: u64, ts: u64) -> Committed {
    match draft {
        Draft::Room { room, from, text } => Committed::Room(Arc::new(ChatMessage {
            room: room.clone(),
            id,
            from: from.clone(),
            text: Arc::clone(text),
            ts: time(ts),
        })),
        Draft::Direct { from, to, text } => Committed::Direct(Arc::new(DirectMessage {
            id,
            from: from.clone(),
            to: to.clone(),
            text: Arc::clone(text),
            ts: time(ts),
        })),
    }
}

/// The end of an `XRANGE` up to id `up_to` (`+` for no end).
fn range_end(up_to: u64) -> String {
    if up_to == u64::MAX {
        "+".to_string()
    } else {
        format!("{up_to}-0")
    }
}

/// The messages of a room's stream entries (entries that do not parse,
/// which switchboard never writes, are skipped).
fn room_messages(room: &RoomName, reply: StreamRangeReply) -> Vec<Arc<ChatMessage>> {
    reply
        .ids
        .iter()
        .filter_map(|entry| {
            Some(Arc::new(ChatMessage {
                room: room.clone(),
                id: entry_id(&entry.id)?,
                from: Nick::parse(&field(&entry.map, "f")?).ok()?,
                text: field(&entry.map, "t")?.into(),
                ts: time(field(&entry.map, "ts")?.parse().ok()?),
            }))
        })
        .collect()
}

/// The message id of a stream entry id (`41-0` is 41).
fn entry_id(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// A field of a stream entry, as text.
fn field(map: &std::collections::HashMap<String, Value>, name: &str) -> Option<String> {
    match map.get(name)? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time given in milliseconds since the Unix epoch.
fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A message as the append scripts publish it: kind (`m` or `d`), room,
/// id, sender, text, time, and the recipient of a direct message.
#[derive(Debug, Deserialize)]
struct Published(
    String,
    String,
    u64,
    String,
    String,
    u64,
    #[serde(default)] String,
);

/// Reads a message an append script published; `None` for anything else.
pub fn announcement(payload: &[u8]) -> Option<Committed> {
    let Published(kind, room, id, from, text, ts, to) = serde_json::from_slice(payload).ok()?;
    let from = Nick::parse(&from).ok()?;
    Some(match kind.as_str() {
        "m" => Committed::Room(Arc::new(ChatMessage {
            room: RoomName::parse(&room).ok()?,
            id,
            from,
            text: text.into(),
            ts: time(ts),
        })),
        "d" => Committed::Direct(Arc::new(DirectMessage {
            id,
            from,
            to: Nick::parse(&to).ok()?,
            text: text.into(),
            ts: time(ts),
        })),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_messages_are_read_back() {
        let room = br#"["m","lobby",41,"alice","hi \"there\"",1700000000123]"#;
        let Some(Committed::Room(message)) = announcement(room) else {
            panic!("not a room message");
        };
        assert_eq!((message.id, message.room.as_str()), (41, "lobby"));
        assert_eq!(&*message.text, "hi \"there\"");
        assert_eq!(message.ts, time(1_700_000_000_123));
        let direct = br#"["d","",7,"alice","psst",1700000000000,"bob"]"#;
        assert!(matches!(
            announcement(direct),
            Some(Committed::Direct(m)) if m.to.as_str() == "bob" && m.id == 7
        ));
    }

    #[test]
    fn anything_else_on_the_channel_is_ignored() {
        for junk in [
            &b"not json"[..],
            br#"["x","lobby",1,"a","t",1]"#,
            br#"["m","bad room!",1,"a","t",1]"#,
            b"[]",
        ] {
            assert_eq!(
                announcement(junk),
                None,
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
    }

    #[test]
    fn entry_ids_are_message_ids() {
        assert_eq!(entry_id("41-0"), Some(41));
        assert_eq!(entry_id("x-0"), None);
        assert_eq!(range_end(u64::MAX), "+");
        assert_eq!(range_end(9), "9-0");
    }
}
