//! The Redis engine against a real `redis-server` (Debian's package),
//! started by each test on a free port: the suite every engine passes, and
//! what only several nodes on one Redis show.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use super::{RedisLog, RedisOptions};
use crate::log::tests::{Recorder, append, attached, room, said};
use crate::log::{Committed, Deliver, LogError, MessageLog, Query, Retention};

/// A `redis-server` of the test's own, stopped when dropped.
pub struct RedisServer {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts one without persistence and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts one on `port` (again, after a restart).
    pub fn start_on(port: u16) -> Self {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/setup.sh installs it)");
        let stdout = child.stdout.take().expect("stdout piped");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server on port {port} did not start");
        Self { child, port }
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A Redis log that keeps its server alive as long as it lives.
struct WithServer {
    log: RedisLog,
    _server: RedisServer,
}

impl MessageLog for WithServer {
    fn attach(&self, deliver: Arc<dyn Deliver>) {
        self.log.attach(deliver);
    }

    fn append(&self, draft: crate::log::Draft) -> crate::log::Receipt {
        self.log.append(draft)
    }

    fn read(&self, query: Query) -> crate::log::LogFuture<Vec<Arc<crate::model::ChatMessage>>> {
        self.log.read(query)
    }

    fn rooms(&self) -> crate::log::LogFuture<Vec<crate::log::RoomLog>> {
        self.log.rooms()
    }

    fn health(&self) -> Result<(), LogError> {
        self.log.health()
    }

    fn close(&self) -> crate::log::LogFuture<()> {
        self.log.close()
    }
}

/// A node's log on `server`.
async fn node(server: &RedisServer) -> RedisLog {
    RedisLog::open(RedisOptions {
        url: server.url(),
        retention: Retention::default(),
    })
    .await
    .expect("connects")
}

/// A fresh log on a fresh server, for the shared suite.
async fn make() -> Arc<dyn MessageLog> {
    let server = RedisServer::start();
    let log = node(&server).await;
    Arc::new(WithServer {
        log,
        _server: server,
    })
}

mod suite {
    use super::make;
    use crate::log::tests::engine_suite;

    engine_suite!(make);
}

/// The ids and texts a recorder was given, in order.
fn delivered(recorder: &Recorder) -> Vec<(u64, String)> {
    recorder
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Committed::Room(m) => Some((m.id, m.text.to_string())),
            Committed::Direct(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn two_nodes_share_ids_and_each_delivers_everything_once_in_order() {
    let server = RedisServer::start();
    let (a, seen_by_a) = attached(Arc::new(node(&server).await));
    let (b, seen_by_b) = attached(Arc::new(node(&server).await));
    let mut receipts = Vec::new();
    for n in 0..100 {
        let on = if n % 2 == 0 { &a } else { &b };
        receipts.push(on.append(said("shared", &format!("m{n}"))));
    }
    for receipt in receipts {
        receipt.await.expect("committed");
    }
    seen_by_a.wait_for(100).await;
    seen_by_b.wait_for(100).await;
    let ids: Vec<u64> = delivered(&seen_by_a).iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    assert_eq!(delivered(&seen_by_a), delivered(&seen_by_b));
}

#[tokio::test]
async fn a_node_whose_subscription_drops_catches_up_from_the_streams() {
    let server = RedisServer::start();
    let (a, _) = attached(Arc::new(node(&server).await));
    let (b, seen_by_b) = attached(Arc::new(node(&server).await));
    append(&*b, said("lobby", "first")).await;
    seen_by_b.wait_for(1).await;
    // Redis drops b's subscription (as when its connection falters); what
    // is said meanwhile must still reach it, once.
    let killed = Command::new("redis-cli")
        .args([
            "-p",
            &server.port.to_string(),
            "CLIENT",
            "KILL",
            "TYPE",
            "pubsub",
        ])
        .output()
        .expect("redis-cli runs");
    assert!(killed.status.success());
    for n in 0..20 {
        append(&*a, said("lobby", &format!("meanwhile {n}"))).await;
    }
    seen_by_b.wait_for(21).await;
    let ids: Vec<u64> = delivered(&seen_by_b).iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=21).collect::<Vec<_>>());
}

#[tokio::test]
async fn after_redis_loses_its_data_ids_go_on_above_what_was_seen() {
    let server = RedisServer::start();
    let port = server.port;
    let (log, _) = attached(Arc::new(node(&server).await));
    for n in 1..=5 {
        assert_eq!(append(&*log, said("lobby", &format!("m{n}"))).await, n);
    }
    drop(server);
    let refused = log.append(said("lobby", "while down")).await;
    assert!(matches!(refused, Err(LogError::Write(_))), "{refused:?}");
    assert!(log.health().is_err());
    let _server = RedisServer::start_on(port);
    // Retried as a client would until the node has reconnected.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let next = loop {
        match log.append(said("lobby", "after")).await {
            Ok(Committed::Room(message)) => break message.id,
            Ok(other) => panic!("{other:?}"),
            Err(LogError::Write(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(next, 6, "the id is not given again");
    let page = log
        .read(Query::After {
            room: room("lobby"),
            after: 0,
            up_to: u64::MAX,
            limit: 10,
        })
        .await
        .unwrap();
    let ids: Vec<u64> = page.iter().map(|m| m.id).collect();
    assert_eq!(ids, [6], "what Redis lost is not pretended to be there");
}

#[tokio::test]
async fn a_bad_url_or_an_absent_server_is_named() {
    for (url, expected) in [
        ("http://127.0.0.1:1", "not a Redis URL"),
        (
            &format!("redis://127.0.0.1:{}", free_port()),
            "cannot connect",
        ),
    ] {
        let opened = RedisLog::open(RedisOptions {
            url: url.to_string(),
            retention: Retention::default(),
        })
        .await;
        match opened {
            Err(LogError::Open { path, reason }) => {
                assert_eq!(path, url);
                assert!(reason.contains(expected), "{reason}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{url} opened"),
        }
    }
}
