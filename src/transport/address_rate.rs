//! The rate limit of HTTP posts (docs/PROTOCOL.md 5.5): a token bucket per
//! client address, counted like the connection limits count it
//! (`limits::table::AddressKey`: IPv6 per /64), with the meaning `--rate`
//! and `--burst` have for a connection.
//!
//! The table is bounded. A bucket that has refilled to its burst is no
//! different from a new one, so those are forgotten first; when every
//! address tracked is still paying off a burst, the eighth closest to full
//! make way (they lose the least by starting afresh), so the sweep runs
//! once per eighth of the table, not once per new address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::hub::rate::TokenBucket;
use crate::limits::table::AddressKey;

/// How many client addresses are tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// Token buckets by client address.
#[derive(Debug)]
pub struct AddressBuckets {
    capacity: usize,
    table: Mutex<Table>,
}

/// The limit in force and the buckets kept under it.
#[derive(Debug)]
struct Table {
    rate: f64,
    burst: u32,
    buckets: HashMap<AddressKey, TokenBucket>,
}

impl AddressBuckets {
    /// `rate` events a second per address on average, bursts of `burst`,
    /// tracking at most `capacity` addresses.
    pub fn new(rate: f64, burst: u32, capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                rate,
                burst,
                buckets: HashMap::new(),
            }),
        }
    }

    /// Puts a new limit in force (SIGHUP): every address starts afresh
    /// under it. The same limit again changes nothing.
    pub fn reset(&self, rate: f64, burst: u32) {
        let mut table = self.lock();
        if table.rate == rate && table.burst == burst {
            return;
        }
        table.rate = rate;
        table.burst = burst;
        table.buckets = HashMap::new();
    }

    /// Counts one event from `addr` at `now`; over the limit, how long until
    /// its next token. A rate of 0 is no limit.
    ///
    /// # Errors
    /// The wait, when `addr` has no token left.
    pub fn admit(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = AddressKey::of(addr);
        let mut table = self.lock();
        let Table {
            rate,
            burst,
            buckets,
        } = &mut *table;
        if *rate <= 0.0 {
            return Ok(());
        }
        if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
            self.make_way(buckets, now);
        }
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(*rate, *burst, now));
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(bucket.wait())
        }
    }

    /// The table; a poisoned lock is taken over (each change leaves it whole).
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Frees at least an eighth of the table: full buckets first, then those
    /// closest to full.
    fn make_way(&self, buckets: &mut HashMap<AddressKey, TokenBucket>, now: Instant) {
        buckets.retain(|_, bucket| !bucket.is_full(now));
        let excess = (buckets.len() + self.capacity / 8 + 1).saturating_sub(self.capacity);
        if excess == 0 {
            return;
        }
        let mut levels: Vec<(f64, AddressKey)> = buckets
            .iter()
            .map(|(key, bucket)| (bucket.level(now), *key))
            .collect();
        let excess = excess.min(levels.len());
        if excess > 0 {
            levels.select_nth_unstable_by(excess - 1, |a, b| b.0.total_cmp(&a.0));
        }
        for (_, key) in &levels[..excess] {
            buckets.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Now, on tokio's paused clock.
    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn admitted(buckets: &AddressBuckets, addr: IpAddr, tries: usize) -> usize {
        (0..tries)
            .filter(|_| buckets.admit(addr, now()).is_ok())
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn each_address_gets_its_burst_then_the_rate() {
        let buckets = AddressBuckets::new(2.0, 3, 16);
        assert_eq!(admitted(&buckets, v4(1), 10), 3);
        assert_eq!(
            admitted(&buckets, v4(2), 10),
            3,
            "another address is not held back"
        );
        let wait = buckets.admit(v4(1), now()).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(admitted(&buckets, v4(1), 10), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_host_counts_per_slash_64() {
        let buckets = AddressBuckets::new(1.0, 2, 16);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(admitted(&buckets, one, 1), 1);
        assert_eq!(admitted(&buckets, same_64, 5), 1, "one bucket for the /64");
        assert_eq!(admitted(&buckets, other_64, 5), 2);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(admitted(&buckets, mapped, 5), 2);
        assert_eq!(
            admitted(&buckets, v4(7), 5),
            0,
            "mapped IPv4 is the IPv4 address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refilled_buckets_are_forgotten_first() {
        let buckets = AddressBuckets::new(10.0, 2, 4);
        for last in 1..=4 {
            assert_eq!(admitted(&buckets, v4(last), 2), 2);
        }
        tokio::time::advance(Duration::from_millis(200)).await;
        // Address 1 spends again: its bucket is the only one not full.
        assert_eq!(admitted(&buckets, v4(1), 1), 1);
        assert_eq!(admitted(&buckets, v4(5), 1), 1);
        assert_eq!(buckets.lock().buckets.len(), 2, "the full buckets went");
        assert_eq!(admitted(&buckets, v4(1), 5), 1, "address 1 kept its debt");
    }

    #[tokio::test(start_paused = true)]
    async fn a_table_of_debtors_stays_bounded_and_keeps_the_deepest() {
        let buckets = AddressBuckets::new(1.0, 8, 8);
        // Address `n` spends `n` of its 8 tokens: address 8 is emptiest.
        for last in 1..=8u8 {
            assert_eq!(
                admitted(&buckets, v4(last), usize::from(last)),
                usize::from(last)
            );
        }
        for last in 9..=200u8 {
            assert!(buckets.admit(v4(last), now()).is_ok());
            assert!(buckets.lock().buckets.len() <= 8);
        }
        assert_eq!(
            admitted(&buckets, v4(8), 1),
            0,
            "the emptiest bucket stayed"
        );
    }
}
