//! Connection limits (docs/PROTOCOL.md 5.5): connections at once, and per
//! client address connections at once and new connections per second,
//! with a list of trusted addresses they do not apply to. A policy every
//! edge shares: the server asks the [`Gate`] once per accepted connection
//! and holds the [`Slot`] it gets for as long as the connection lives,
//! WebSocket sessions included.

pub mod cidr;
pub mod table;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::Counter;
use tokio::time::Instant;

use cidr::TrustList;
use table::{AddressKey, Table};

/// The limits in force; replaced as a whole at run time
/// ([`Gate::set_limits`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// The most connections at once, from everyone.
    pub max_connections: usize,
    /// The most connections at once from one address (an IPv6 /64); 0 for no limit.
    pub per_address: usize,
    /// New connections per second from one address; 0 for no limit.
    pub connect_rate: f64,
    /// Addresses neither per-address limit applies to.
    pub trusted: TrustList,
}

impl ConnectionLimits {
    /// How many new connections one address may open at once: two
    /// seconds' worth, at least one.
    pub fn connect_burst(&self) -> f64 {
        (self.connect_rate * 2.0).max(1.0)
    }
}

/// Why a connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum Refused {
    /// Every slot of `--max-connections` is taken.
    #[error("server full ({max} connections)")]
    ServerFull {
        /// The limit.
        max: usize,
    },
    /// The address has `--max-per-address` connections open.
    #[error("too many connections from your address ({max})")]
    PerAddress {
        /// The limit.
        max: usize,
    },
    /// The address opens connections faster than `--connect-rate`.
    #[error("too many new connections from your address ({rate} per second)")]
    ConnectRate {
        /// The limit, per second.
        rate: f64,
        /// How long until the address may connect again.
        wait: Duration,
    },
}

impl Refused {
    /// The reason as `/metrics` labels it and HTTP errors code it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ServerFull { .. } => "server_full",
            Self::PerAddress { .. } => "per_address",
            Self::ConnectRate { .. } => "connect_rate",
        }
    }

    /// Whole seconds a client should wait before trying again, at least one.
    pub fn retry_after(&self) -> u64 {
        match self {
            Self::ServerFull { .. } | Self::PerAddress { .. } => 5,
            Self::ConnectRate { wait, .. } => wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

/// Decides, per accepted connection, whether it may be served, under limits
/// that can be replaced while the server runs.
#[derive(Debug)]
pub struct Gate {
    table: Mutex<Table>,
    refused: RefusedCounters,
}

impl Gate {
    /// A gate with no connection open, under `limits`. Looks up its
    /// `/metrics` counters now: make it after the recorder is installed.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::new(limits, Instant::now())),
            refused: RefusedCounters::new(),
        })
    }

    /// Puts `limits` in force from the next connection on; connections
    /// already open stay, even if they are now over a limit.
    pub fn set_limits(&self, limits: ConnectionLimits) {
        self.lock().set_limits(limits);
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnectionLimits {
        self.lock().limits().clone()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total()
    }

    /// Lets a connection from `ip` in, counted until the last clone of its
    /// [`Slot`] is dropped, or says why not (and counts the refusal).
    ///
    /// # Errors
    /// The limit the connection is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let admitted = self.lock().admit(ip, Instant::now());
        match admitted {
            Ok(key) => Ok(Slot(Arc::new(Pass {
                gate: Arc::clone(self),
                key,
                handed_off: AtomicBool::new(false),
            }))),
            Err(refused) => {
                self.refused.count(&refused);
                Err(refused)
            }
        }
    }

    /// The table, even if a panicking thread poisoned the lock (every
    /// change leaves it consistent).
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An admitted connection's place under the limits, given back when the
/// last clone is dropped. Cloned into a WebSocket session, it keeps the
/// connection counted after the HTTP exchange that upgraded it ends.
#[derive(Clone, Debug)]
pub struct Slot(Arc<Pass>);

impl Slot {
    /// A clone for a session that outlives the connection's first task,
    /// which from now on [`Self::is_handed_off`].
    pub fn hand_off(&self) -> Self {
        self.0.handed_off.store(true, Ordering::Relaxed);
        self.clone()
    }

    /// Whether part of the connection lives on elsewhere ([`Self::hand_off`]).
    pub fn is_handed_off(&self) -> bool {
        self.0.handed_off.load(Ordering::Relaxed)
    }
}

/// What a [`Slot`] shares: releasing it counts the connection as closed.
#[derive(Debug)]
struct Pass {
    gate: Arc<Gate>,
    key: Option<AddressKey>,
    handed_off: AtomicBool,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.lock().release(self.key);
    }
}

/// `switchboard_refused_connections_total`, one counter per reason, looked
/// up once.
#[derive(Debug)]
struct RefusedCounters {
    server_full: Counter,
    per_address: Counter,
    connect_rate: Counter,
}

impl RefusedCounters {
    /// Registers its counters (shown at 0 until something is refused); the
    /// description is with the others in `transport::prometheus`.
    fn new() -> Self {
        const NAME: &str = "switchboard_refused_connections_total";
        Self {
            server_full: metrics::counter!(NAME, "reason" => "server_full"),
            per_address: metrics::counter!(NAME, "reason" => "per_address"),
            connect_rate: metrics::counter!(NAME, "reason" => "connect_rate"),
        }
    }

    /// Counts one refusal.
    fn count(&self, refused: &Refused) {
        match refused {
            Refused::ServerFull { .. } => &self.server_full,
            Refused::PerAddress { .. } => &self.per_address,
            Refused::ConnectRate { .. } => &self.connect_rate,
        }
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 3,
            per_address,
            connect_rate: 1.0,
            trusted: TrustList::default(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_counts_until_its_last_clone_goes() {
        let gate = Gate::new(limits(0));
        let slot = gate.admit(ip("192.0.2.1")).unwrap();
        assert!(!slot.is_handed_off());
        let session = slot.hand_off();
        assert!(slot.is_handed_off());
        drop(slot);
        assert_eq!(gate.open(), 1, "the session still holds it");
        drop(session);
        assert_eq!(gate.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn set_limits_takes_effect_at_the_next_accept() {
        let gate = Gate::new(limits(0));
        let _held = gate.admit(ip("192.0.2.1")).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let _second = gate.admit(ip("192.0.2.1")).unwrap();
        gate.set_limits(limits(2));
        assert_eq!(gate.limits().per_address, 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            gate.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::PerAddress { max: 2 }
        );
        gate.set_limits(ConnectionLimits {
            trusted: TrustList::parse("192.0.2.0/24").unwrap(),
            ..limits(2)
        });
        let _trusted = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            gate.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::ServerFull { max: 3 }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_connect_rate_refills_with_time() {
        let gate = Gate::new(limits(0));
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(gate.admit(ip("192.0.2.1")).unwrap());
        }
        held.clear();
        let refused = gate.admit(ip("192.0.2.1")).unwrap_err();
        assert_eq!(refused.label(), "connect_rate");
        assert_eq!(refused.retry_after(), 1);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(gate.admit(ip("192.0.2.1")).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(gate.admit(ip("192.0.2.1")).is_ok());
    }
}
