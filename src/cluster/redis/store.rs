//! What the Redis directory keeps in Redis, and the scripts that change it.
//!
//! Keys, under `sb:` like the message log's:
//! - `sb:node:{node}`: set while the node lives (a TTL its heartbeat renews);
//!   `sb:nodes` lists every node that has been seen.
//! - `sb:nicks`: a hash from a nick's key (lower case) to `node\tNick`. A
//!   nick is taken while its node lives: a dead node's nicks free themselves
//!   within the TTL, before anyone sweeps them.
//! - `sb:members:{room}`: a hash from `node:member` to the member's nick;
//!   `sb:node:{node}:rooms` lists the rooms a node has members in, so its
//!   entries can be swept when it dies.
//! - `sb:guests`: the counter `guest-N` numbers are taken from, in blocks.
//! - the channel `sb:presence`: joins, parts and nick changes, with the
//!   room's member count after them, as `[kind, room, nick, old, node, count]`.

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use serde::Deserialize;

use crate::cluster::{Member, Notice};
use crate::model::{Nick, RoomName};

/// The channel of presence notices between nodes.
pub const CHANNEL: &str = "sb:presence";

/// The hash of taken nicks.
const NICKS: &str = "sb:nicks";

/// The set of nodes seen.
const NODES: &str = "sb:nodes";

/// The counter of guest numbers.
const GUESTS: &str = "sb:guests";

/// A node's liveness key.
pub fn node_key(node: &str) -> String {
    format!("sb:node:{node}")
}

/// The rooms a node has members in.
fn node_rooms_key(node: &str) -> String {
    format!("sb:node:{node}:rooms")
}

/// A room's members on every node.
fn members_key(room: &RoomName) -> String {
    format!("sb:members:{}", room.as_str())
}

/// A member's field in a room's members hash.
fn member_field(node: &str, member: Member) -> String {
    format!("{node}:{}", member.0)
}

/// Takes a nick for a node unless a live node (another one) has it.
const CLAIM: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner then
  local node = string.match(owner, '^([^\t]*)')
  if node ~= ARGV[2] and redis.call('EXISTS', 'sb:node:' .. node) == 1 then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\t' .. ARGV[3])
return 1
";

/// Lets go of a nick if this node has it.
const RELEASE: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and string.match(owner, '^([^\t]*)') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

/// Records a join (`j`), part (`p`) or rename (`n`) in a room and publishes
/// it with the room's member count.
const PRESENCE: &str = r"
if ARGV[1] == 'p' then
  redis.call('HDEL', KEYS[1], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('SADD', KEYS[2], ARGV[2])
end
local count = redis.call('HLEN', KEYS[1])
redis.call('PUBLISH', ARGV[7], cjson.encode({ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6], count}))
return count
";

/// The nicks of a room's members whose node lives.
const WHO: &str = r"
local entries = redis.call('HGETALL', KEYS[1])
local alive = {}
local nicks = {}
for i = 1, #entries, 2 do
  local node = string.match(entries[i], '^(.*):[^:]*$')
  if alive[node] == nil then
    alive[node] = redis.call('EXISTS', 'sb:node:' .. node) == 1
  end
  if alive[node] then
    table.insert(nicks, entries[i + 1])
  end
end
return nicks
";

/// Whoever has a nick, if their node lives.
const OWNER: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then
  return false
end
local node, nick = string.match(owner, '^([^\t]*)\t(.*)$')
if redis.call('EXISTS', 'sb:node:' .. node) == 1 then
  return nick
end
return false
";

/// Removes a node's nicks and room memberships (it died, or it closes).
const FORGET: &str = r"
local node = ARGV[1]
local prefix = node .. ':'
for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = 'sb:members:' .. room
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, #prefix) == prefix then
      redis.call('HDEL', key, field)
    end
  end
end
redis.call('DEL', KEYS[2])
local nicks = redis.call('HGETALL', KEYS[1])
for i = 1, #nicks, 2 do
  if string.match(nicks[i + 1], '^([^\t]*)') == node then
    redis.call('HDEL', KEYS[1], nicks[i])
  end
end
redis.call('SREM', KEYS[3], node)
return 1
";

/// The directory's scripts.
pub struct Scripts {
    claim: Script,
    release: Script,
    presence: Script,
    who: Script,
    owner: Script,
    forget: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            presence: Script::new(PRESENCE),
            who: Script::new(WHO),
            owner: Script::new(OWNER),
            forget: Script::new(FORGET),
        }
    }
}

/// A change to send to Redis, in the order it happened on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This node has a nick (a guest's, or one just claimed).
    Has(Nick),
    /// A member let go of a nick.
    Release(Nick),
    /// A member joined a room.
    Joined(Member, Nick, RoomName),
    /// A member left a room.
    Parted(Member, Nick, RoomName),
    /// A member was renamed in these rooms.
    Renamed(Member, Nick, Nick, Vec<RoomName>),
}

impl Scripts {
    /// Claims `nick` for `node`; `false` when a live node (another one) has it.
    ///
    /// # Errors
    /// Redis's error.
    pub async fn claim(
        &self,
        connection: &mut ConnectionManager,
        node: &str,
        nick: &Nick,
    ) -> Result<bool, RedisError> {
        self.claim
            .key(NICKS)
            .arg(&*nick.key())
            .arg(node)
            .arg(nick.as_str())
            .invoke_async(connection)
            .await
    }

    /// Adds `change` to `pipeline`, as `node`.
    pub fn add(&self, pipeline: &mut redis::Pipeline, node: &str, change: &Change) {
        match change {
            Change::Has(nick) => {
                pipeline
                    .hset(NICKS, &*nick.key(), format!("{node}\t{nick}"))
                    .ignore();
            }
            Change::Release(nick) => {
                self.invoke(pipeline, &self.release, &[NICKS], &[&nick.key(), node]);
            }
            Change::Joined(member, nick, room) => {
                self.announce(pipeline, node, "j", room, *member, nick, "");
            }
            Change::Parted(member, nick, room) => {
                self.announce(pipeline, node, "p", room, *member, nick, "");
            }
            Change::Renamed(member, old, new, rooms) => {
                for room in rooms {
                    self.announce(pipeline, node, "n", room, *member, new, old.as_str());
                }
            }
        }
    }

    /// Adds a presence change in `room` to `pipeline`.
    #[expect(clippy::too_many_arguments, reason = "the script's arguments, named")]
    fn announce(
        &self,
        pipeline: &mut redis::Pipeline,
        node: &str,
        kind: &str,
        room: &RoomName,
        member: Member,
        nick: &Nick,
        old: &str,
    ) {
        let keys = [members_key(room), node_rooms_key(node)];
        let field = member_field(node, member);
        let args = [
            kind,
            room.as_str(),
            &field,
            nick.as_str(),
            old,
            node,
            CHANNEL,
        ];
        self.invoke(pipeline, &self.presence, &keys, &args);
    }

    /// Adds a call of `script` to `pipeline` (by hash: the scripts are
    /// loaded first).
    fn invoke(
        &self,
        pipeline: &mut redis::Pipeline,
        script: &Script,
        keys: &[impl AsRef<str>],
        args: &[&str],
    ) {
        let command = pipeline
            .cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len());
        for key in keys {
            command.arg(key.as_ref());
        }
        for arg in args {
            command.arg(*arg);
        }
        command.ignore();
    }

    /// Loads every script into Redis (at start, and after Redis restarted).
    ///
    /// # Errors
    /// Redis's error.
    pub async fn load(&self, connection: &mut ConnectionManager) -> Result<(), RedisError> {
        for script in [
            &self.claim,
            &self.release,
            &self.presence,
            &self.who,
            &self.owner,
            &self.forget,
        ] {
            script.load_async(connection).await?;
        }
        Ok(())
    }

    /// The nicks in `room` whose node lives.
    ///
    /// # Errors
    /// Redis's error.
    pub async fn who(
        &self,
        connection: &mut ConnectionManager,
        room: &RoomName,
    ) -> Result<Vec<Nick>, RedisError> {
        let nicks: Vec<String> = self
            .who
            .key(members_key(room))
            .invoke_async(connection)
            .await?;
        Ok(nicks.iter().filter_map(|n| Nick::parse(n).ok()).collect())
    }

    /// Whoever has `nick`, if their node lives.
    ///
    /// # Errors
    /// Redis's error.
    pub async fn owner(
        &self,
        connection: &mut ConnectionManager,
        nick: &Nick,
    ) -> Result<Option<Nick>, RedisError> {
        let owner: Option<String> = self
            .owner
            .key(NICKS)
            .arg(&*nick.key())
            .invoke_async(connection)
            .await?;
        Ok(owner.and_then(|n| Nick::parse(&n).ok()))
    }

    /// Removes what `node` had in the directory.
    ///
    /// # Errors
    /// Redis's error.
    pub async fn forget(
        &self,
        connection: &mut ConnectionManager,
        node: &str,
    ) -> Result<(), RedisError> {
        self.forget
            .key(NICKS)
            .key(node_rooms_key(node))
            .key(NODES)
            .arg(node)
            .invoke_async(connection)
            .await
    }
}

/// Renews `node`'s liveness for `ttl_secs` and lists it among the nodes;
/// `false` when the key had expired or was lost (the store no longer has
/// this node's entries, or swept them).
///
/// # Errors
/// Redis's error.
pub async fn heartbeat(
    connection: &mut ConnectionManager,
    node: &str,
    ttl_secs: u64,
) -> Result<bool, RedisError> {
    let previous: Option<String> = redis::cmd("SET")
        .arg(node_key(node))
        .arg(1)
        .arg("EX")
        .arg(ttl_secs)
        .arg("GET")
        .query_async(connection)
        .await?;
    redis::cmd("SADD")
        .arg(NODES)
        .arg(node)
        .query_async::<()>(connection)
        .await?;
    Ok(previous.is_some())
}

/// The nodes seen whose liveness key is gone.
///
/// # Errors
/// Redis's error.
pub async fn dead_nodes(connection: &mut ConnectionManager) -> Result<Vec<String>, RedisError> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(NODES)
        .query_async(connection)
        .await?;
    let mut pipeline = redis::pipe();
    for node in &nodes {
        pipeline.exists(node_key(node));
    }
    let alive: Vec<bool> = pipeline.query_async(connection).await?;
    Ok(nodes
        .into_iter()
        .zip(alive)
        .filter(|(_, alive)| !alive)
        .map(|(node, _)| node)
        .collect())
}

/// A block of `size` guest numbers no other node gets; its last number.
///
/// # Errors
/// Redis's error.
pub async fn guest_block(connection: &mut ConnectionManager, size: u64) -> Result<u64, RedisError> {
    redis::cmd("INCRBY")
        .arg(GUESTS)
        .arg(size)
        .query_async(connection)
        .await
}

/// How many members each of `rooms` has (entries of dead nodes count until
/// they are swept).
///
/// # Errors
/// Redis's error.
pub async fn member_counts(
    connection: &mut ConnectionManager,
    rooms: &[RoomName],
) -> Result<Vec<usize>, RedisError> {
    let mut pipeline = redis::pipe();
    for room in rooms {
        pipeline.hlen(members_key(room));
    }
    pipeline.query_async(connection).await
}

/// A presence notice as the script publishes it.
#[derive(Debug, Deserialize)]
struct Published(String, String, String, String, String, usize);

/// Reads a published presence notice: the node it came from and the notice;
/// `None` for anything else.
pub fn notice(payload: &[u8]) -> Option<(String, Notice)> {
    let Published(kind, room, nick, old, node, members) = serde_json::from_slice(payload).ok()?;
    let room = RoomName::parse(&room).ok()?;
    let nick = Nick::parse(&nick).ok()?;
    let notice = match kind.as_str() {
        "j" => Notice::Joined {
            room,
            nick,
            members,
        },
        "p" => Notice::Parted {
            room,
            nick,
            members,
        },
        "n" => Notice::Renamed {
            room,
            old: Nick::parse(&old).ok()?,
            new: nick,
            members,
        },
        _ => return None,
    };
    Some((node, notice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_notices_are_read_back() {
        let joined = br#"["j","lobby","alice","","node-a",3]"#;
        assert_eq!(
            notice(joined),
            Some((
                "node-a".into(),
                Notice::Joined {
                    room: RoomName::parse("lobby").unwrap(),
                    nick: Nick::parse("alice").unwrap(),
                    members: 3
                }
            ))
        );
        let renamed = br#"["n","dev","bob","guest-1","node-b",2]"#;
        assert!(matches!(
            notice(renamed),
            Some((_, Notice::Renamed { old, new, .. })) if old.as_str() == "guest-1" && new.as_str() == "bob"
        ));
        for junk in [
            &b"{}"[..],
            br#"["x","lobby","a","","n",1]"#,
            br#"["j","bad room","a","","n",1]"#,
        ] {
            assert_eq!(notice(junk), None);
        }
    }
}
