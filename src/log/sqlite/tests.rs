//! The SQLite engine's tests: the shared suite, and what only a database
//! does: restarts, the directory lock, damaged or foreign files, a full
//! disk, a full queue and retention.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use rusqlite::Connection;

use crate::log::sqlite::retention::Pruner;
use crate::log::sqlite::writer::{Control, QUEUE, Request};
use crate::log::sqlite::{DATABASE_FILE, SCHEMA_VERSION, SqliteLog, SqliteOptions};
use crate::log::tests::{append, attached, page, room, said};
use crate::log::{
    Committed, Draft, LogError, LogFuture, MessageLog, Query, Receipt, Retention, RoomLog,
};
use crate::model::{ChatMessage, Nick};

/// How long a test waits for anything before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// A fresh directory under `target/`, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// A directory nobody else uses, not created yet.
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("sqlite-tests")
            .join(format!(
                "{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    /// Options for a log in this directory keeping everything.
    fn options(&self) -> SqliteOptions {
        self.keeping(Retention::default())
    }

    /// Options for a log in this directory keeping what `retention` allows.
    fn keeping(&self, retention: Retention) -> SqliteOptions {
        SqliteOptions {
            dir: self.0.clone(),
            sync: super::Durability::default(),
            retention,
        }
    }

    /// The database file.
    fn database(&self) -> PathBuf {
        self.0.join(DATABASE_FILE)
    }

    /// A plain connection to the database, for looking inside.
    fn connect(&self) -> Connection {
        Connection::open(self.database()).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A log in a directory of its own, removed after the log is dropped.
struct TempLog {
    log: SqliteLog,
    _dir: TempDir,
}

impl MessageLog for TempLog {
    fn attach(&self, deliver: Arc<dyn crate::log::Deliver>) {
        self.log.attach(deliver);
    }

    fn append(&self, draft: Draft) -> Receipt {
        self.log.append(draft)
    }

    fn read(&self, query: Query) -> LogFuture<Vec<Arc<ChatMessage>>> {
        self.log.read(query)
    }

    fn rooms(&self) -> LogFuture<Vec<RoomLog>> {
        self.log.rooms()
    }

    fn health(&self) -> Result<(), LogError> {
        self.log.health()
    }

    fn close(&self) -> LogFuture<()> {
        self.log.close()
    }
}

/// A fresh log for the shared suite.
async fn make() -> Arc<dyn MessageLog> {
    let dir = TempDir::new("suite");
    let log = SqliteLog::open(dir.options()).unwrap();
    Arc::new(TempLog { log, _dir: dir })
}

mod suite {
    use super::make;
    use crate::log::tests::engine_suite;

    engine_suite!(make);
}

/// A direct message from alice to bob.
fn dm(text: &str) -> Draft {
    Draft::Direct {
        from: Nick::parse("alice").unwrap(),
        to: Nick::parse("bob").unwrap(),
        text: text.into(),
    }
}

/// Opens `options`, expecting it to fail; the path and reason given.
fn refused(options: SqliteOptions) -> (String, String) {
    match SqliteLog::open(options) {
        Err(LogError::Open { path, reason }) => (path, reason),
        Err(other) => panic!("expected LogError::Open, got {other:?}"),
        Ok(_) => panic!("opened what should have been refused"),
    }
}

/// Opens the log in `dir`, writes `drafts`, and closes it.
async fn write_and_close(options: SqliteOptions, drafts: impl IntoIterator<Item = Draft>) {
    let (log, _) = attached(Arc::new(SqliteLog::open(options).unwrap()));
    for draft in drafts {
        append(&*log, draft).await;
    }
    log.close().await.unwrap();
}

/// Runs the writer's pruner over the closed database in `dir` at `now`
/// until it has nothing left to do then.
fn prune(dir: &TempDir, retention: Retention, now: SystemTime) {
    let conn = dir.connect();
    let rooms: Vec<(i64, u64)> = conn
        .prepare("SELECT key, last_id FROM rooms")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut pruner = Pruner::new(retention, rooms);
    let at = Instant::now();
    for _ in 0..10_000 {
        if pruner.wait(at) != Some(Duration::ZERO) {
            return;
        }
        pruner.step(&conn, now, at).unwrap();
    }
    panic!("pruning did not finish");
}

/// How many rows `table` has.
fn count(dir: &TempDir, table: &str) -> i64 {
    dir.connect()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

/// The ids of a room's history, oldest first.
async fn ids(log: &dyn MessageLog, name: &str) -> Vec<u64> {
    let latest = Query::Latest {
        room: room(name),
        limit: 100_000,
    };
    page(log, latest)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Blocks the writer until the returned sender is sent to (or dropped), so
/// what is appended meanwhile waits in the queue and commits as one batch;
/// `before` runs on the writer's connection first.
fn hold_writer(
    log: &SqliteLog,
    before: impl FnOnce(&mut Connection) + Send + 'static,
) -> mpsc::Sender<()> {
    let (release, gate) = mpsc::channel::<()>();
    let (held, holding) = mpsc::channel();
    let run = Box::new(move |conn: &mut Connection| {
        before(conn);
        let _ = held.send(());
        let _ = gate.recv_timeout(PATIENCE);
    });
    assert!(
        log.writer
            .submit(Request::Control(Control::Run(run)))
            .is_ok()
    );
    holding.recv_timeout(PATIENCE).unwrap();
    release
}

/// Runs `function` on the writer's connection between two batches, and
/// waits until it has.
async fn on_writer<T: Send + 'static>(
    log: &SqliteLog,
    function: impl FnOnce(&mut Connection) -> T + Send + 'static,
) -> T {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let run = Box::new(move |conn: &mut Connection| {
        let _ = sender.send(function(conn));
    });
    assert!(
        log.writer
            .submit(Request::Control(Control::Run(run)))
            .is_ok()
    );
    tokio::time::timeout(PATIENCE, receiver)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn reopening_continues_the_ids() {
    let dir = TempDir::new("reopen");
    write_and_close(
        dir.options(),
        [
            said("a", "1"),
            said("a", "2"),
            said("b", "1"),
            dm("1"),
            dm("2"),
        ],
    )
    .await;
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.options()).unwrap()));
    let mut rooms = log.rooms().await.unwrap();
    rooms.sort_by(|x, y| x.room.cmp(&y.room));
    assert_eq!(
        rooms,
        [
            RoomLog {
                room: room("a"),
                last_id: 2
            },
            RoomLog {
                room: room("b"),
                last_id: 1
            }
        ]
    );
    assert_eq!(append(&*log, said("a", "3")).await, 3);
    assert_eq!(append(&*log, said("b", "2")).await, 2);
    assert_eq!(append(&*log, dm("3")).await, 3);
    assert_eq!(ids(&*log, "a").await, [1, 2, 3]);
}

#[tokio::test]
async fn direct_messages_are_stored() {
    let dir = TempDir::new("direct");
    write_and_close(dir.options(), [dm("hello"), said("a", "x"), dm("again")]).await;
    let conn = dir.connect();
    let rows: Vec<(u64, String, String, String)> = conn
        .prepare("SELECT id, sender, recipient, text FROM direct_messages ORDER BY id")
        .unwrap()
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let row = |id, text: &str| (id, "alice".into(), "bob".into(), text.into());
    assert_eq!(rows, [row(1, "hello"), row(2, "again")]);
}

#[tokio::test]
async fn retention_keeps_the_newest_messages_of_each_room() {
    let dir = TempDir::new("count");
    let retention = Retention {
        keep_messages: Some(5),
        keep_for: None,
    };
    let drafts = (1..=1203)
        .map(|n| said("big", &n.to_string()))
        .chain((1..=3).map(|n| said("small", &n.to_string())));
    write_and_close(dir.keeping(retention), drafts).await;
    prune(&dir, retention, SystemTime::now());
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.keeping(retention)).unwrap()));
    assert_eq!(ids(&*log, "big").await, [1199, 1200, 1201, 1202, 1203]);
    assert_eq!(ids(&*log, "small").await, [1, 2, 3]);
    assert_eq!(append(&*log, said("big", "next")).await, 1204);
}

#[tokio::test]
async fn the_writer_prunes_when_idle() {
    let dir = TempDir::new("idle");
    let retention = Retention {
        keep_messages: Some(5),
        keep_for: None,
    };
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.keeping(retention)).unwrap()));
    for n in 1..=20 {
        append(&*log, said("lobby", &n.to_string())).await;
    }
    let deadline = Instant::now() + PATIENCE;
    while ids(&*log, "lobby").await != [16, 17, 18, 19, 20] {
        assert!(Instant::now() < deadline, "the writer did not prune");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn retention_by_age_deletes_what_is_older() {
    let dir = TempDir::new("age");
    let keep_for = Duration::from_secs(3600);
    let retention = Retention {
        keep_messages: None,
        keep_for: Some(keep_for),
    };
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.options()).unwrap()));
    for n in 1..=3 {
        append(&*log, said("a", &n.to_string())).await;
    }
    // The time of the last old message.
    let Ok(Committed::Direct(last_old)) = log.append(dm("old")).await else {
        panic!("not committed");
    };
    let old_ts = last_old.ts;
    // The next messages are committed at least a millisecond later.
    let deadline = Instant::now() + PATIENCE;
    while SystemTime::now() < old_ts + Duration::from_millis(2) {
        assert!(Instant::now() < deadline, "the clock does not move");
        std::hint::spin_loop();
    }
    append(&*log, said("a", "4")).await;
    append(&*log, dm("new")).await;
    log.close().await.unwrap();
    drop(log);
    // A moment after the old messages turned older than `keep_for`.
    prune(
        &dir,
        retention,
        old_ts + keep_for + Duration::from_millis(1),
    );
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.options()).unwrap()));
    assert_eq!(ids(&*log, "a").await, [4]);
    assert_eq!(count(&dir, "direct_messages"), 1);
    // Long after, nothing is kept, but the ids go on.
    prune(&dir, retention, SystemTime::now() + 2 * keep_for);
    assert_eq!(ids(&*log, "a").await, Vec::<u64>::new());
    assert_eq!(count(&dir, "direct_messages"), 0);
    assert_eq!(append(&*log, said("a", "5")).await, 5);
    assert_eq!(append(&*log, dm("newer")).await, 3);
    assert_eq!(
        log.rooms().await.unwrap(),
        [RoomLog {
            room: room("a"),
            last_id: 5
        }]
    );
}

#[tokio::test]
async fn ids_continue_after_retention_emptied_a_room() {
    let dir = TempDir::new("emptied");
    let retention = Retention {
        keep_messages: None,
        keep_for: Some(Duration::from_secs(60)),
    };
    write_and_close(dir.options(), [said("a", "1"), said("a", "2"), dm("1")]).await;
    prune(
        &dir,
        retention,
        SystemTime::now() + Duration::from_secs(3600),
    );
    assert_eq!(count(&dir, "messages"), 0);
    assert_eq!(count(&dir, "direct_messages"), 0);
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.keeping(retention)).unwrap()));
    assert_eq!(append(&*log, said("a", "3")).await, 3);
    assert_eq!(append(&*log, dm("2")).await, 2);
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_is_refused() {
    let dir = TempDir::new("locked");
    let first = SqliteLog::open(dir.options()).unwrap();
    let (path, reason) = refused(dir.options());
    assert_eq!(path, dir.0.display().to_string());
    assert!(reason.contains("in use by another switchboard"), "{reason}");
    let message = LogError::Open { path, reason }.to_string();
    assert!(message.contains(&dir.0.display().to_string()), "{message}");
    drop(first);
    SqliteLog::open(dir.options()).unwrap();
}

#[test]
fn a_directory_that_cannot_be_created_is_named() {
    let dir = TempDir::new("uncreatable");
    std::fs::create_dir_all(&dir.0).unwrap();
    let blocker = dir.0.join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let inside = TempDir(blocker.join("data"));
    let (path, reason) = refused(inside.options());
    assert_eq!(path, inside.0.display().to_string());
    assert!(reason.contains("cannot create the directory"), "{reason}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = TempDir::new("not-a-database");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(
        dir.database(),
        "these are notes, not a database\n".repeat(200),
    )
    .unwrap();
    let (path, reason) = refused(dir.options());
    assert_eq!(path, dir.database().display().to_string());
    assert!(reason.contains("not a SQLite database"), "{reason}");
}

#[test]
fn another_programs_database_is_refused() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(&dir.0).unwrap();
    dir.connect()
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    let (path, reason) = refused(dir.options());
    assert_eq!(path, dir.database().display().to_string());
    assert!(reason.contains("not switchboard's"), "{reason}");
}

#[tokio::test]
async fn a_corrupt_database_is_refused_at_open() {
    let dir = TempDir::new("corrupt");
    let long = "x".repeat(500);
    write_and_close(dir.options(), (0..300).map(|_| said("a", &long))).await;
    // Everything is in the main file once the last connection closed; keep
    // its first pages (header and schema) and overwrite the rest.
    let mut bytes = std::fs::read(dir.database()).unwrap();
    assert!(
        bytes.len() > 16 * 4096,
        "the database is too small to damage"
    );
    for byte in &mut bytes[2 * 4096..] {
        *byte = 0xA5;
    }
    std::fs::write(dir.database(), bytes).unwrap();
    let (path, reason) = refused(dir.options());
    assert_eq!(path, dir.database().display().to_string());
    assert!(reason.contains("corrupt"), "{reason}");
}

#[tokio::test]
async fn a_database_from_a_newer_switchboard_is_refused() {
    let dir = TempDir::new("newer");
    write_and_close(dir.options(), [said("a", "x")]).await;
    dir.connect()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let (path, reason) = refused(dir.options());
    assert_eq!(path, dir.database().display().to_string());
    assert!(reason.contains("newer switchboard"), "{reason}");
}

#[tokio::test]
async fn a_failed_commit_fails_its_batch_and_the_next_one_works() {
    let dir = TempDir::new("full");
    let log = Arc::new(SqliteLog::open(dir.options()).unwrap());
    let (shared, recorder) = attached(Arc::clone(&log) as Arc<dyn MessageLog>);
    for n in 1..=3 {
        append(&*shared, said("lobby", &n.to_string())).await;
    }
    // The file may not grow: big messages need new pages, so SQLite reports
    // SQLITE_FULL as on a full disk.
    let release = hold_writer(&log, |conn| {
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
    });
    let big = "x".repeat(64 * 1024);
    let receipts = vec![
        log.append(said("lobby", "small")),
        log.append(said("fresh", "a new room")),
        log.append(dm("a direct message")),
        log.append(said("lobby", &big)),
        log.append(said("lobby", "small again")),
    ];
    release.send(()).unwrap();
    for receipt in receipts {
        match receipt.await {
            Err(LogError::Write(reason)) => assert!(reason.contains("full"), "{reason}"),
            other => panic!("expected LogError::Write, got {other:?}"),
        }
    }
    assert!(matches!(log.health(), Err(LogError::Write(_))));
    assert_eq!(recorder.delivered.lock().unwrap().len(), 3);
    // The disk has room again: the next batch takes the next unused ids.
    on_writer(&log, |conn| {
        conn.pragma_update(None, "max_page_count", 1_000_000_000_i64)
            .unwrap();
    })
    .await;
    assert_eq!(append(&*shared, said("lobby", "4")).await, 4);
    assert_eq!(append(&*shared, said("fresh", "1")).await, 1);
    assert_eq!(append(&*shared, dm("1")).await, 1);
    assert_eq!(log.health(), Ok(()));
    assert_eq!(ids(&*shared, "lobby").await, [1, 2, 3, 4]);
    assert_eq!(recorder.delivered.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let dir = TempDir::new("busy");
    let log = SqliteLog::open(dir.options()).unwrap();
    let release = hold_writer(&log, |_| {});
    let queued: Vec<_> = (0..QUEUE)
        .map(|n| log.append(said("lobby", &n.to_string())))
        .collect();
    let refused = log.append(said("lobby", "one too many"));
    assert_eq!(refused.now_or_never(), Some(Err(LogError::Busy)));
    release.send(()).unwrap();
    for (n, receipt) in queued.into_iter().enumerate() {
        let Ok(Committed::Room(message)) = receipt.await else {
            panic!("queued message {n} was not committed");
        };
        assert_eq!(message.id, n as u64 + 1);
    }
}

#[tokio::test]
async fn a_growing_wal_is_checkpointed_beside_the_writer() {
    let dir = TempDir::new("checkpoint");
    let (log, _) = attached(Arc::new(SqliteLog::open(dir.options()).unwrap()));
    // About a page each: some 1,500 pages through the WAL.
    let text = "x".repeat(4000);
    for _ in 0..1500 {
        append(&*log, said("big", &text)).await;
    }
    // Only a checkpoint writes to the database file itself.
    let deadline = Instant::now() + PATIENCE;
    while std::fs::metadata(dir.database()).unwrap().len() < 3_000_000 {
        assert!(Instant::now() < deadline, "the WAL was not checkpointed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn health_turns_to_closed_after_close() {
    let dir = TempDir::new("health");
    let log = SqliteLog::open(dir.options()).unwrap();
    assert_eq!(log.health(), Ok(()));
    log.close().await.unwrap();
    assert_eq!(log.health(), Err(LogError::Closed));
    log.close().await.unwrap();
}
