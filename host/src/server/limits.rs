//! Load limits of the front end: a token bucket per connection and the
//! node-wide in-flight cap.
//!
//! - [`TokenBucket`]: each connection is charged by the real number of items
//!   it sends (the ops of an `OP_BATCH`, the messages of a `BATCH`, never the
//!   count a client claims). An empty bucket answers `ERROR 429` and drops the
//!   frame; the connection stays open.
//! - [`InFlight`]: requests that reach the modules hold a permit; when none
//!   is left the node is overloaded and sheds the request with `ERROR 429`
//!   instead of queueing without bound.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    #[must_use]
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        Self {
            rate: rate_per_sec,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens if there are that many (after refilling for the
    /// time passed); otherwise takes nothing and returns false.
    pub fn charge(&mut self, n: usize) -> bool {
        self.charge_at(n, Instant::now())
    }

    /// [`Self::charge`] at a given instant (tests).
    pub fn charge_at(&mut self, n: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        // item counts are far below 2^52
        let n = n as f64;
        if n <= self.tokens {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// The node-wide cap on requests being processed.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
}

impl InFlight {
    /// A cap of `max` concurrent requests.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
        }
    }

    /// A permit, or `None` when the node is at its cap (answer `ERROR 429`).
    #[must_use]
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Permits currently free.
    #[must_use]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn t10_bucket_charges_real_counts_and_refills_with_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 10.0);
        b.last = t0;
        assert!(b.charge_at(10, t0), "a full bucket pays the burst");
        assert!(!b.charge_at(1, t0), "then it is empty");
        assert!(
            !b.charge_at(6, t0 + Duration::from_millis(50)),
            "50 ms refill 5 tokens, not 6"
        );
        // The failed charge took nothing: the 5 refilled tokens are still there.
        assert!(b.charge_at(5, t0 + Duration::from_millis(50)));
        assert!(
            b.charge_at(10, t0 + Duration::from_secs(60)),
            "refill is capped at the burst"
        );
        assert!(!b.charge_at(1, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn t11_in_flight_cap_sheds_when_exhausted_and_recovers() {
        let f = InFlight::new(2);
        let a = f.try_acquire().unwrap();
        let _b = f.try_acquire().unwrap();
        assert!(f.try_acquire().is_none());
        drop(a);
        assert!(f.try_acquire().is_some());
    }
}
