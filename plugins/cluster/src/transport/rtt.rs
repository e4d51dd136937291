//! Measured round trips per peer: an exponentially weighted moving average
//! (EWMA) of the time [`Transport::request`](super::Transport::request)
//! waited for each answer, by destination address.
//!
//! Every answered request counts (an error the peer's handler returned is
//! an answer too); timeouts, broken connections and requests to this node
//! itself do not. The figure includes the peer's handling time, which is
//! what a reader waits for: replica choice for reads
//! (`crate::scatter::replicas`) prefers the peer with the lowest one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::Mutex;

/// Weight of the newest sample: 0.2 follows a change within about ten
/// samples without jumping at one slow answer.
pub const RTT_ALPHA: f64 = 0.2;

/// The EWMA round trip per destination.
#[derive(Debug, Default)]
pub struct RttTable {
    by_addr: Mutex<HashMap<SocketAddr, f64>>,
}

impl RttTable {
    /// Adds one answered request's round trip to `addr`'s average (the
    /// first sample is the average).
    pub fn record(&self, addr: SocketAddr, rtt: Duration) {
        let sample = rtt.as_secs_f64() * 1e6;
        let mut m = self.by_addr.lock();
        m.entry(addr)
            .and_modify(|avg| *avg += RTT_ALPHA * (sample - *avg))
            .or_insert(sample);
    }

    /// The average round trip to `addr`; `None` before its first answer.
    #[must_use]
    pub fn get(&self, addr: SocketAddr) -> Option<Duration> {
        self.by_addr
            .lock()
            .get(&addr)
            .map(|us| Duration::from_secs_f64(us.max(0.0) / 1e6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_the_first_sample_is_the_average_then_each_new_one_weighs_a_fifth() {
        let t = RttTable::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert_eq!(t.get(a), None);
        t.record(a, Duration::from_micros(1_000));
        assert_eq!(t.get(a), Some(Duration::from_micros(1_000)));
        t.record(a, Duration::from_micros(2_000));
        // 1000 + 0.2 * (2000 - 1000)
        assert_eq!(t.get(a).unwrap().as_micros(), 1_200);
        assert_eq!(t.get(b), None, "addresses are kept apart");
    }
}
