//! OR-map tombstone epochs, the devices that confirm them, and the pruning
//! their confirmations license.
//!
//! # Why
//!
//! An OR-map tombstone (a removed tag) must outlive every client copy that
//! may still hold the tag as live: a client that never saw the remove and
//! pushes its copy back (`ORMAP_PUSH_DIFF`) would resurrect the record. So
//! the node cannot drop a tombstone until every client applied it; epochs
//! make "every client applied it" countable.
//!
//! # The rules
//!
//! - **Epoch.** Every `tombstone_epoch_width` OR tombstones this node
//!   applies (from any origin) close the current epoch; the next one
//!   starts. The epoch only goes up, across restarts too.
//! - **`coveringEpoch`.** OR sync answers carry the current epoch (left out
//!   while it is 0): their data covers every tombstone up to it.
//! - **Devices.** `DEVICE_HELLO` (and `AUTH`) bind the connection to a
//!   device identity, keyed by the principal (`""` without auth): a valid
//!   device token keeps its identity, anything else mints a new one
//!   ([`devices`]).
//! - **Cursors.** `CLIENT_APPLY_ACK {cursor}` confirms a device applied the
//!   data up to an epoch. The stored cursor becomes
//!   `min(cursor, highest epoch sent on this connection, current epoch)`
//!   when that is larger: a client cannot confirm what it was never sent,
//!   and cursors only go up. A connection without a device is ignored.
//! - **Pruning** (with `epoch_protection`). The low-water mark `L` is the
//!   smallest cursor of the remembered devices that are not forgotten
//!   (lagging more than `forget_after_epochs`), or the current epoch when
//!   there are none. The tombstones of every closed epoch below `L` are
//!   pruned in storage (`StorageModule::prune_or_tombstones`), and
//!   `GC_PRUNE {olderThan}` (the clock when the epoch after the newest
//!   pruned one began: every pruned tombstone is older) goes to every
//!   connection so clients prune theirs too. `pruned_below` records one
//!   past the newest pruned epoch.
//! - **Stale devices.** A device's knowledge is the smaller of its stored
//!   cursor and the `claimedEpoch` its `ORMAP_SYNC_INIT` carries (0 when
//!   either is missing or it is forgotten). A device whose knowledge is
//!   below `pruned_below` may hold tags whose tombstones are gone: with
//!   protection it is answered `fullResync: true` (it replaces its copy
//!   with the node's), without protection `SYNC_RESET_REQUIRED`. Until a
//!   connection confirms an epoch at or past `pruned_below`, the records of
//!   its pushes are dropped (its tombstones still merge). Unlike the
//!   TopGun server, a device that lacks nothing pruned is never told to
//!   resync, so its pending writes are not discarded for nothing.
//!
//! # Persistence
//!
//! `<data_dir>/<node_id>/host/` ([`store`]): `epochs.json` (epoch, count,
//! `pruned_below`, epoch start times, devices, the open epoch's
//! tombstones) and one `epoch-<n>.json` per closed, unpruned epoch with its
//! tombstones. An epoch's file and the advanced epoch are written before
//! any answer carries it, and a prune's `pruned_below` before anything is
//! pruned; devices, cursors and the open epoch's list are written within
//! [`FLUSH_EVERY`] and at shutdown. What a crash loses is safe: a lower
//! cursor prunes less, a lost device is minted again (and resyncs if it
//! lacks pruned tombstones), and a tombstone no longer listed is never
//! pruned by epoch (the storage module's own age rule still applies).
//!
//! # In a cluster
//!
//! Epochs and cursors are this node's: a client confirms the epochs of the
//! node it syncs with. That licenses nothing elsewhere: the devices of
//! other nodes may still hold the tag as live, and a replica that never
//! applied the remove would give the tag back through Merkle repair. So
//! while the cluster module lists any other member, in any state, a prune
//! round does not prune alone: it proposes what this node's devices
//! license to every member, and a tombstone is pruned on every member only
//! once all of them accepted it ([`licence`]). Epochs, `coveringEpoch`,
//! cursors, forgetting and the sync verdicts run as on a lone node.

pub mod devices;
mod ledger;
pub mod licence;
pub mod store;
pub mod upkeep;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hangar_core::Timestamp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::SyncConfig;
pub use devices::{Binding, DeviceError};
pub use ledger::{item_name, item_of, CommitPlan};
use store::{EpochStore, StoreError};

/// How often dirty state (cursors, the open epoch's list) is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One listed tombstone: the map, the removed tag and the key it was
/// removed from. Lists written before keys were recorded have no key: such
/// a tombstone is pruned on a lone node only (in a cluster a replica check
/// needs the key's partition, see [`licence`]). Stored as the JSON array
/// `[map, tag]` or `[map, tag, key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The OR map.
    pub map: String,
    /// The removed tag.
    pub tag: String,
    /// The key the tag was removed from.
    pub key: Option<String>,
    /// Its name in licence messages ([`item_of`]), computed once.
    item: Option<u64>,
}

impl Tombstone {
    /// A tombstone of `tag`, removed from `key` (when known) of `map`.
    #[must_use]
    pub fn new(map: String, tag: String, key: Option<String>) -> Self {
        let item = key.as_deref().map(|k| ledger::item_name(&map, k, &tag));
        Self {
            map,
            tag,
            key,
            item,
        }
    }
}

impl Serialize for Tombstone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = vec![self.map.as_str(), self.tag.as_str()];
        v.extend(self.key.as_deref());
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Tombstone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Vec::<String>::deserialize(d)?.into_iter();
        match (v.next(), v.next(), v.next(), v.next()) {
            (Some(map), Some(tag), key, None) => Ok(Self::new(map, tag, key)),
            _ => Err(serde::de::Error::custom(
                "expected [map, tag] or [map, tag, key]",
            )),
        }
    }
}

/// A remembered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Hex SHA-256 of the token's secret.
    pub secret_sha256: String,
    /// The confirmed epoch, once the device confirmed one.
    pub cursor: Option<u64>,
    /// The epoch when the device was last bound (forgetting a device that
    /// never confirmed counts from here).
    pub seen_epoch: u64,
}

/// What is persisted in `epochs.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Persisted {
    /// The current epoch.
    pub epoch: u64,
    /// Tombstones counted in the current epoch.
    pub in_epoch: u64,
    /// Every tombstone of an epoch below this was pruned.
    pub pruned_below: u64,
    /// When each epoch above 0 began (the node's clock), for `GC_PRUNE`.
    pub starts: BTreeMap<u64, Timestamp>,
    /// Devices by `"<namespace>\u{1}<deviceId>"` ([`devices::key`]).
    pub devices: BTreeMap<String, Device>,
    /// The current epoch's tombstones.
    pub open: Vec<Tombstone>,
    /// The newest prune round this node applied or learned of: a lone
    /// node's prune rounds and the cluster's commits
    /// ([`licence`]) both count it up.
    pub licence_round: u64,
}

/// The low-water mark: the smallest cursor of the remembered devices, or
/// the current epoch when there are none (never above it). Every tombstone
/// of a closed epoch below it was confirmed by every remembered device.
fn low_water(p: &Persisted) -> u64 {
    p.devices
        .values()
        .filter_map(|d| d.cursor)
        .min()
        .unwrap_or(p.epoch)
        .min(p.epoch)
}

struct State {
    p: Persisted,
    /// Raised by every snapshot taken for writing: files are written in
    /// snapshot order, an older one never over a newer one.
    version: u64,
    /// Closed, unpruned epochs and their tombstones.
    closed: BTreeMap<u64, Vec<Tombstone>>,
}

/// What a prune round is to do: the epochs whose tombstones go (all
/// below the low-water mark), the new `pruned_below` and the `GC_PRUNE`
/// horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunePlan {
    /// One past the newest epoch pruned: the new `pruned_below`.
    pub below: u64,
    /// Tombstones to prune, grouped by map.
    pub by_map: HashMap<String, Vec<String>>,
    /// The epochs they come from.
    pub epochs: Vec<u64>,
    /// When epoch `below` began: every pruned tombstone is older.
    pub older_than: Option<Timestamp>,
}

/// How an `ORMAP_SYNC_INIT` is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncVerdict {
    /// An ordinary (merging) sync.
    Merge,
    /// `fullResync: true`: the device replaces its copy.
    FullResync,
    /// `SYNC_RESET_REQUIRED` (protection off, but tombstones were pruned).
    Reset,
}

/// The node's tombstone epochs and device cursors.
pub struct Epochs {
    cfg: SyncConfig,
    store: Option<EpochStore>,
    state: Mutex<State>,
    dirty: AtomicBool,
    /// The version of the last state written (held while writing).
    written: Mutex<u64>,
}

impl std::fmt::Debug for Epochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("Epochs")
            .field("epoch", &st.p.epoch)
            .field("pruned_below", &st.p.pruned_below)
            .field("devices", &st.p.devices.len())
            .finish_non_exhaustive()
    }
}

impl Epochs {
    /// Opens (or creates) the state in `dir`; `None` keeps it in memory.
    ///
    /// # Errors
    /// [`StoreError`] when the directory or a file cannot be read, naming
    /// the file and what was wrong.
    pub fn open(cfg: SyncConfig, dir: Option<PathBuf>) -> Result<Self, StoreError> {
        let (store, p, closed) = match dir {
            Some(d) => {
                let store = EpochStore::open(d)?;
                let (p, closed) = store.load()?;
                (Some(store), p, closed)
            }
            None => (None, Persisted::default(), BTreeMap::new()),
        };
        Ok(Self {
            cfg,
            store,
            state: Mutex::new(State {
                p,
                closed,
                version: 0,
            }),
            dirty: AtomicBool::new(false),
            written: Mutex::new(0),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    /// The current epoch.
    #[must_use]
    pub fn current(&self) -> u64 {
        self.state.lock().p.epoch
    }

    /// Every tombstone of an epoch below this was pruned.
    #[must_use]
    pub fn pruned_below(&self) -> u64 {
        self.state.lock().p.pruned_below
    }

    /// The current epoch as `coveringEpoch` (absent while 0).
    #[must_use]
    pub fn covering(&self) -> Option<u64> {
        Some(self.current()).filter(|e| *e > 0)
    }

    /// Counts one new OR tombstone (`tag` removed from `key` of `map`)
    /// applied on this node; closes the epoch
    /// when it is full (the closed epoch's list and the new epoch are
    /// written before this returns, so no answer carries an epoch a
    /// restart would forget). `now` is the node's clock.
    pub fn observe_tombstone(
        &self,
        map: &str,
        key: &str,
        tag: &str,
        now: impl FnOnce() -> Timestamp,
    ) {
        let mut st = self.state.lock();
        st.p.open
            .push(Tombstone::new(map.into(), tag.into(), Some(key.into())));
        st.p.in_epoch += 1;
        if st.p.in_epoch < self.cfg.tombstone_epoch_width {
            self.dirty.store(true, Ordering::Release);
            return;
        }
        let next = self.close_epoch(&mut st, now());
        // Written under the state lock: no answer carries the new epoch
        // before it is durable.
        let snap = self.snapshot(&mut st);
        self.write(snap);
        tracing::debug!(epoch = next, "tombstone epoch advanced");
    }

    /// Closes the open epoch (its list is written first, when it lists
    /// any tombstone) and starts the next one at `now`; the caller writes
    /// the state. Returns the new epoch.
    fn close_epoch(&self, st: &mut State, now: Timestamp) -> u64 {
        let closing = st.p.epoch;
        let list = std::mem::take(&mut st.p.open);
        if !list.is_empty() {
            if let Some(store) = &self.store {
                if let Err(e) = store.write_epoch(closing, &list) {
                    // Not listed means never pruned by epoch: safe.
                    tracing::warn!(epoch = closing, error = %e, "cannot write a closed epoch's tombstones; they will not be pruned by epoch");
                }
            }
            st.closed.insert(closing, list);
        }
        st.p.epoch += 1;
        st.p.in_epoch = 0;
        st.p.starts.insert(st.p.epoch, now);
        st.p.epoch
    }

    /// Binds a connection to a device identity under `namespace` (the
    /// principal, `""` without auth): a valid `token` keeps its identity,
    /// anything else mints one (the returned binding then carries the new
    /// token). The returned key names the device for [`Self::apply_ack`].
    /// `None` when no identity could be minted (no randomness).
    pub fn bind(&self, namespace: &str, token: Option<&str>) -> Option<Binding> {
        let mut st = self.state.lock();
        let epoch = st.p.epoch;
        let b = devices::bind(&mut st.p.devices, namespace, token, epoch);
        self.dirty.store(true, Ordering::Release);
        b
    }

    /// A device's confirmation: `cursor` clamped to `max_sent` (the highest
    /// epoch sent on the connection) and the current epoch, kept when it is
    /// higher than the stored one. Returns the clamped value (what this
    /// connection is now known to have applied). Unknown devices: `None`.
    pub fn apply_ack(&self, device: &str, cursor: u64, max_sent: u64) -> Option<u64> {
        let mut st = self.state.lock();
        let epoch = st.p.epoch;
        let d = st.p.devices.get_mut(device)?;
        let clamped = cursor.min(max_sent).min(epoch);
        if d.cursor.is_none_or(|c| clamped > c) {
            d.cursor = Some(clamped);
            self.dirty.store(true, Ordering::Release);
        }
        Some(clamped)
    }

    /// The epoch up to which `device` is known to hold every tombstone,
    /// given the `claimedEpoch` of its sync: the smaller of its stored
    /// cursor and the claim; 0 when either is missing, the device is
    /// unknown, or it is forgotten.
    #[must_use]
    pub fn knowledge(&self, device: Option<&str>, claimed: Option<u64>) -> u64 {
        let st = self.state.lock();
        let (Some(d), Some(claimed)) = (device.and_then(|k| st.p.devices.get(k)), claimed) else {
            return 0;
        };
        match d.cursor {
            Some(c) if !self.forgotten(st.p.epoch, c) => c.min(claimed),
            _ => 0,
        }
    }

    fn forgotten(&self, epoch: u64, cursor: u64) -> bool {
        epoch.saturating_sub(cursor) > self.cfg.forget_after_epochs
    }

    /// How to answer the sync of a device that knows tombstones up to
    /// `knowledge` ([`Self::knowledge`]).
    #[must_use]
    pub fn verdict(&self, knowledge: u64) -> SyncVerdict {
        if knowledge >= self.pruned_below() {
            SyncVerdict::Merge
        } else if self.cfg.epoch_protection {
            SyncVerdict::FullResync
        } else {
            SyncVerdict::Reset
        }
    }

    /// What a prune round would do now; `None` when protection is off or
    /// nothing is licensed. Forgotten devices (a device that never
    /// confirmed counts from when it was last bound) are dropped here,
    /// with or without protection: they are treated as unknown when they
    /// come back.
    #[must_use]
    pub fn plan_prune(&self) -> Option<PrunePlan> {
        let mut st = self.state.lock();
        let epoch = st.p.epoch;
        let before = st.p.devices.len();
        st.p.devices.retain(|_, d| {
            let last = d.cursor.unwrap_or(d.seen_epoch);
            epoch.saturating_sub(last) <= self.cfg.forget_after_epochs
        });
        if st.p.devices.len() != before {
            self.dirty.store(true, Ordering::Release);
        }
        if !self.cfg.epoch_protection {
            return None;
        }
        let below = low_water(&st.p);
        let epochs: Vec<u64> = st.closed.range(..below).map(|(e, _)| *e).collect();
        // What is really pruned: every epoch up to the newest listed one
        // (an older epoch no longer listed was pruned before, or its list
        // was lost to a crash and it is kept for good).
        let below = epochs.last()? + 1;
        let mut by_map: HashMap<String, Vec<String>> = HashMap::new();
        for e in &epochs {
            for t in &st.closed[e] {
                by_map.entry(t.map.clone()).or_default().push(t.tag.clone());
            }
        }
        Some(PrunePlan {
            below,
            by_map,
            epochs,
            older_than: st.p.starts.get(&below).cloned(),
        })
    }

    /// Records that the plan's low-water mark is in force (written before
    /// any tombstone is pruned, so a restart never forgets a prune).
    pub fn begin_prune(&self, plan: &PrunePlan) {
        let mut st = self.state.lock();
        st.p.pruned_below = st.p.pruned_below.max(plan.below);
        st.p.licence_round += 1;
        let snap = self.snapshot(&mut st);
        self.write(snap);
    }

    /// Forgets the plan's epochs once their tombstones are pruned.
    pub fn finish_prune(&self, plan: &PrunePlan) {
        let mut st = self.state.lock();
        for e in &plan.epochs {
            st.closed.remove(e);
            st.p.starts.retain(|s, _| *s >= plan.below);
            if let Some(store) = &self.store {
                store.remove_epoch(*e);
            }
        }
    }

    /// Writes the state if anything changed since the last write.
    pub fn flush(&self) {
        if self.dirty.load(Ordering::Acquire) {
            self.write_now();
        }
    }

    /// Writes the state outside the state lock (the apply path, which
    /// counts tombstones, does not wait for a flush's disk write).
    fn write_now(&self) {
        let snap = self.snapshot(&mut self.state.lock());
        self.write(snap);
    }

    /// The state as bytes, numbered; clears `dirty`.
    fn snapshot(&self, st: &mut State) -> Option<(u64, Vec<u8>)> {
        self.store.as_ref()?;
        self.dirty.store(false, Ordering::Release);
        st.version += 1;
        match serde_json::to_vec(&st.p) {
            Ok(b) => Some((st.version, b)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the tombstone epoch state");
                None
            }
        }
    }

    /// Writes a snapshot unless a newer one was written already.
    fn write(&self, snap: Option<(u64, Vec<u8>)>) {
        let (Some(store), Some((version, bytes))) = (&self.store, snap) else {
            return;
        };
        let mut written = self.written.lock();
        if *written >= version {
            return;
        }
        match store.write_state_bytes(&bytes) {
            Ok(()) => *written = version,
            Err(e) => {
                self.dirty.store(true, Ordering::Release);
                tracing::warn!(error = %e, "cannot write the tombstone epoch state");
            }
        }
    }
}

#[cfg(test)]
mod tests;
