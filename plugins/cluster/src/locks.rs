//! Cluster-wide named locks: leases and fencing tokens decided by the Raft
//! state machine, so one authority answers for the whole cluster.
//!
//! Every `LOCK_REQUEST`, release and holder release on any node becomes a
//! Raft command ([`crate::raft::Command`]); the committed log applies it to
//! [`LockTable`] on every node in the same order. Hence:
//!
//! - **One holder at a time.** A name is granted only when it is free or its
//!   lease expired, in the one order of the log.
//! - **Tokens only grow.** A grant's token is `max(last + 1, now_ms * 1000)`
//!   for its name, where `last` is the name's previous token (kept for
//!   ever, also after release). The table is part of the replicated,
//!   snapshotted Raft state: it survives the loss of any node, the leader
//!   included, and restarts. (`now_ms * 1000` keeps tokens above those the
//!   earlier per-node lock manager issued, which derived them the same way.)
//! - **Time is the leader's.** The leader stamps `now_ms` into a lock
//!   command when it proposes it (`ClusterRaft::propose`), and the table
//!   only moves its clock forward (`clock_ms` = the largest stamp seen), so
//!   a new leader whose clock is behind never revives an expired lease or
//!   shortens a live one. Leases assume node clocks agree to well within a
//!   lease (1 s at least).
//! - **Holders are connections.** A holder is `<nodeId>/<generation>/<host
//!   holder>` (`crate::lock_service` prefixes the host's connection name
//!   with the node's gossip generation, which tells a restarted node's
//!   connections from its earlier ones). Locks are released when the
//!   connection closes
//!   (`ReleaseHolder`), when their node is confirmed dead or restarts
//!   (`ReleaseNode`), or when the lease ends.
//!
//! Applying is deterministic: it reads only the table and the command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Shortest lease (ms).
pub const MIN_TTL_MS: u64 = 1_000;
/// Longest lease (ms).
pub const MAX_TTL_MS: u64 = 300_000;
/// Expired leases are swept every this many lock commands.
const SWEEP_EVERY: u64 = 256;

/// A lease on a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder (see the module doc).
    pub holder: String,
    /// The token it was granted with.
    pub token: u64,
    /// Cluster time (ms) after which the lease is over.
    pub expires_at: u64,
}

/// The lock state of the cluster, as the Raft log built it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    /// Live (possibly expired, not yet swept) leases by name.
    pub leases: BTreeMap<String, Lease>,
    /// The last token granted per name; never removed.
    pub tokens: BTreeMap<String, u64>,
    /// Cluster time: the largest `now_ms` of any applied lock command.
    pub clock_ms: u64,
    /// Lock commands applied (drives the periodic sweep).
    pub applied: u64,
}

/// What a lock request decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The requester holds the name now.
    pub granted: bool,
    /// Its token (0 when refused).
    pub token: u64,
}

impl LockTable {
    fn tick(&mut self, now_ms: u64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.applied += 1;
        if self.applied % SWEEP_EVERY == 0 {
            let now = self.clock_ms;
            self.leases.retain(|_, l| l.expires_at >= now);
        }
        self.clock_ms
    }

    /// Tries to take `name` for `holder`. Free or expired: granted with a
    /// new token. Held by the same holder: the lease is extended and the
    /// token kept. Held by another: refused (never queued). `ttl_ms` is
    /// clamped to `MIN_TTL_MS..=MAX_TTL_MS`.
    pub fn lock(&mut self, name: &str, holder: &str, ttl_ms: u64, now_ms: u64) -> Grant {
        let now = self.tick(now_ms);
        let ttl = ttl_ms.clamp(MIN_TTL_MS, MAX_TTL_MS);
        if let Some(l) = self.leases.get_mut(name) {
            if l.expires_at >= now {
                if l.holder == holder {
                    l.expires_at = l.expires_at.max(now + ttl);
                    return Grant {
                        granted: true,
                        token: l.token,
                    };
                }
                return Grant {
                    granted: false,
                    token: 0,
                };
            }
        }
        let last = self.tokens.get(name).copied().unwrap_or(0);
        let token = (last + 1).max(now.saturating_mul(1000));
        self.tokens.insert(name.to_owned(), token);
        self.leases.insert(
            name.to_owned(),
            Lease {
                holder: holder.to_owned(),
                token,
                expires_at: now + ttl,
            },
        );
        Grant {
            granted: true,
            token,
        }
    }

    /// Releases `name` if `holder` holds it with `token`; false otherwise.
    pub fn unlock(&mut self, name: &str, holder: &str, token: u64) -> bool {
        let matches = self
            .leases
            .get(name)
            .is_some_and(|l| l.holder == holder && l.token == token);
        if matches {
            self.leases.remove(name);
        }
        matches
    }

    /// Releases every lease of `holder`; returns how many.
    pub fn release_holder(&mut self, holder: &str) -> u32 {
        self.release_where(|l| l.holder == holder)
    }

    /// Releases every lease taken through node `node_id` (holders
    /// `<node_id>/...`), except those whose holder starts with `keep` (the
    /// node's current incarnation); returns how many.
    pub fn release_node(&mut self, node_id: &str, keep: Option<&str>) -> u32 {
        let prefix = format!("{node_id}/");
        self.release_where(|l| {
            l.holder.starts_with(&prefix) && !keep.is_some_and(|k| l.holder.starts_with(k))
        })
    }

    fn release_where(&mut self, pick: impl Fn(&Lease) -> bool) -> u32 {
        let before = self.leases.len();
        self.leases.retain(|_, l| !pick(l));
        u32::try_from(before - self.leases.len()).unwrap_or(u32::MAX)
    }

    /// Leases not yet expired at the table's clock.
    #[must_use]
    pub fn held(&self) -> usize {
        self.leases
            .values()
            .filter(|l| l.expires_at >= self.clock_ms)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn t10_grant_refuse_extend_release() {
        let mut t = LockTable::default();
        let g = t.lock("a", "n1/1/1", 5_000, 1_000);
        assert!(g.granted);
        assert!(!t.lock("a", "n2/1/1", 5_000, 1_001).granted);
        let again = t.lock("a", "n1/1/1", 5_000, 1_002);
        assert_eq!(again, g, "same holder keeps its token");
        assert!(!t.unlock("a", "n2/1/1", g.token));
        assert!(!t.unlock("a", "n1/1/1", g.token + 1));
        assert!(t.unlock("a", "n1/1/1", g.token));
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn t11_tokens_strictly_increase_also_after_the_lock_went_idle() {
        let mut t = LockTable::default();
        let mut last = 0;
        for i in 0..5 {
            let g = t.lock("a", "c", 1_000, 10);
            assert!(g.token > last, "round {i}");
            last = g.token;
            assert!(t.unlock("a", "c", g.token));
        }
    }

    #[test]
    fn t12_an_expired_lease_is_free_and_ttl_is_clamped() {
        let mut t = LockTable::default();
        let g = t.lock("a", "c1", 0, 1_000);
        assert!(g.granted);
        // Clamped to 1000 ms: still held at 2000, free after.
        assert!(!t.lock("a", "c2", 1_000, 2_000).granted);
        let g2 = t.lock("a", "c2", 1_000, 2_001);
        assert!(g2.granted && g2.token > g.token);
    }

    #[test]
    fn t13_a_clock_that_goes_back_neither_revives_nor_shortens_a_lease() {
        let mut t = LockTable::default();
        let g = t.lock("a", "c1", 1_000, 10_000);
        // A new leader whose clock is 5 s behind: the lease still runs on
        // the table's clock (it is not over at "6 000").
        assert!(!t.lock("a", "c2", 1_000, 5_000).granted);
        // Expired at 11 000 on the table's clock, whatever the stamp says.
        let g2 = t.lock("a", "c2", 1_000, 11_001);
        assert!(g2.granted && g2.token > g.token);
        assert!(!t.lock("a", "c1", 1_000, 3_000).granted);
    }

    #[test]
    fn t14_release_holder_and_node_free_only_their_locks() {
        let mut t = LockTable::default();
        t.lock("a", "n1/7/1", 5_000, 0);
        t.lock("b", "n1/7/2", 5_000, 0);
        t.lock("c", "n1/9/1", 5_000, 0);
        t.lock("d", "n10/7/1", 5_000, 0);
        assert_eq!(t.release_holder("n1/7/1"), 1);
        // A restarted n1 (boot 9) drops what its earlier life (7) held.
        assert_eq!(t.release_node("n1", Some("n1/9/")), 1);
        assert_eq!(t.held(), 2, "c (n1's current life) and d (n10) stay");
        assert_eq!(t.release_node("n1", None), 1);
        assert_eq!(t.held(), 1);
    }

    #[test]
    fn t15_expired_leases_are_swept_and_their_names_keep_their_tokens() {
        let mut t = LockTable::default();
        let first = t.lock("x", "c", 1_000, 0).token;
        for i in 0..SWEEP_EVERY {
            t.lock(&format!("n{i}"), "c", 1_000, 5_000);
        }
        assert!(!t.leases.contains_key("x"), "swept");
        assert!(t.lock("x", "d", 1_000, 5_001).token > first);
    }

    proptest! {
        /// Whatever the interleaving of requests, releases and clock stamps,
        /// every grant of a new lease carries a token above every earlier
        /// token of its name, and a name never has two live holders.
        #[test]
        fn t20_tokens_only_grow_and_holders_never_overlap(
            ops in proptest::collection::vec((0u8..4, 0u8..3, 0u8..3, 0u64..4_000), 1..200)
        ) {
            let mut t = LockTable::default();
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            let mut now = 0u64;
            for (op, name, holder, dt) in ops {
                // Stamps mostly move forward, sometimes back (a new leader).
                now = if dt > 3_500 { now.saturating_sub(dt - 3_500) } else { now + dt };
                let name = format!("l{name}");
                let holder = format!("n{holder}/1/1");
                match op {
                    0 | 1 => {
                        let before = t.leases.get(&name).cloned();
                        let g = t.lock(&name, &holder, 1_000, now);
                        if g.granted {
                            let prev = last.get(&name).copied().unwrap_or(0);
                            let extended = before.as_ref().is_some_and(|l| l.holder == holder && l.token == g.token);
                            prop_assert!(extended || g.token > prev, "{name}: {} <= {prev}", g.token);
                            if let Some(b) = before {
                                prop_assert!(b.holder == holder || b.expires_at < t.clock_ms,
                                    "{name} granted to {holder} while {} held it", b.holder);
                            }
                            last.insert(name, g.token);
                        }
                    }
                    2 => {
                        if let Some(l) = t.leases.get(&name).cloned() {
                            t.unlock(&name, &l.holder, l.token);
                        }
                    }
                    _ => {
                        t.release_holder(&holder);
                    }
                }
            }
        }
    }
}
