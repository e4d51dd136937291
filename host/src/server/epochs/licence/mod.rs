//! The cluster licence: OR tombstones pruned in a cluster only once every
//! member's devices confirmed them and no replica holds their tags live.
//!
//! # Why
//!
//! A node's devices confirm that node's epochs only ([`super`], "In a
//! cluster"): a tombstone one node may drop can still be missing on a
//! device of another node, which would push the tag back, or on a replica
//! that never applied the remove, from which Merkle repair would copy the
//! live tag back. So pruning needs every member's word.
//!
//! # The rounds
//!
//! Messages go over the reserved topic [`TOPIC`] (clients cannot use
//! [`RESERVED_PREFIX`]), which the cluster module delivers to every member
//! that is not confirmed failed.
//!
//! 1. **Propose.** Every prune round, a node with peers proposes up to
//!    [`MAX_ITEMS`] of the tombstones its own devices license
//!    ([`super::Epochs::licensed`]), named by [`super::item_of`], with the
//!    member list it sees (every member the cluster module lists, in any
//!    state, itself included). It runs one round at a time; one that is not committed
//!    within a prune interval is dropped.
//! 2. **Accept.** A member whose own member list is the same accepts the
//!    items its devices license ([`super::Epochs::licensed_among`]) whose
//!    tags are not live in its storage for the keys of partitions it owns
//!    or backs up. The round is pending on it until it hears the outcome:
//!    OR sync verdicts and pushes of devices the round's promise would
//!    cover wait for it ([`Licence::settle`]).
//! 3. **Commit.** Once every listed member accepted, the proposer
//!    publishes the items all of them accepted (`ABORT` when none, or when
//!    the round is dropped). Every listed member keeps the promise
//!    ([`super::Epochs::promise`]: devices that did not confirm past the
//!    items' epochs are no longer merged), drops the items from storage
//!    and its lists, and sends `GC_PRUNE` to its clients. A member that
//!    hears no outcome within [`STATE_WAIT`] keeps the promise anyway. A
//!    member not in the list (it joined meanwhile) takes the safety step
//!    ([`super::Epochs::missed_round`]). A member that is down or
//!    unreachable never accepts, so nothing is committed while it is
//!    listed.
//!
//! # Nodes that were away
//!
//! Commits carry a round number above every round their proposer knew.
//! A node that starts, or sees a new peer, asks for the others' newest
//! round (`HELLO`, answered by `STATE`) and answers no OR sync until it
//! heard one or [`STATE_WAIT`] passed; a round newer than its own means it
//! missed commits: it takes the safety step. A member that missed a commit
//! it accepted still lists the items: the others accept them again from
//! their memory of what they pruned (the last [`RECENT_ITEMS`]), so its own
//! next proposal prunes them. A lone node's own prune
//! rounds count too, so a node joining it learns of them.
//!
//! # What is left
//!
//! A tag whose add is still in flight to a replica (reordered behind its
//! remove) when every node pruned the remove would be applied as live. A
//! remove is replicated within the write timeout and a prune needs every
//! device's confirmation of a later epoch first, so this needs a
//! replication delay longer than that.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hangar_core::RawValue;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};

use crate::server::state::FrontEnd;

/// The topic the licence's messages travel on.
pub const TOPIC: &str = "$hangar/or-prune";

/// Topics starting with this are the node's own: clients may neither
/// subscribe nor publish to them.
pub const RESERVED_PREFIX: &str = "$hangar/";

/// Most items one proposal carries.
pub const MAX_ITEMS: usize = 4_096;

/// How long an OR sync waits for the cluster's newest round after this
/// node (re)joined or saw a new peer, before it (and every later one until
/// the peers change) is answered by this node's own state.
pub const STATE_WAIT: Duration = Duration::from_secs(3);

/// How often a node that has not heard the cluster's state asks again.
const HELLO_EVERY: Duration = Duration::from_secs(1);

/// How many pruned items a node remembers, to accept them again for a
/// member that missed their commit.
pub const RECENT_ITEMS: usize = 65_536;

/// Rounds an item another member refused is left out of proposals.
const REFUSED_ROUNDS: u64 = 8;

mod message;
mod rounds;

use message::next_round;
pub use message::LicenceMessage;
use rounds::{handle, publish};

/// This node's own round in flight.
struct Round {
    round: u64,
    members: BTreeSet<String>,
    items: Vec<u64>,
    accepted: HashMap<String, HashSet<u64>>,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    round: Option<Round>,
    /// The highest round number seen in any message.
    highest: u64,
    /// The peers when the cluster's state was last asked for.
    peers: BTreeSet<String>,
    hello_at: Option<Instant>,
    /// An OR sync waited [`STATE_WAIT`] in vain since the peers last
    /// changed: later ones do not wait again (a `STATE` still counts).
    gave_up: bool,
    /// Items refused in this node's rounds, with the round they were
    /// refused in.
    refused: HashMap<u64, u64>,
    /// Rounds this node accepted whose outcome it has not heard, by
    /// proposer and round: the epoch its promise would raise
    /// `pruned_below` to, and when it accepted.
    pending: HashMap<(String, u64), (u64, Instant)>,
    /// Items this node pruned under a commit, newest last (at most
    /// [`RECENT_ITEMS`]).
    recent: VecDeque<u64>,
    recent_set: HashSet<u64>,
}

/// The licence's state on this node (see the module doc).
pub struct Licence {
    node_id: String,
    inner: Mutex<Inner>,
    heard: watch::Sender<bool>,
    /// Woken when a pending round's outcome is known.
    settled: Notify,
    /// The queue of the task that handles messages one at a time, in the
    /// order the topic's sequencer gave them (a commit is applied before
    /// a later proposal's round number is compared with this node's).
    queue: OnceLock<mpsc::UnboundedSender<LicenceMessage>>,
}

impl std::fmt::Debug for Licence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licence")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Licence {
    /// The licence of node `node_id`; it has heard nothing yet.
    #[must_use]
    pub fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_string(),
            inner: Mutex::new(Inner::default()),
            heard: watch::channel(false).0,
            settled: Notify::new(),
            queue: OnceLock::new(),
        }
    }

    /// The members the cluster module lists (any state), this node
    /// included, and whether any other is among them.
    fn members(fe: &FrontEnd) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut all = BTreeSet::new();
        let mut peers = BTreeSet::new();
        for m in fe.node.cluster.members().iter() {
            all.insert(m.node_id.to_string());
            if !m.is_local {
                peers.insert(m.node_id.to_string());
            }
        }
        all.insert(fe.licence.node_id.clone());
        (all, peers)
    }

    /// Called every upkeep tick: a new peer means the cluster's state is
    /// asked for again; `HELLO` is repeated until a `STATE` arrives.
    pub fn tick(fe: &FrontEnd) {
        let (_, peers) = Self::members(fe);
        let l = &fe.licence;
        l.keep_overdue(fe);
        if peers.is_empty() {
            l.heard.send_replace(true);
            return;
        }
        let mut inner = l.inner.lock();
        if !peers.is_subset(&inner.peers) {
            inner.peers = peers;
            inner.hello_at = None;
            inner.gave_up = false;
            l.heard.send_replace(false);
        }
        if *l.heard.borrow() || inner.hello_at.is_some_and(|t| t.elapsed() < HELLO_EVERY) {
            return;
        }
        inner.hello_at = Some(Instant::now());
        drop(inner);
        publish(
            fe,
            LicenceMessage::Hello {
                node: l.node_id.clone(),
            },
        );
    }

    /// Waits until the cluster's newest round is known (see the module
    /// doc), at most [`STATE_WAIT`]; at once on a node without peers.
    pub async fn ready(fe: &FrontEnd) {
        Self::tick(fe);
        if fe.licence.inner.lock().gave_up {
            return;
        }
        let mut rx = fe.licence.heard.subscribe();
        if tokio::time::timeout(STATE_WAIT, rx.wait_for(|h| *h))
            .await
            .is_err()
        {
            fe.licence.inner.lock().gave_up = true;
            tracing::warn!("no member answered with the cluster's prune round within {STATE_WAIT:?}; OR syncs are answered by this node's own state until one does");
        }
    }

    /// One prune round: with peers, proposes this node's licensed
    /// tombstones unless its last round is still within `interval`, and
    /// returns true (the round is the cluster's); false on a node without
    /// peers, whose devices license pruning alone.
    pub fn propose(fe: &FrontEnd, interval: Duration) -> bool {
        let (members, peers) = Self::members(fe);
        if peers.is_empty() {
            return false;
        }
        let l = &fe.licence;
        let mut inner = l.inner.lock();
        if inner
            .round
            .as_ref()
            .is_some_and(|r| r.at.elapsed() < interval)
        {
            return true;
        }
        if let Some(old) = inner.round.take() {
            publish(
                fe,
                LicenceMessage::Abort {
                    round: old.round,
                    proposer: l.node_id.clone(),
                },
            );
        }
        let committed = fe.epochs.licence_round();
        let highest = inner.highest.max(committed);
        let refused = std::mem::take(&mut inner.refused);
        let items = fe.epochs.licensed(MAX_ITEMS, |i| {
            refused
                .get(&i)
                .is_some_and(|r| (highest >> 16).saturating_sub(r >> 16) < REFUSED_ROUNDS)
        });
        // Keep the refusals still in force.
        inner.refused = refused
            .into_iter()
            .filter(|(_, r)| (highest >> 16).saturating_sub(r >> 16) < REFUSED_ROUNDS)
            .collect();
        if items.is_empty() {
            return true;
        }
        let round = next_round(highest, &l.node_id);
        inner.highest = round;
        inner.round = Some(Round {
            round,
            members: members.clone(),
            items: items.clone(),
            accepted: HashMap::new(),
            at: Instant::now(),
        });
        drop(inner);
        tracing::debug!(
            round,
            items = items.len(),
            members = members.len(),
            "OR tombstone prune proposed"
        );
        publish(
            fe,
            LicenceMessage::Propose {
                round,
                proposer: l.node_id.clone(),
                members: members.into_iter().collect(),
                committed,
                items,
            },
        );
        true
    }

    /// A message on [`TOPIC`] (the host link hands them here, not to
    /// subscribers). Malformed ones are logged and dropped.
    pub fn deliver(fe: &Arc<FrontEnd>, data: &RawValue, runtime: &tokio::runtime::Handle) {
        let msg: LicenceMessage = match rmp_serde::from_slice(&data.0) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "malformed OR prune licence message dropped");
                return;
            }
        };
        let queue = fe.licence.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let weak = Arc::downgrade(fe);
            runtime.spawn(async move {
                while let Some(msg) = rx.recv().await {
                    let Some(fe) = weak.upgrade() else { return };
                    handle(&fe, msg).await;
                }
            });
            tx
        });
        let _ = queue.send(msg);
    }

    /// Accepted rounds whose outcome did not arrive within [`STATE_WAIT`]
    /// (the proposer died, or the commit was lost): their promise is kept
    /// for good.
    fn keep_overdue(&self, fe: &FrontEnd) {
        let overdue: Vec<u64> = {
            let mut inner = self.inner.lock();
            let mut out = Vec::new();
            inner.pending.retain(|(p, round), (below, at)| {
                let keep = at.elapsed() < STATE_WAIT;
                if !keep {
                    tracing::info!(round, proposer = %p, "no outcome for an accepted OR prune round: its promise is kept");
                    out.push(*below);
                }
                keep
            });
            out
        };
        if let Some(below) = overdue.into_iter().max() {
            fe.epochs.promise(below);
            self.settled.notify_waiters();
        }
    }

    /// Waits until no round this node accepted, whose promise would cover
    /// a device that knows tombstones up to `knowledge`, is still open (at
    /// most [`STATE_WAIT`]; then the promise is kept): the verdict and the
    /// push check that follow read `pruned_below` as the outcome left it.
    pub async fn settle(fe: &FrontEnd, knowledge: u64) {
        let l = &fe.licence;
        let deadline = tokio::time::Instant::now() + STATE_WAIT;
        loop {
            let settled = l.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let open = l
                .inner
                .lock()
                .pending
                .values()
                .any(|(below, _)| *below > knowledge);
            if !open {
                return;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                l.keep_overdue(fe);
                return;
            }
        }
    }

    /// Of `items`, those this node pruned under a recent commit.
    fn recently_pruned(&self, items: &[u64]) -> Vec<u64> {
        let inner = self.inner.lock();
        items
            .iter()
            .copied()
            .filter(|i| inner.recent_set.contains(i))
            .collect()
    }

    /// Remembers items pruned here (the oldest are forgotten past
    /// [`RECENT_ITEMS`]).
    fn remember_pruned(&self, items: &HashSet<u64>) {
        let mut inner = self.inner.lock();
        for i in items {
            if inner.recent_set.insert(*i) {
                inner.recent.push_back(*i);
            }
        }
        while inner.recent.len() > RECENT_ITEMS {
            if let Some(old) = inner.recent.pop_front() {
                inner.recent_set.remove(&old);
            }
        }
    }

    /// The outcome of `proposer`'s `round` is known (and applied).
    fn resolve(&self, proposer: &str, round: u64) {
        let removed = self
            .inner
            .lock()
            .pending
            .remove(&(proposer.to_string(), round));
        if removed.is_some() {
            self.settled.notify_waiters();
        }
    }

    /// Another node told this one its newest round.
    fn heard(&self, round: u64) {
        self.see(round);
        self.heard.send_replace(true);
    }

    /// A round number went by.
    fn see(&self, round: u64) {
        let mut inner = self.inner.lock();
        inner.highest = inner.highest.max(round);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t12_pruned_items_are_remembered_up_to_the_bound() {
        let l = Licence::new("n1");
        assert!(l.recently_pruned(&[1, 2]).is_empty());
        l.remember_pruned(&[1, 2].into_iter().collect());
        assert_eq!(l.recently_pruned(&[2, 3, 1]), vec![2, 1]);
        let many: HashSet<u64> = (10..10 + RECENT_ITEMS as u64).collect();
        l.remember_pruned(&many);
        assert!(
            l.recently_pruned(&[1, 2]).is_empty(),
            "the oldest are forgotten"
        );
        assert_eq!(l.recently_pruned(&[10 + RECENT_ITEMS as u64 - 1]).len(), 1);
        assert_eq!(l.inner.lock().recent.len(), RECENT_ITEMS);
    }
}
