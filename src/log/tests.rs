//! The test suite every engine passes: one set of checks, instantiated per
//! engine by [`engine_suite!`] with a function that makes a fresh log.

use std::sync::{Arc, Mutex};

use crate::log::{Committed, Deliver, Draft, LogError, MessageLog, Query, RoomLog};
use crate::model::{Nick, RoomName};

/// A hub stand-in that records what it was given, in order.
#[derive(Default)]
pub struct Recorder {
    /// Every delivered message, in delivery order.
    pub delivered: Mutex<Vec<Committed>>,
    /// Woken on every delivery.
    grew: tokio::sync::Notify,
}

impl Recorder {
    /// Waits (at most ten seconds) until `count` messages were delivered.
    pub async fn wait_for(&self, count: usize) {
        let waiting = async {
            loop {
                let grew = self.grew.notified();
                if self.delivered.lock().unwrap().len() >= count {
                    return;
                }
                grew.await;
            }
        };
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await;
        assert!(
            waited.is_ok(),
            "{} delivered, waited for {count}",
            self.delivered.lock().unwrap().len()
        );
    }
}

impl Deliver for Recorder {
    fn deliver(&self, committed: &[Committed]) {
        self.delivered.lock().unwrap().extend_from_slice(committed);
        self.grew.notify_waiters();
    }
}

/// A room by name.
pub fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

/// A message said by `alice` in `room`.
pub fn said(room_name: &str, text: &str) -> Draft {
    Draft::Room {
        room: room(room_name),
        from: Nick::parse("alice").unwrap(),
        text: text.into(),
    }
}

/// Appends and waits for the commit; the id given.
pub async fn append(log: &dyn MessageLog, draft: Draft) -> u64 {
    match log.append(draft).await {
        Ok(Committed::Room(message)) => message.id,
        Ok(Committed::Direct(message)) => message.id,
        Err(err) => panic!("append failed: {err}"),
    }
}

/// The ids and texts of a page.
pub async fn page(log: &dyn MessageLog, query: Query) -> Vec<(u64, String)> {
    log.read(query)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.id, m.text.to_string()))
        .collect()
}

/// A log attached to a fresh recorder.
pub fn attached(log: Arc<dyn MessageLog>) -> (Arc<dyn MessageLog>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    log.attach(Arc::clone(&recorder) as Arc<dyn Deliver>);
    (log, recorder)
}

/// Ids start at 1 in every room and grow by one, each room on its own.
pub async fn ids_grow_per_room(log: Arc<dyn MessageLog>) {
    let (log, _) = attached(log);
    for expected in 1..=5 {
        assert_eq!(append(&*log, said("a", "x")).await, expected);
    }
    assert_eq!(append(&*log, said("b", "y")).await, 1);
    assert_eq!(append(&*log, said("a", "z")).await, 6);
}

/// Every commit is delivered once, in id order, before its receipt resolves.
pub async fn delivers_in_order_before_the_ack(log: Arc<dyn MessageLog>) {
    let (log, recorder) = attached(log);
    let receipts: Vec<_> = (0..50)
        .map(|n| log.append(said("order", &n.to_string())))
        .collect();
    for receipt in receipts {
        let Ok(Committed::Room(message)) = receipt.await else {
            panic!("not committed");
        };
        let delivered = recorder.delivered.lock().unwrap();
        assert!(
            delivered.contains(&Committed::Room(Arc::clone(&message))),
            "message {} acknowledged before it was delivered",
            message.id
        );
    }
    let delivered = recorder.delivered.lock().unwrap();
    let ids: Vec<u64> = delivered
        .iter()
        .map(|c| match c {
            Committed::Room(m) => m.id,
            Committed::Direct(m) => m.id,
        })
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
}

/// Pages are exclusive below, inclusive above, bounded, oldest first.
pub async fn reads_pages(log: Arc<dyn MessageLog>) {
    let (log, _) = attached(log);
    for n in 1..=10 {
        append(&*log, said("lobby", &format!("m{n}"))).await;
    }
    let after = |after, up_to, limit| Query::After {
        room: room("lobby"),
        after,
        up_to,
        limit,
    };
    let ids = |page: Vec<(u64, String)>| page.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(page(&*log, after(3, 6, 100)).await), [4, 5, 6]);
    assert_eq!(ids(page(&*log, after(8, u64::MAX, 1)).await), [9]);
    assert_eq!(
        page(&*log, after(0, u64::MAX, 2)).await,
        [(1, "m1".into()), (2, "m2".into())]
    );
    let latest = Query::Latest {
        room: room("lobby"),
        limit: 3,
    };
    assert_eq!(ids(page(&*log, latest).await), [8, 9, 10]);
    let empty = Query::Latest {
        room: room("empty"),
        limit: 3,
    };
    assert!(page(&*log, empty).await.is_empty());
}

/// The rooms with history are listed with their last ids.
pub async fn lists_rooms(log: Arc<dyn MessageLog>) {
    let (log, _) = attached(log);
    append(&*log, said("one", "x")).await;
    append(&*log, said("two", "x")).await;
    append(&*log, said("two", "x")).await;
    let mut rooms = log.rooms().await.unwrap();
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    assert_eq!(
        rooms,
        [
            RoomLog {
                room: room("one"),
                last_id: 1
            },
            RoomLog {
                room: room("two"),
                last_id: 2
            }
        ]
    );
}

/// Direct messages get growing ids of their own and are delivered.
pub async fn direct_messages_get_ids(log: Arc<dyn MessageLog>) {
    let (log, recorder) = attached(log);
    let dm = |text: &str| Draft::Direct {
        from: Nick::parse("alice").unwrap(),
        to: Nick::parse("bob").unwrap(),
        text: text.into(),
    };
    assert_eq!(append(&*log, dm("one")).await, 1);
    assert_eq!(append(&*log, said("lobby", "x")).await, 1);
    assert_eq!(append(&*log, dm("two")).await, 2);
    let delivered = recorder.delivered.lock().unwrap();
    assert!(
        matches!(&delivered[2], Committed::Direct(m) if &*m.text == "two" && m.to.as_str() == "bob")
    );
}

/// A closed log refuses new messages, and what it acknowledged stays readable.
pub async fn refuses_after_close(log: Arc<dyn MessageLog>) {
    let (log, _) = attached(log);
    append(&*log, said("lobby", "before")).await;
    log.close().await.unwrap();
    assert_eq!(
        log.append(said("lobby", "after")).await,
        Err(LogError::Closed)
    );
}

/// Messages read back are the ones delivered (id, sender, text and time),
/// and a room's times never go backwards as its ids grow.
pub async fn reads_back_what_was_delivered(log: Arc<dyn MessageLog>) {
    let (log, recorder) = attached(log);
    for n in 0..20 {
        append(
            &*log,
            said(if n % 2 == 0 { "even" } else { "odd" }, &n.to_string()),
        )
        .await;
    }
    let read = log
        .read(Query::Latest {
            room: room("even"),
            limit: 100,
        })
        .await
        .unwrap();
    let delivered: Vec<_> = recorder
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Committed::Room(m) if m.room == room("even") => Some(Arc::clone(m)),
            _ => None,
        })
        .collect();
    assert_eq!(read, delivered);
    assert_eq!(read.len(), 10);
    assert!(
        read.windows(2)
            .all(|w| w[0].id < w[1].id && w[0].ts <= w[1].ts)
    );
}

/// Appends from many tasks at once get every id once, none skipped, and
/// are delivered in id order.
pub async fn concurrent_appends_get_distinct_ids(log: Arc<dyn MessageLog>) {
    let (log, recorder) = attached(log);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..100 {
                    ids.push(append(&*log, said("busy", &format!("{task}-{n}"))).await);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a task's ids went back"
        );
        ids.extend(mine);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=800).collect::<Vec<_>>());
    let delivered: Vec<u64> = recorder
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|c| match c {
            Committed::Room(m) => m.id,
            Committed::Direct(m) => m.id,
        })
        .collect();
    assert_eq!(delivered, (1..=800).collect::<Vec<_>>());
}

/// Closing commits what was submitted before it: those receipts resolve
/// with their messages, which stay readable.
pub async fn close_commits_what_was_submitted(log: Arc<dyn MessageLog>) {
    let (log, _) = attached(log);
    let receipts: Vec<_> = (0..100)
        .map(|n| log.append(said("closing", &n.to_string())))
        .collect();
    log.close().await.unwrap();
    for (n, receipt) in receipts.into_iter().enumerate() {
        let Ok(Committed::Room(message)) = receipt.await else {
            panic!("message {n} submitted before close was not committed");
        };
        assert_eq!(message.id, n as u64 + 1);
    }
    let latest = Query::Latest {
        room: room("closing"),
        limit: 1,
    };
    assert_eq!(page(&*log, latest).await, [(100, "99".into())]);
}

/// Instantiates the suite for one engine: `engine_suite!(make_log)` where
/// `make_log().await` returns a fresh `Arc<dyn MessageLog>`.
macro_rules! engine_suite {
    ($make:expr) => {
        engine_suite!(@tests $make;
            ids_grow_per_room,
            delivers_in_order_before_the_ack,
            reads_pages,
            lists_rooms,
            direct_messages_get_ids,
            refuses_after_close,
            reads_back_what_was_delivered,
            concurrent_appends_get_distinct_ids,
            close_commits_what_was_submitted,
        );
    };
    (@tests $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::log::tests::$name($make().await).await;
            }
        )*
    };
}
pub(crate) use engine_suite;

mod memory {
    use std::sync::Arc;

    use crate::log::memory::MemoryLog;
    use crate::log::{MessageLog, Retention};

    async fn make() -> Arc<dyn MessageLog> {
        Arc::new(MemoryLog::new(Retention::default()))
    }

    super::engine_suite!(make);
}
