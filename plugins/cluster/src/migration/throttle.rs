//! Pacing of transfer chunks to a byte rate.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Paces a byte stream to a rate: each `take` waits for its slot, so the
/// bytes sent by all transfers of a node together stay at the rate.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    next: Mutex<Instant>,
}

impl Throttle {
    /// A throttle at `bytes_per_sec` (0: unthrottled).
    #[must_use]
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let start = {
            let mut next = self.next.lock();
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}
