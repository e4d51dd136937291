//! A checker for lock histories: what clients saw while contending for
//! named locks, checked for the two promises of a lock service.
//!
//! 1. **Tokens only grow.** Per name, the grants ordered by the time their
//!    holder learned of them carry strictly increasing fencing tokens.
//! 2. **One holder at a time.** Per name, a grant is learned only after the
//!    previous holder stopped holding (sent its release, or saw its
//!    connection die, or its lease ran out).
//!
//! Times are offsets on one clock of the process that drove the clients
//! (`Instant` since the run began), so they order events across clients.
//! The checker is pure: `t43_cluster_locks` feeds it a history from real
//! processes, and its unit tests feed it histories from the real lock table
//! with and without a counter that resets on restart (a negative control:
//! the checker must catch the reset).

use std::collections::BTreeMap;
use std::time::Duration;

/// One grant a client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Lock name.
    pub name: String,
    /// The client that held it.
    pub client: String,
    /// Its fencing token.
    pub token: u64,
    /// When the client learned of the grant.
    pub acquired: Duration,
    /// When it stopped holding: release sent, connection lost, or lease end.
    pub released: Duration,
}

/// Checks `history` (any order); `Err` names the first violation found.
///
/// # Errors
/// A text naming the two grants that break a promise.
pub fn check(history: &[Held]) -> Result<(), String> {
    let mut by_name: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
    for h in history {
        if h.released < h.acquired {
            return Err(format!("{h:?} ends before it starts"));
        }
        by_name.entry(&h.name).or_default().push(h);
    }
    for (name, mut grants) in by_name {
        grants.sort_by_key(|h| (h.acquired, h.token));
        for w in grants.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b.token <= a.token {
                return Err(format!(
                    "lock {name}: token {} granted to {} at {:?} is not above token {} granted to {} at {:?}",
                    b.token, b.client, b.acquired, a.token, a.client, a.acquired
                ));
            }
            if b.acquired < a.released {
                return Err(format!(
                    "lock {name}: {} learned of its grant (token {}) at {:?} while {} still held it (token {}, until {:?})",
                    b.client, b.token, b.acquired, a.client, a.token, a.released
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_cluster::locks::LockTable;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Two clients take turns on one lock served by the real lock table;
    /// the authority "restarts" every 5 grants, and `reset` decides whether
    /// it keeps its state (as the Raft-replicated table does) or starts
    /// from nothing (a lock manager that keeps tokens in memory).
    fn simulate(reset: bool) -> Vec<Held> {
        let mut table = LockTable::default();
        let mut out = Vec::new();
        // The authority's clock (it may step back at a restart: a new
        // leader) and the driver's, which only moves forward.
        let mut now = 10_000u64;
        let mut seen = 0u64;
        for i in 0..20u64 {
            if i % 5 == 0 && i > 0 && reset {
                table = LockTable::default();
            }
            let client = format!("c{}", i % 2);
            let g = table.lock("x", &client, 1_000, now);
            assert!(g.granted);
            out.push(Held {
                name: "x".into(),
                client: client.clone(),
                token: g.token,
                acquired: ms(seen),
                released: ms(seen + 10),
            });
            seen += 20;
            assert!(table.unlock("x", &client, g.token));
            // The clock may step back after a restart (a new leader).
            now = if i % 5 == 4 { now - 500 + 20 } else { now + 20 };
        }
        out
    }

    #[test]
    fn t10_a_history_from_the_replicated_lock_table_passes() {
        check(&simulate(false)).unwrap();
    }

    #[test]
    fn t11_negative_control_a_counter_that_resets_on_restart_is_caught() {
        let e = check(&simulate(true)).unwrap_err();
        assert!(e.contains("is not above token"), "{e}");
    }

    #[test]
    fn t12_overlapping_holders_are_caught() {
        let h = |c: &str, t, a, r| Held {
            name: "x".into(),
            client: c.into(),
            token: t,
            acquired: ms(a),
            released: ms(r),
        };
        check(&[h("a", 1, 0, 10), h("b", 2, 10, 20)]).unwrap();
        let e = check(&[h("a", 1, 0, 10), h("b", 2, 5, 20)]).unwrap_err();
        assert!(e.contains("while a still held it"), "{e}");
    }
}
