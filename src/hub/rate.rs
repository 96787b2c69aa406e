//! A token bucket: how many messages a connection may send, and how fast.

use std::time::{Duration, Instant};

/// Allows `rate` events a second on average and bursts of up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled_at: now,
        }
    }

    /// Takes one token if there is one; `false` means the event is over the limit.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.tokens = self.level(now);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The tokens the bucket holds at `now`, refilled since it was last used.
    pub fn level(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst)
    }

    /// Whether the bucket has refilled to its burst by `now`: it is then no
    /// different from a new one, and can be forgotten.
    pub fn is_full(&self, now: Instant) -> bool {
        self.level(now) >= self.burst
    }

    /// How long until the next token, when there is none now.
    pub fn wait(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 50, start);
        assert_eq!((0..60).filter(|_| bucket.try_take(start)).count(), 50);
        assert!(!bucket.try_take(start));
        let later = start + Duration::from_millis(500);
        assert_eq!((0..60).filter(|_| bucket.try_take(later)).count(), 10);
    }

    #[test]
    fn refills_no_further_than_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 5, start);
        let much_later = start + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| bucket.try_take(much_later)).count(), 5);
        assert!(bucket.wait() > Duration::ZERO);
    }

    #[test]
    fn is_full_once_refilled_to_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5, start);
        assert!(bucket.is_full(start));
        assert!(bucket.try_take(start));
        assert!(!bucket.is_full(start));
        assert!(!bucket.is_full(start + Duration::from_millis(50)));
        assert!(bucket.is_full(start + Duration::from_millis(100)));
    }
}
