//! The epoch state's side of the cluster licence ([`super::licence`]):
//! which listed tombstones this node's devices license, the promise an
//! acceptance makes, applying a commit, and the safety step for commits a
//! node did not take part in.

use std::collections::{BTreeSet, HashMap, HashSet};

use hangar_core::Timestamp;
use sha2::{Digest, Sha256};

use super::{low_water, Epochs, Tombstone};

/// A listed tombstone's name in licence messages ([`item_name`]); `None`
/// for a tombstone listed without its key (never pruned in a cluster).
#[must_use]
pub fn item_of(t: &Tombstone) -> Option<u64> {
    t.item
}

/// The name of the tombstone of `tag` removed from `key` of `map`: the
/// first 8 bytes of SHA-256 over the three, each followed by a 0 byte.
#[must_use]
pub fn item_name(map: &str, key: &str, tag: &str) -> u64 {
    let mut h = Sha256::new();
    for part in [map, key, tag] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// What applying a commit on this node is to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitPlan {
    /// Tags to drop from storage, by map.
    pub by_map: HashMap<String, Vec<String>>,
    /// The items found in this node's lists.
    pub items: HashSet<u64>,
    /// One past the newest epoch listing one of them: what the commit's
    /// promise raises `pruned_below` to.
    pub below: u64,
    /// The epochs listing them (a copy listed again later is left listed;
    /// proposed again, it is pruned then).
    pub epochs: BTreeSet<u64>,
}

impl Epochs {
    /// The keyed tombstones of the closed epochs below the low-water mark
    /// (every remembered device confirmed them) that `skip` does not
    /// reject, oldest epoch first, at most `cap`: what this node proposes.
    /// Empty without protection.
    #[must_use]
    pub fn licensed(&self, cap: usize, skip: impl Fn(u64) -> bool) -> Vec<u64> {
        if !self.cfg.epoch_protection {
            return Vec::new();
        }
        let st = self.state.lock();
        let below = low_water(&st.p);
        st.closed
            .range(..below)
            .flat_map(|(_, list)| list.iter().filter_map(item_of))
            .filter(|i| !skip(*i))
            .take(cap)
            .collect()
    }

    /// Of `items`, those this node's devices license (listed in a closed
    /// epoch below the low-water mark), each with its tombstone and epoch.
    #[must_use]
    pub fn licensed_among(&self, items: &[u64]) -> Vec<(u64, Tombstone, u64)> {
        if !self.cfg.epoch_protection {
            return Vec::new();
        }
        let wanted: HashSet<u64> = items.iter().copied().collect();
        let st = self.state.lock();
        let below = low_water(&st.p);
        let mut out = Vec::new();
        let mut found = HashSet::new();
        // Proposals take the oldest epochs first: the scan usually ends
        // after a few epochs, not at the end of the backlog.
        for (e, list) in st.closed.range(..below) {
            for t in list {
                if let Some(i) = item_of(t).filter(|i| wanted.contains(i)) {
                    if found.insert(i) {
                        out.push((i, t.clone(), *e));
                    }
                }
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        out
    }

    /// The promise a commit (or an accepted round without outcome) makes:
    /// devices that confirmed no epoch at or past `below` are no longer
    /// merged (their sync is answered `fullResync`, their pushed records
    /// dropped), because the tombstones this node accepted may be pruned
    /// on every node. Written before this returns.
    pub fn promise(&self, below: u64) {
        let mut st = self.state.lock();
        if below <= st.p.pruned_below {
            return;
        }
        st.p.pruned_below = below;
        let snap = self.snapshot(&mut st);
        self.write(snap);
    }

    /// The newest prune round this node applied or learned of.
    #[must_use]
    pub fn licence_round(&self) -> u64 {
        self.state.lock().p.licence_round
    }

    /// What applying a commit of `items` is to do here: the listed
    /// tombstones among them, found oldest epoch first.
    #[must_use]
    pub fn plan_commit(&self, items: &[u64]) -> CommitPlan {
        let wanted: HashSet<u64> = items.iter().copied().collect();
        let st = self.state.lock();
        let mut plan = CommitPlan::default();
        for (e, list) in &st.closed {
            for t in list {
                let Some(i) = item_of(t).filter(|i| wanted.contains(i)) else {
                    continue;
                };
                plan.items.insert(i);
                plan.epochs.insert(*e);
                plan.below = plan.below.max(e + 1);
                plan.by_map
                    .entry(t.map.clone())
                    .or_default()
                    .push(t.tag.clone());
            }
            if plan.items.len() == wanted.len() {
                break;
            }
        }
        plan
    }

    /// Unlists the plan's tombstones once storage dropped them, records
    /// `round`, and returns the `GC_PRUNE` horizon for clients: when the
    /// oldest epoch that still lists a tombstone began, and never past the
    /// epoch every pruned tombstone is below (`None` when that epoch has
    /// no start, epoch 0, or nothing was unlisted).
    pub fn finish_commit(&self, plan: &CommitPlan, round: u64) -> Option<Timestamp> {
        let mut st = self.state.lock();
        st.p.licence_round = st.p.licence_round.max(round);
        let mut touched = BTreeSet::new();
        for (e, list) in st
            .closed
            .iter_mut()
            .filter(|(e, _)| plan.epochs.contains(e))
        {
            let before = list.len();
            list.retain(|t| item_of(t).is_none_or(|i| !plan.items.contains(&i)));
            if list.len() != before {
                touched.insert(*e);
            }
        }
        for e in &touched {
            let empty = st.closed[e].is_empty();
            if let Some(store) = &self.store {
                if empty {
                    store.remove_epoch(*e);
                } else if let Err(err) = store.write_epoch(*e, &st.closed[e]) {
                    // The old list stays: its tombstones are proposed again
                    // and found pruned (a no-op), nothing is lost.
                    tracing::warn!(epoch = e, error = %err, "cannot rewrite a pruned epoch's list");
                }
            }
            if empty {
                st.closed.remove(e);
            }
        }
        let horizon = st
            .closed
            .keys()
            .next()
            .copied()
            .unwrap_or(st.p.epoch)
            .min(st.p.pruned_below);
        let older_than = if touched.is_empty() {
            None
        } else {
            st.p.starts.get(&horizon).cloned()
        };
        st.p.starts.retain(|s, _| *s >= horizon);
        let snap = self.snapshot(&mut st);
        self.write(snap);
        older_than
    }

    /// The safety step for prune rounds this node took no part in (it was
    /// not a member, or down, when the cluster committed `round`): the
    /// open epoch closes now and no device is merged until it confirmed
    /// the new one, since any tag this node's devices hold may have lost
    /// its tombstone elsewhere. `now` is the node's clock. Nothing happens
    /// when `round` is not newer than the last one known.
    pub fn missed_round(&self, round: u64, now: impl FnOnce() -> Timestamp) {
        let mut st = self.state.lock();
        if round <= st.p.licence_round {
            return;
        }
        st.p.licence_round = round;
        let next = self.close_epoch(&mut st, now());
        st.p.pruned_below = st.p.pruned_below.max(next);
        let snap = self.snapshot(&mut st);
        self.write(snap);
        tracing::info!(round, epoch = next, "the cluster pruned OR tombstones in a round this node took no part in: devices must confirm epoch {next} before they merge again");
    }
}
