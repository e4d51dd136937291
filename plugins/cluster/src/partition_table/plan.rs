//! Planning the next table when members come and go, so that partitions
//! move with their data.
//!
//! A node becomes a holder (owner or backup) of a partition only once it
//! has the partition's data. [`Table::plan`] therefore never writes a new
//! node into `owners` or `backups` directly: it lists it in the
//! partition's `pending` holders, which the owner replicates every new
//! write to (not counted toward QUORUM or STRONG acknowledgements) while
//! the owner streams it the partition's records (see `crate::migration`).
//! Once the leader knows a transfer is complete (`done`), the next plan
//! turns the pending node into a backup, and from there ownership may move
//! to it by swapping roles among holders, which all have the data.
//!
//! Rules, in order, per partition:
//! 1. holders that are neither live nor leaving are dropped; if the owner
//!    is gone, the first remaining holder is promoted; a leaving owner
//!    hands ownership to a live holder when it has one;
//! 2. completed transfers (`done`) turn pending nodes into backups;
//! 3. surplus copies are trimmed: leaving holders once the partition has
//!    its copies on live members, then live holders above
//!    `1 + backup_count`, the most loaded first;
//! 4. partitions none of whose holders survive go to the live member owning
//!    least (their data is gone with their holders);
//! 5. ownership is evened out by swapping an owner with one of its backups;
//! 6. partitions short of copies get pending holders, the least loaded
//!    live members first;
//! 7. live members holding fewer than their share of copies get pending
//!    holders of partitions held by members above their share.

use std::collections::{BTreeMap, BTreeSet};

use super::{Table, N};

/// One transfer a table asks for: `source` (the partition's owner) streams
/// partition `partition` to `target` (a pending holder).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Transfer {
    /// The partition.
    pub partition: u32,
    /// The node that has the data: the partition's owner.
    pub source: String,
    /// The pending holder that receives it.
    pub target: String,
}

impl Table {
    /// The pending holders of partition `p` (none when the table has no
    /// pending lists, as tables committed before migration existed).
    #[must_use]
    pub fn pending_of(&self, p: usize) -> &[String] {
        self.pending.get(p).map_or(&[], Vec::as_slice)
    }

    /// Every transfer this table asks for, by partition.
    #[must_use]
    pub fn transfers(&self) -> Vec<Transfer> {
        (0..N)
            .flat_map(|p| {
                self.pending_of(p).iter().map(move |t| Transfer {
                    partition: u32::try_from(p).unwrap_or(u32::MAX),
                    source: self.owners[p].clone(),
                    target: t.clone(),
                })
            })
            .collect()
    }

    /// The next table for the live members `live` and the members
    /// `leaving` (alive, handing their partitions off), given the
    /// transfers `done` (partition, target) the leader knows complete; or
    /// `None` when this table already fits. See the module docs for the
    /// rules. A member in both lists counts as leaving.
    #[must_use]
    pub fn plan(
        &self,
        live: &[String],
        leaving: &[String],
        backup_count: usize,
        done: &BTreeSet<(u32, String)>,
    ) -> Option<Self> {
        let leaving: BTreeSet<String> = leaving.iter().cloned().collect();
        let live: BTreeSet<String> = live
            .iter()
            .filter(|n| !leaving.contains(*n))
            .cloned()
            .collect();
        if live.is_empty() {
            return None;
        }
        let serves = |n: &String| live.contains(n) || leaving.contains(n);
        let want = backup_count.min(live.len() - 1) + 1;
        // Rules 1 and 2: holders (owner first) and pending per partition.
        let mut holders: Vec<Vec<String>> = Vec::with_capacity(N);
        let mut pending: Vec<Vec<String>> = Vec::with_capacity(N);
        for p in 0..N {
            let mut h: Vec<String> = Vec::new();
            for n in std::iter::once(&self.owners[p]).chain(&self.backups[p]) {
                if serves(n) && !h.contains(n) {
                    h.push(n.clone());
                }
            }
            let mut pend: Vec<String> = Vec::new();
            for n in self.pending_of(p) {
                if !live.contains(n) || h.contains(n) || pend.contains(n) {
                    continue;
                }
                let p32 = u32::try_from(p).unwrap_or(u32::MAX);
                if !h.is_empty() && done.contains(&(p32, n.clone())) {
                    h.push(n.clone());
                } else if !h.is_empty() {
                    pend.push(n.clone());
                }
            }
            if h.first().is_some_and(|o| leaving.contains(o)) {
                if let Some(i) = h.iter().position(|n| live.contains(n)) {
                    let n = h.remove(i);
                    h.insert(0, n);
                }
            }
            holders.push(h);
            pending.push(pend);
        }
        // Rule 3: trim surplus copies, the most loaded holder first.
        let mut held: BTreeMap<String, usize> = live.iter().map(|n| (n.clone(), 0)).collect();
        for h in holders.iter().chain(&pending) {
            for n in h {
                if let Some(c) = held.get_mut(n) {
                    *c += 1;
                }
            }
        }
        for h in &mut holders {
            let live_count = h.iter().filter(|n| live.contains(*n)).count();
            if live_count >= want.min(live.len()) && live_count > 0 {
                h.retain(|n| live.contains(n));
            }
            while h.len() > want {
                let (i, _) = h
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, n)| (held.get(*n).copied().unwrap_or(0), (*n).clone()))
                    .expect("h is not empty");
                let n = h.remove(i);
                if let Some(c) = held.get_mut(&n) {
                    *c -= 1;
                }
            }
        }
        // Rule 4: orphans go to the member owning least.
        let mut owned: BTreeMap<String, usize> = live.iter().map(|n| (n.clone(), 0)).collect();
        for h in &holders {
            if let Some(c) = h.first().and_then(|o| owned.get_mut(o)) {
                *c += 1;
            }
        }
        for h in &mut holders {
            if h.is_empty() {
                let least = owned
                    .iter()
                    .min_by_key(|(n, c)| (**c, (*n).clone()))
                    .map(|(n, _)| n.clone())
                    .expect("live is not empty");
                *owned.get_mut(&least).expect("live") += 1;
                *held.get_mut(&least).expect("live") += 1;
                h.push(least);
            }
        }
        // Rule 5: even out ownership by swapping an owner with a live
        // backup owning at least two fewer; every swap lowers the
        // imbalance, so the passes end.
        for _pass in 0..8 {
            let mut swapped = false;
            for h in &mut holders {
                let Some(&o_owned) = owned.get(&h[0]) else {
                    continue;
                };
                let best = h
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter_map(|(i, b)| owned.get(b).map(|c| (i, *c, b.clone())))
                    .filter(|(_, c, _)| c + 1 < o_owned)
                    .min_by_key(|(_, c, b)| (*c, b.clone()));
                if let Some((i, _, b)) = best {
                    let o = h[0].clone();
                    h.swap(0, i);
                    *owned.get_mut(&o).expect("live") -= 1;
                    *owned.get_mut(&b).expect("live") += 1;
                    swapped = true;
                }
            }
            if !swapped {
                break;
            }
        }
        // Rule 5, chains: when no single swap is left but a member still
        // owns two or more fewer than the most loaded one, ownership moves
        // along a chain of swaps (a owns p1 backed up by b, b owns p2
        // backed up by c, ...): the ends change by one, every member in
        // between gives one and takes one. Each chain lowers the
        // imbalance, and there are at most N of them.
        for _chain in 0..N {
            if !shift_ownership_along_a_chain(&mut holders, &mut owned) {
                break;
            }
        }
        // Rule 6: partitions short of copies on live members get pending
        // holders, the least loaded first.
        for p in 0..N {
            loop {
                let have =
                    holders[p].iter().filter(|n| live.contains(*n)).count() + pending[p].len();
                if have >= want {
                    break;
                }
                let pick = held
                    .iter()
                    .filter(|(m, _)| !holders[p].contains(m) && !pending[p].contains(m))
                    .min_by_key(|(m, c)| (**c, (*m).clone()))
                    .map(|(m, _)| m.clone());
                let Some(m) = pick else { break };
                *held.get_mut(&m).expect("live") += 1;
                pending[p].push(m);
            }
        }
        // Rule 7: members below their share of copies take copies of
        // partitions held by members above it (one transfer per partition
        // at a time). The donor's count drops now: the copy it gives up is
        // trimmed (rule 3) once the transfer is done.
        let share = N * want / live.len();
        let mut takers: Vec<String> = live.iter().cloned().collect();
        takers.sort_by_key(|m| (held[m], m.clone()));
        for m in takers {
            while held[&m] < share {
                let mut best: Option<(usize, usize, String)> = None;
                for p in 0..N {
                    if !pending[p].is_empty() || holders[p].contains(&m) {
                        continue;
                    }
                    let donor = holders[p]
                        .iter()
                        .filter(|d| held.get(*d).is_some_and(|c| *c > share))
                        .max_by_key(|d| (held[*d], (*d).clone()));
                    if let Some(d) = donor {
                        if best.as_ref().is_none_or(|(_, c, _)| held[d] > *c) {
                            best = Some((p, held[d], d.clone()));
                        }
                    }
                }
                let Some((p, _, d)) = best else { break };
                pending[p].push(m.clone());
                *held.get_mut(&m).expect("live") += 1;
                *held.get_mut(&d).expect("live") -= 1;
            }
        }
        let owners: Vec<String> = holders.iter().map(|h| h[0].clone()).collect();
        let backups: Vec<Vec<String>> = holders.iter().map(|h| h[1..].to_vec()).collect();
        let same_pending = (0..N).all(|p| pending[p].as_slice() == self.pending_of(p));
        if owners == self.owners && backups == self.backups && same_pending {
            return None;
        }
        Some(Self {
            version: self.version + 1,
            owners,
            backups,
            pending,
        })
    }
}

/// One chain of rule 5: from the member owning most, a breadth-first walk
/// over "owns a partition that this member backs up" edges to the nearest
/// member owning at least two fewer; the swaps along it are applied to
/// `holders` and `owned`. False when ownership is within one everywhere
/// or no chain leads from the most loaded member to a less loaded one.
fn shift_ownership_along_a_chain(
    holders: &mut [Vec<String>],
    owned: &mut BTreeMap<String, usize>,
) -> bool {
    let Some((top, top_owned)) = owned
        .iter()
        .max_by_key(|(n, c)| (**c, std::cmp::Reverse((*n).clone())))
        .map(|(n, c)| (n.clone(), *c))
    else {
        return false;
    };
    if owned.values().all(|c| c + 1 >= top_owned) {
        return false;
    }
    // came_from[b] = (partition, a): a owns the partition, b backs it up.
    let mut came_from: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([top.clone()]);
    let mut end = None;
    while let Some(a) = queue.pop_front() {
        for (p, h) in holders.iter().enumerate() {
            if h.first() != Some(&a) {
                continue;
            }
            for b in &h[1..] {
                if *b == top || came_from.contains_key(b) || !owned.contains_key(b) {
                    continue;
                }
                came_from.insert(b.clone(), (p, a.clone()));
                if owned[b] + 2 <= top_owned {
                    end = Some(b.clone());
                    break;
                }
                queue.push_back(b.clone());
            }
            if end.is_some() {
                break;
            }
        }
        if end.is_some() {
            break;
        }
    }
    let Some(end) = end else {
        return false;
    };
    let mut b = end.clone();
    while let Some((p, a)) = came_from.get(&b).cloned() {
        let i = holders[p]
            .iter()
            .position(|n| *n == b)
            .expect("b backs up p");
        holders[p].swap(0, i);
        if a == top {
            break;
        }
        b = a;
    }
    *owned.get_mut(&top).expect("live") -= 1;
    *owned.get_mut(&end).expect("live") += 1;
    true
}
