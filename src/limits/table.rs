//! The accounting behind the connection limits, without locks or clocks of
//! its own: open connections in all and per address, and a token bucket of
//! new connections per address. Every call is given the time.
//!
//! Its memory is bounded whatever peers do. An address has a count only
//! while it has open connections, so there are never more counts than
//! connections (at most `--max-connections`). A rate bucket is kept only
//! until it is full again (swept every [`SWEEP_EVERY`]), and never more
//! than [`MAX_BUCKETS`] of them: an attacker with many IPv6 /64s fills the
//! table, and the fullest buckets (those that forget the least) are
//! evicted, an eighth of the table at a time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::time::Instant;

use super::{ConnectionLimits, Refused};

/// The most rate buckets kept: 16,384 addresses connecting within the time a
/// bucket takes to refill (about 100 bytes each, under 2 MB in all).
pub const MAX_BUCKETS: usize = 16_384;

/// How often full buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What the limits count per: an IPv4 address, or an IPv6 /64 (one
/// customer's network; an IPv4-mapped IPv6 address is the IPv4 address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl AddressKey {
    /// The key `ip` is counted under.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            // The top 64 bits of the 128: the cast keeps exactly those.
            IpAddr::V6(v6) => Self::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

/// One address's allowance of new connections: `tokens` as of `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The tokens at `now`, refilled at `rate` per second up to `burst`.
    fn tokens_at(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        (self.tokens + refill).min(burst)
    }
}

/// Open connections and recent arrivals, under the limits in force.
#[derive(Debug)]
pub struct Table {
    limits: ConnectionLimits,
    /// Every open connection, trusted or not.
    total: usize,
    /// Open connections per untrusted address; no entry at zero.
    open: HashMap<AddressKey, u32>,
    /// New-connection allowances per untrusted address.
    buckets: HashMap<AddressKey, Bucket>,
    swept: Instant,
}

impl Table {
    /// An empty table under `limits`, at `now`.
    pub fn new(limits: ConnectionLimits, now: Instant) -> Self {
        Self {
            limits,
            total: 0,
            open: HashMap::new(),
            buckets: HashMap::new(),
            swept: now,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Puts `limits` in force for the next connections; open ones stay.
    pub fn set_limits(&mut self, limits: ConnectionLimits) {
        self.limits = limits;
    }

    /// Open connections in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Addresses with a count and addresses with a bucket.
    pub fn entries(&self) -> (usize, usize) {
        (self.open.len(), self.buckets.len())
    }

    /// Counts a new connection from `ip` at `now` if the limits let it in:
    /// the key to release it under (`None` for a trusted address), or why
    /// it is refused. A refused connection is not counted.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<Option<AddressKey>, Refused> {
        if self.total >= self.limits.max_connections {
            return Err(Refused::ServerFull {
                max: self.limits.max_connections,
            });
        }
        if self.limits.trusted.contains(ip) {
            self.total += 1;
            return Ok(None);
        }
        let key = AddressKey::of(ip);
        let open = self.open.get(&key).copied().unwrap_or(0);
        let per_address = self.limits.per_address;
        if per_address > 0 && open as usize >= per_address {
            return Err(Refused::PerAddress { max: per_address });
        }
        self.take_token(key, now)?;
        self.open.insert(key, open + 1);
        self.total += 1;
        Ok(Some(key))
    }

    /// Counts a connection admitted under `key` as closed.
    pub fn release(&mut self, key: Option<AddressKey>) {
        self.total = self.total.saturating_sub(1);
        let Some(key) = key else { return };
        if let Some(open) = self.open.get_mut(&key) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(&key);
            }
        }
    }

    /// Takes one new connection from `key`'s bucket, or says how long
    /// until there is one.
    fn take_token(&mut self, key: AddressKey, now: Instant) -> Result<(), Refused> {
        let rate = self.limits.connect_rate;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = self.limits.connect_burst();
        self.sweep(now);
        let tokens = match self.buckets.get(&key) {
            Some(bucket) => bucket.tokens_at(now, rate, burst),
            None => {
                self.make_room(now);
                burst
            }
        };
        if tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - tokens) / rate);
            return Err(Refused::ConnectRate { rate, wait });
        }
        let bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        self.buckets.insert(key, bucket);
        Ok(())
    }

    /// Drops the buckets that are full again, every [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        let (rate, burst) = (self.limits.connect_rate, self.limits.connect_burst());
        self.buckets
            .retain(|_, bucket| bucket.tokens_at(now, rate, burst) < burst);
    }

    /// Before a new bucket goes in at [`MAX_BUCKETS`]: drops the full
    /// ones, and if that frees less than an eighth of the table, the
    /// fullest until an eighth is free.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < MAX_BUCKETS {
            return;
        }
        let (rate, burst) = (self.limits.connect_rate, self.limits.connect_burst());
        self.buckets
            .retain(|_, bucket| bucket.tokens_at(now, rate, burst) < burst);
        let target = MAX_BUCKETS - MAX_BUCKETS / 8;
        if self.buckets.len() <= target {
            return;
        }
        let mut fullest: Vec<(f64, AddressKey)> = self
            .buckets
            .iter()
            .map(|(key, bucket)| (bucket.tokens_at(now, rate, burst), *key))
            .collect();
        let evict = self.buckets.len() - target;
        fullest.select_nth_unstable_by(evict - 1, |a, b| b.0.total_cmp(&a.0));
        for (_, key) in &fullest[..evict] {
            self.buckets.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::cidr::TrustList;

    fn limits(per_address: usize, connect_rate: f64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 1_000_000,
            per_address,
            connect_rate,
            trusted: TrustList::default(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddressKey::of(ip("2001:db8:1:2:aaaa::1")),
            AddressKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            AddressKey::of(ip("2001:db8:1:2::1")),
            AddressKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddressKey::of(ip("::ffff:192.0.2.1")),
            AddressKey::of(ip("192.0.2.1"))
        );
        assert_ne!(
            AddressKey::of(ip("192.0.2.1")),
            AddressKey::of(ip("192.0.2.2"))
        );
    }

    #[test]
    fn an_address_gets_its_share_and_no_more_until_one_closes() {
        let now = Instant::now();
        let mut table = Table::new(limits(2, 0.0), now);
        let first = table.admit(ip("2001:db8::1"), now).unwrap();
        table.admit(ip("2001:db8::2"), now).unwrap();
        assert_eq!(
            table.admit(ip("2001:db8::3"), now),
            Err(Refused::PerAddress { max: 2 })
        );
        assert!(
            table.admit(ip("2001:db8:0:1::1"), now).is_ok(),
            "another /64"
        );
        table.release(first);
        assert!(table.admit(ip("2001:db8::3"), now).is_ok());
        assert_eq!(table.total(), 3);
    }

    #[test]
    fn the_server_fills_up_trusted_addresses_included() {
        let now = Instant::now();
        let mut table = Table::new(
            ConnectionLimits {
                max_connections: 2,
                trusted: TrustList::parse("192.0.2.0/24").unwrap(),
                ..limits(1, 1.0)
            },
            now,
        );
        let trusted = table.admit(ip("192.0.2.1"), now).unwrap();
        assert_eq!(trusted, None, "a trusted address has no count");
        table.admit(ip("192.0.2.1"), now).unwrap();
        assert_eq!(
            table.admit(ip("198.51.100.1"), now),
            Err(Refused::ServerFull { max: 2 })
        );
        table.release(trusted);
        assert!(table.admit(ip("198.51.100.1"), now).is_ok());
        assert_eq!(table.entries().0, 1);
    }

    #[test]
    fn the_rate_allows_a_burst_then_one_per_interval() {
        let start = Instant::now();
        let mut table = Table::new(limits(0, 2.0), start);
        for _ in 0..4 {
            let key = table.admit(ip("192.0.2.1"), start).unwrap();
            table.release(key);
        }
        match table.admit(ip("192.0.2.1"), start) {
            Err(Refused::ConnectRate { rate, wait }) => {
                assert_eq!(rate, 2.0);
                assert_eq!(wait, Duration::from_millis(500));
            }
            other => panic!("expected a rate refusal, got {other:?}"),
        }
        assert!(
            table.admit(ip("192.0.2.2"), start).is_ok(),
            "another address"
        );
        let later = start + Duration::from_millis(500);
        assert!(table.admit(ip("192.0.2.1"), later).is_ok());
        assert!(table.admit(ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn entries_go_when_connections_close_and_buckets_refill() {
        let start = Instant::now();
        let mut table = Table::new(limits(10, 1.0), start);
        let key = table.admit(ip("192.0.2.1"), start).unwrap();
        assert_eq!(table.entries(), (1, 1));
        table.release(key);
        assert_eq!(table.entries(), (0, 1), "the bucket is not full yet");
        let later = start + SWEEP_EVERY;
        let other = table.admit(ip("192.0.2.2"), later).unwrap();
        assert_eq!(table.entries(), (1, 1), "the full bucket was swept");
        table.release(other);
        assert_eq!(table.total(), 0);
    }

    #[test]
    fn buckets_never_outgrow_their_bound() {
        let now = Instant::now();
        let mut table = Table::new(limits(0, 1.0), now);
        // Each of these /64s connects once and stays below a full bucket.
        for n in 0..(MAX_BUCKETS as u64 * 3) {
            let address = IpAddr::V6(std::net::Ipv6Addr::from_bits(u128::from(n) << 64));
            let key = table.admit(address, now).unwrap();
            table.release(key);
            assert!(table.entries().1 <= MAX_BUCKETS);
        }
        assert_eq!(table.entries().0, 0);
    }

    #[test]
    fn new_limits_apply_to_the_next_connection() {
        let now = Instant::now();
        let mut table = Table::new(limits(0, 0.0), now);
        for _ in 0..3 {
            table.admit(ip("192.0.2.1"), now).unwrap();
        }
        table.set_limits(limits(2, 0.0));
        assert_eq!(
            table.admit(ip("192.0.2.1"), now),
            Err(Refused::PerAddress { max: 2 })
        );
        assert_eq!(table.limits().per_address, 2);
    }
}
