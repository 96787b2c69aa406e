//! The hub's logic in process: sessions over a real in-memory log, events
//! read straight from the connections' queues, time on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::event::{ErrorCode, Event, Outgoing};
use crate::hub::queue::{Inbox, Kick, Next};
use crate::hub::session::{Command, Limits, REPLAY_PAGE, Request, Session};
use crate::hub::{ConnectionInfo, Hub, HubConfig, HubError, Transport};
use crate::log::memory::MemoryLog;
use crate::log::{MessageLog, Retention};
use crate::model::{Nick, RoomName};

/// Limits that never get in the way.
const OPEN: Limits = Limits {
    rate: 0.0,
    burst: 1,
    max_text: 1000,
};

/// A hub over a fresh in-memory log.
async fn hub(config: HubConfig) -> Hub {
    let log: Arc<dyn MessageLog> = Arc::new(MemoryLog::new(Retention::default()));
    Hub::open(log, None, config).await.unwrap()
}

/// A client: its session and the queue its events arrive in.
struct Client {
    session: Session,
    inbox: Inbox,
}

impl Client {
    /// Connects to `hub` with `limits`.
    fn connect(hub: &Hub, limits: Limits) -> Self {
        let peer = "127.0.0.1:40000".parse().unwrap();
        let info = ConnectionInfo::now(7, peer, Transport::Tcp, false);
        let (session, inbox) = Session::open(hub.clone(), info, limits, true);
        Self { session, inbox }
    }

    /// Connects, takes `nick` and joins `room`.
    async fn named(hub: &Hub, nick: &str, room: &str) -> Self {
        let mut client = Self::connect(hub, OPEN);
        client.ask(Command::Nick(nick.into())).await;
        client.join(room, None).await;
        client
    }

    /// Carries out `command`; the direct replies.
    async fn ask(&mut self, command: Command) -> Vec<Event> {
        let request = Request {
            command,
            reference: None,
        };
        events(self.session.handle(request).await)
    }

    /// Joins `room`, replaying after `since`.
    async fn join(&mut self, room: &str, since: Option<u64>) -> Vec<Event> {
        let room = room.into();
        self.ask(Command::Join { room, since }).await
    }

    /// Says `text` in `room`; the id from the ack.
    async fn say(&mut self, room: &str, text: &str) -> u64 {
        let replies = self
            .ask(Command::Say {
                room: Some(room.into()),
                text: text.into(),
            })
            .await;
        match replies.as_slice() {
            [Event::Ack { id: Some(id), .. }] => *id,
            other => panic!("no ack: {other:?}"),
        }
    }

    /// Every event queued so far.
    fn queued(&mut self) -> Vec<Event> {
        let mut queued = Vec::new();
        loop {
            let mut batch = Vec::new();
            self.inbox.take_queued(&mut batch);
            if batch.is_empty() {
                return events(queued);
            }
            queued.extend(batch);
        }
    }

    /// The texts of the room messages queued so far, with their ids.
    fn messages(&mut self) -> Vec<(u64, String)> {
        self.queued()
            .into_iter()
            .filter_map(|event| match event {
                Event::Message(m) => Some((m.id, m.text.to_string())),
                _ => None,
            })
            .collect()
    }

    /// Every page a `join` with `since` replays, as ids.
    async fn replayed(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some(page) = self.session.replay_page().await {
            for event in events(page) {
                match event {
                    Event::Message(m) => ids.push(m.id),
                    other => panic!("not a message: {other:?}"),
                }
            }
        }
        ids
    }
}

/// The events inside `outgoing`.
fn events(outgoing: Vec<Arc<Outgoing>>) -> Vec<Event> {
    outgoing.iter().map(|o| o.event.clone()).collect()
}

/// A room name.
fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

#[tokio::test]
async fn every_member_gets_a_rooms_messages_once_in_id_order() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    let mut bob = Client::named(&hub, "bob", "dev").await;
    let mut carol = Client::named(&hub, "carol", "other").await;
    alice.queued();
    for n in 1..=5 {
        let sender = if n % 2 == 0 { &mut alice } else { &mut bob };
        assert_eq!(sender.say("dev", &format!("m{n}")).await, n);
    }
    let expected: Vec<(u64, String)> = (1..=5).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(alice.messages(), expected);
    assert_eq!(bob.messages(), expected);
    assert!(carol.messages().is_empty(), "not in #dev");
}

#[tokio::test]
async fn a_join_with_since_replays_exactly_what_was_missed_then_goes_live() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    for n in 1..=(REPLAY_PAGE as u64 + 10) {
        alice.say("dev", &format!("m{n}")).await;
    }
    let mut bob = Client::connect(&hub, OPEN);
    bob.join("dev", Some(3)).await;
    assert!(bob.session.replaying());
    alice.say("dev", "live").await;
    let replayed = bob.replayed().await;
    assert_eq!(replayed, (4..=REPLAY_PAGE as u64 + 10).collect::<Vec<_>>());
    let live = bob.messages();
    assert_eq!(live, [(REPLAY_PAGE as u64 + 11, "live".to_string())]);
}

#[tokio::test]
async fn a_join_with_since_at_the_last_id_replays_nothing() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    let last = alice.say("dev", "only").await;
    let mut bob = Client::connect(&hub, OPEN);
    bob.join("dev", Some(last)).await;
    assert!(!bob.session.replaying());
    assert!(bob.replayed().await.is_empty());
}

#[tokio::test]
async fn a_replay_says_which_messages_are_no_longer_stored() {
    let log: Arc<dyn MessageLog> = Arc::new(MemoryLog::new(Retention {
        keep_messages: Some(3),
        keep_for: None,
    }));
    let hub = Hub::open(log, None, HubConfig::default()).await.unwrap();
    let mut alice = Client::named(&hub, "alice", "dev").await;
    for n in 1..=6 {
        alice.say("dev", &format!("m{n}")).await;
    }
    let mut bob = Client::connect(&hub, OPEN);
    bob.join("dev", Some(1)).await;
    let page = events(bob.session.replay_page().await.expect("a page"));
    let Event::Error { code, message, .. } = &page[0] else {
        panic!("no error first: {page:?}");
    };
    assert_eq!(*code, ErrorCode::HistoryLost);
    assert!(
        message.starts_with("messages 2-3 of #dev are no longer stored"),
        "{message}"
    );
    let ids: Vec<u64> = page[1..]
        .iter()
        .map(|e| match e {
            Event::Message(m) => m.id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [4, 5, 6]);
    let mut carol = Client::connect(&hub, OPEN);
    carol.join("dev", Some(0)).await;
    assert_eq!(carol.replayed().await, [4, 5, 6], "from 0 nobody is told");
}

#[tokio::test]
async fn a_message_delivered_twice_reaches_members_once() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    alice.say("dev", "once").await;
    let delivered = alice.messages();
    let again = hub.history(crate::log::Query::Latest {
        room: room("dev"),
        limit: 1,
    });
    let message = again.await.unwrap().remove(0);
    crate::log::Deliver::deliver(
        hub.inner.registry.as_ref(),
        &[crate::log::Committed::Room(message)],
    );
    assert_eq!(delivered.len(), 1);
    assert!(alice.messages().is_empty(), "the repeat is dropped");
}

#[tokio::test]
async fn presence_is_told_in_small_rooms_only() {
    let hub = hub(HubConfig {
        presence_limit: 2,
        queue: 64,
        ..HubConfig::default()
    })
    .await;
    let mut alice = Client::named(&hub, "alice", "small").await;
    alice.queued();
    let mut bob = Client::named(&hub, "bob", "small").await;
    assert_eq!(
        alice.queued(),
        [Event::Joined {
            room: room("small"),
            nick: Nick::parse("bob").unwrap(),
            reference: None,
        }]
    );
    bob.queued();
    let _carol = Client::named(&hub, "carol", "small").await;
    assert!(
        alice.queued().is_empty(),
        "three members is over the limit of two: no notices"
    );
    assert_eq!(
        hub.who(&room("small")).await.unwrap().len(),
        3,
        "who always answers"
    );
}

#[tokio::test]
async fn a_member_that_falls_behind_is_kicked_and_the_others_go_on() {
    let hub = hub(HubConfig {
        presence_limit: 100,
        queue: 4,
        ..HubConfig::default()
    })
    .await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    let slow = Client::named(&hub, "slow", "dev").await;
    for n in 0..10 {
        alice.say("dev", &n.to_string()).await;
        alice.queued();
    }
    assert!(matches!(
        slow.inbox.next().await,
        Next::Kicked(Kick::TooSlow)
    ));
    alice.say("dev", "still here").await;
    assert_eq!(alice.messages(), [(11, "still here".to_string())]);
}

#[tokio::test]
async fn nicks_are_unique_and_changes_are_told_once_per_member() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "one").await;
    alice.join("two", None).await;
    let mut bob = Client::named(&hub, "bob", "one").await;
    bob.join("two", None).await;
    let taken = bob.ask(Command::Nick("ALICE".into())).await;
    assert!(matches!(
        taken.as_slice(),
        [Event::Error {
            code: ErrorCode::NickTaken,
            ..
        }]
    ));
    alice.queued();
    alice.ask(Command::Nick("alice2".into())).await;
    let told: Vec<Event> = bob
        .queued()
        .into_iter()
        .filter(|e| matches!(e, Event::NickChanged { .. }))
        .collect();
    assert_eq!(
        told,
        [Event::NickChanged {
            old: Nick::parse("alice").unwrap(),
            new: Nick::parse("alice2").unwrap(),
        }],
        "in two shared rooms, told once"
    );
}

#[tokio::test]
async fn guest_names_are_the_servers_to_give() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    let refused = alice.ask(Command::Nick("Guest-42".into())).await;
    assert!(
        matches!(refused.as_slice(), [Event::Error { code: ErrorCode::InvalidNick, message, .. }] if message.contains("gives to guests")),
        "{refused:?}"
    );
    let mut guest = Client::connect(&hub, OPEN);
    let own = guest.session.nick().clone();
    let kept = guest.ask(Command::Nick(own.as_str().into())).await;
    assert!(
        matches!(kept.as_slice(), [Event::Ack { .. }]),
        "a guest may keep its own: {kept:?}"
    );
}

#[tokio::test]
async fn rooms_with_history_stay_listed_after_everyone_leaves() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "kept").await;
    alice.say("kept", "remember me").await;
    alice.join("fleeting", None).await;
    alice.session.disconnect();
    assert_eq!(hub.rooms().await.unwrap(), [(room("kept"), 0, 1)]);
}

#[tokio::test]
async fn direct_messages_reach_the_nick_and_nobody_else() {
    let hub = hub(HubConfig::default()).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    let mut bob = Client::named(&hub, "Bob", "dev").await;
    alice.queued();
    bob.queued();
    let sent = alice
        .ask(Command::Dm {
            to: "bob".into(),
            text: "psst".into(),
        })
        .await;
    assert!(
        matches!(&sent[..], [Event::DmSent(m), Event::Ack { id: Some(1), .. }] if m.to.as_str() == "Bob")
    );
    assert!(matches!(&bob.queued()[..], [Event::Dm(m)] if &*m.text == "psst"));
    assert!(alice.queued().is_empty());
    let nobody = alice
        .ask(Command::Dm {
            to: "nobody".into(),
            text: "hello?".into(),
        })
        .await;
    assert!(matches!(
        nobody.as_slice(),
        [Event::Error {
            code: ErrorCode::NoSuchNick,
            ..
        }]
    ));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_allows_a_burst_then_refills_with_time() {
    let hub = hub(HubConfig::default()).await;
    let limits = Limits {
        rate: 2.0,
        burst: 3,
        max_text: 100,
    };
    let mut client = Client::connect(&hub, limits);
    let admitted = (0..5)
        .filter(|_| client.session.admit(&None).is_none())
        .count();
    assert_eq!(admitted, 3);
    let refused = client.session.admit(&None);
    assert!(matches!(
        refused,
        Some(Event::Error {
            code: ErrorCode::RateLimited,
            ..
        })
    ));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(
        client.session.admit(&None).is_none(),
        "one token after 0.5 s"
    );
    assert!(client.session.admit(&None).is_some());
}

#[tokio::test]
async fn a_stopping_hub_kicks_everyone_now_and_later() {
    let hub = hub(HubConfig::default()).await;
    let before = Client::named(&hub, "before", "dev").await;
    hub.stop();
    let after = Client::connect(&hub, OPEN);
    for client in [before, after] {
        assert!(matches!(
            client.inbox.next().await,
            Next::Kicked(Kick::ServerStopping)
        ));
    }
}

/// A hub over an in-memory log that allows `max_rooms` rooms.
async fn bounded(max_rooms: usize) -> Hub {
    hub(HubConfig {
        max_rooms,
        ..HubConfig::default()
    })
    .await
}

/// Whether `replies` is the one error `code`.
fn is_error(replies: &[Event], code: ErrorCode) -> bool {
    matches!(replies, [Event::Error { code: c, .. }] if *c == code)
}

#[tokio::test]
async fn a_room_with_members_is_never_evicted() {
    let hub = bounded(1).await;
    let mut alice = Client::named(&hub, "alice", "dev").await;
    let refused = alice.join("other", None).await;
    assert!(is_error(&refused, ErrorCode::TooManyRooms), "{refused:?}");
    let posted = hub
        .post(&room("other"), Nick::parse("curl").unwrap(), "hi")
        .await;
    assert!(matches!(posted, Err(HubError::TooManyRooms(1))));
    assert_eq!(hub.rooms().await.unwrap(), [(room("dev"), 1, 0)]);
    assert_eq!(alice.say("dev", "still here").await, 1);
}

#[tokio::test]
async fn at_the_bound_the_memberless_room_idle_longest_makes_way() {
    let hub = bounded(2).await;
    let curl = || Nick::parse("curl").unwrap();
    let mut alice = Client::named(&hub, "alice", "old").await;
    alice.say("old", "first").await;
    alice.ask(Command::Part(Some("old".into()))).await;
    assert_eq!(hub.post(&room("newer"), curl(), "second").await.unwrap(), 1);
    assert_eq!(hub.post(&room("new"), curl(), "third").await.unwrap(), 1);
    let rooms: Vec<RoomName> = hub
        .rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(rooms, [room("new"), room("newer")], "#old was idle longest");
    let old = crate::log::Query::Latest {
        room: room("old"),
        limit: 10,
    };
    assert!(
        hub.history(old).await.unwrap().is_empty(),
        "its history went too"
    );
    let id = hub.post(&room("old"), curl(), "again").await.unwrap();
    assert!(
        id > 1,
        "a room made again never gives an id twice (got {id})"
    );
}

#[test]
fn where_history_is_kept_elsewhere_nothing_is_evicted() {
    use crate::hub::registry::Registry;
    use crate::log::{Committed, Deliver};
    let config = HubConfig {
        max_rooms: 1,
        ..HubConfig::default()
    };
    let registry = Registry::new(config, Vec::new(), false);
    let stored = Arc::new(crate::model::ChatMessage {
        room: room("kept"),
        id: 1,
        from: Nick::parse("curl").unwrap(),
        text: "stored".into(),
        ts: std::time::SystemTime::now(),
    });
    registry.deliver(&[Committed::Room(stored)]);
    assert!(matches!(
        registry.reserve(&room("new")),
        Err(HubError::TooManyRooms(1))
    ));
    assert_eq!(registry.reserve(&room("kept")).unwrap(), None);
    registry.release(&room("kept"));
    assert_eq!(registry.rooms(), [(room("kept"), 0, 1)], "history keeps it");
}
