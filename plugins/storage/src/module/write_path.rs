//! The write path: one `apply` batch, from the ops to the outcomes and acks.
//!
//! Per map touched by the batch, under ONE acquisition of the map's lock,
//! for each op in batch order:
//!
//! 1. kind check (an OR op on an LWW map or the reverse is rejected with
//!    `ErrorKind::CONFLICT`, naming both kinds);
//! 2. `clock.update(op timestamp)`; a strict clock's drift refusal rejects
//!    the op;
//! 3. CRDT merge; a stale or repeated op is `Unchanged` and goes no further;
//! 4. the *winning* state goes to the persistence batch (the merged LWW
//!    record, the key's whole OR row, a tombstone row): never the incoming
//!    op as such, so a stale op never reaches the disk;
//! 5. the map's full-text writer, if any, gets the new value (or a removal),
//!    before any live query hears of the change: a search started from a
//!    live-query update (`host/src/server/handlers/live_search.rs`) waits
//!    for the index to take it;
//! 6. the query registry hears `on_change(map, key, old, new)` with decoded
//!    values (only when the map has subscriptions: values are decoded once
//!    per change, and not at all otherwise);
//! 7. the change sink gets the effective change in a pooled event payload;
//! 8. with the event journal on, a change of the key's visible value adds
//!    its journal entry (value before and after) to the same persistence
//!    batch (see `journal`).
//!
//! Then, still under the lock, the map's persistence batch is enqueued in
//! the group committer as one request, so the committer sees a key's states
//! in the order the map applied them. After the lock: one ack per
//! non-rejected op is registered (target = the op's concern, timeout = the
//! op's or the configured default) and notified APPLIED; a PERSISTED ack is
//! handed to the durability tracker with the request's sequence number (or,
//! for an op that changed nothing, a barrier on the last sequence enqueued).
//!
//! # Writes to keys not in memory
//!
//! Before its ops apply, a group merges the stored entries of keys the
//! map's memory may lack (see `write_fetch`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::ROption;
use hangar_core::module::services::ClockService;
use hangar_core::module::storage_types::{
    AckId, ApplyBatch, ChangeSink, OpOutcome, OpStatus, Origin, WriteOp as CoreWriteOp,
};
use hangar_core::{
    ErrorKind, KeyedOp, LwwRecord, MapKind, MapOp, ModuleError, ModuleResult, RawValue, Timestamp,
    WriteConcern,
};
use rmpv::Value;

use super::convert::decode;
use super::core::{Core, Persist};
use super::load::{merge_stored, LoadClock};
use super::map_slot::{MapData, MapSlot, MapState};
use super::metrics::OpCounts;
use crate::crdt::{OrApplyOutcome, OrMap};
use crate::persistence::{StoreOp, StoredEntry, WriteBatch};
use crate::query::QueryRegistry;
use crate::search::IndexWriter;

pub(crate) fn rejected(e: ModuleError) -> OpOutcome {
    OpOutcome {
        status: OpStatus::Rejected,
        ack: 0,
        change: ROption::RNone,
        error: ROption::RSome(e),
    }
}

fn kind_name(k: MapKind) -> &'static str {
    match k {
        MapKind::Lww => "LWW",
        MapKind::Or => "OR",
    }
}

fn op_name(op: &MapOp) -> &'static str {
    match op {
        MapOp::Lww(r) if r.value.is_none() => "LWW remove",
        MapOp::Lww(_) => "LWW put",
        MapOp::OrAdd(_) => "OR_ADD",
        MapOp::OrRemove(_) => "OR_REMOVE",
    }
}

pub(crate) fn reject_all(todo: &[usize], out: &mut [Option<OpOutcome>], e: &ModuleError) {
    for &i in todo {
        out[i] = Some(rejected(e.clone()));
    }
}

/// Names that no backend may store are refused before anything changes.
fn validate(op: &KeyedOp) -> ModuleResult<()> {
    if op.map.is_empty() {
        return Err(ModuleError::invalid(
            "empty map name; expected a map name of at least one character",
        ));
    }
    let nul = |what: &str, s: &str| {
        if s.contains('\0') {
            Err(ModuleError::invalid(format!(
                "{what} {s:?} contains a NUL character, which cannot be stored"
            )))
        } else {
            Ok(())
        }
    };
    nul("map name", &op.map)?;
    nul("key", &op.key)?;
    match &op.op {
        MapOp::OrAdd(r) => nul("OR tag", &r.tag),
        MapOp::OrRemove(t) => nul("OR tag", t),
        MapOp::Lww(_) => Ok(()),
    }
}

/// The live value of an OR key as the query engine sees it: the array of
/// its live values, `None` when it has none.
pub(crate) fn or_value(m: &OrMap, key: &str, now_ms: u64) -> Option<Value> {
    let vals = m.get(key, now_ms);
    if vals.is_empty() {
        return None;
    }
    Some(Value::Array(vals.into_iter().filter_map(decode).collect()))
}

/// The live values of an OR key as one msgpack array (the journal's
/// value of an OR key), `None` when it has none.
fn or_raw(m: &OrMap, key: &str, now_ms: u64) -> Option<RawValue> {
    let vals = m.get(key, now_ms);
    if vals.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(5 + vals.iter().map(|v| v.len()).sum::<usize>());
    let n = u32::try_from(vals.len()).unwrap_or(u32::MAX);
    rmp::encode::write_array_len(&mut out, n).expect("writing msgpack into a Vec cannot fail");
    for v in vals {
        out.extend_from_slice(v);
    }
    Some(RawValue::from_msgpack(out))
}

fn visible_lww(r: &LwwRecord, now_ms: u64) -> Option<&RawValue> {
    if r.is_expired(now_ms) {
        return None;
    }
    r.value.as_ref().into_option()
}

fn or_row(map: &str, key: &str, m: &OrMap) -> StoreOp {
    let records = m.records(key);
    if records.is_empty() {
        StoreOp::Delete {
            map: map.to_string(),
            key: key.to_string(),
        }
    } else {
        StoreOp::Put {
            map: map.to_string(),
            key: key.to_string(),
            entry: StoredEntry::Or { records },
        }
    }
}

/// What one op needs besides the map's state.
struct OpCx<'a> {
    map: &'a str,
    now: u64,
    subs: bool,
    registry: &'a QueryRegistry,
    fts: Option<&'a IndexWriter>,
    clock: &'a dyn ClockService,
    wops: Vec<StoreOp>,
    /// This node's id when the event journal is on.
    journal: Option<&'a str>,
}

impl OpCx<'_> {
    /// Adds the journal entry of a change to the persistence batch (when
    /// the journal is on and the visible value changed).
    fn journal(
        &mut self,
        key: &str,
        previous: Option<RawValue>,
        value: Option<RawValue>,
        timestamp: &Timestamp,
    ) {
        let Some(node) = self.journal else {
            return;
        };
        if let Some(r) =
            super::journal::record(self.map, key, previous, value, timestamp.clone(), node)
        {
            self.wops.push(StoreOp::JournalAppend(Arc::new(r)));
        }
    }

    fn changed(&self, key: &str, old: Option<Value>, new: Option<Value>) {
        if self.subs {
            self.registry
                .on_change(self.map, key, old.as_ref(), new.as_ref());
        }
    }
}

/// Applies one op to the map's state; `Some(change)` when it changed it.
fn apply_one(st: &mut MapState, cx: &mut OpCx<'_>, op: &KeyedOp) -> ModuleResult<Option<KeyedOp>> {
    let want = op.op.map_kind();
    if let Some(have) = st.data.kind() {
        if have != want {
            return Err(ModuleError::new(
                ErrorKind::CONFLICT,
                format!(
                    "map {:?} is an {} map; an {} op needs an {} map",
                    cx.map,
                    kind_name(have),
                    op_name(&op.op),
                    kind_name(want)
                ),
            ));
        }
    }
    if let Some(ts) = op.op.timestamp() {
        cx.clock.update(ts)?;
    }
    st.data.settle_kind(want);
    let key = op.key.as_str();
    let MapState {
        data,
        expiry,
        captures,
    } = st;
    let touch = |k: &str| {
        for c in captures.iter() {
            c.lock().insert(k.to_string());
        }
    };
    match (data, &op.op) {
        (MapData::Lww(m), MapOp::Lww(rec)) => {
            let out = m.merge(key, rec);
            if !out.changed {
                return Ok(None);
            }
            expiry.push(key, rec.timestamp.millis, rec.ttl_ms.into_option());
            touch(key);
            cx.wops.push(StoreOp::Put {
                map: cx.map.to_string(),
                key: key.to_string(),
                entry: StoredEntry::Lww(rec.clone()),
            });
            let new_raw = visible_lww(rec, cx.now);
            // The index first: a search started because a live query heard
            // of this change (the host's live search) waits for it.
            if let Some(w) = cx.fts {
                match new_raw {
                    Some(v) => w.upsert(key, v.clone()),
                    None => w.remove(key),
                }
            }
            if cx.journal.is_some() {
                let old = out
                    .previous
                    .as_ref()
                    .and_then(|p| visible_lww(p, cx.now))
                    .cloned();
                cx.journal(key, old, new_raw.cloned(), &rec.timestamp);
            }
            if cx.subs {
                let old = out
                    .previous
                    .as_ref()
                    .and_then(|p| visible_lww(p, cx.now))
                    .and_then(|v| decode(v.as_bytes()));
                cx.changed(key, old, new_raw.and_then(|v| decode(v.as_bytes())));
            }
            Ok(Some(op.clone()))
        }
        (MapData::Or(m), MapOp::OrAdd(rec)) => {
            let old = if cx.subs {
                or_value(m, key, cx.now)
            } else {
                None
            };
            // The journal's "before" of the key and of a key the tag moves from.
            let (old_raw, moved_from) = if cx.journal.is_some() {
                let moved = m
                    .key_of_tag(rec.tag.as_str())
                    .filter(|k| *k != key)
                    .map(|k| or_raw(m, k, cx.now));
                (or_raw(m, key, cx.now), moved)
            } else {
                (None, None)
            };
            match m.apply(key, rec) {
                OrApplyOutcome::Tombstoned | OrApplyOutcome::Stale => return Ok(None),
                OrApplyOutcome::Added => {}
                OrApplyOutcome::Replaced { previous_key, .. } => {
                    if previous_key != key {
                        touch(&previous_key);
                        cx.wops.push(or_row(cx.map, &previous_key, m));
                        cx.changed(&previous_key, None, or_value(m, &previous_key, cx.now));
                        if let Some(before) = moved_from {
                            let after = or_raw(m, &previous_key, cx.now);
                            cx.journal(&previous_key, before, after, &rec.timestamp);
                        }
                    }
                }
            }
            expiry.push(key, rec.timestamp.millis, rec.ttl_ms.into_option());
            touch(key);
            cx.wops.push(or_row(cx.map, key, m));
            if cx.subs {
                cx.changed(key, old, or_value(m, key, cx.now));
            }
            if cx.journal.is_some() {
                let after = or_raw(m, key, cx.now);
                cx.journal(key, old_raw, after, &rec.timestamp);
            }
            Ok(Some(op.clone()))
        }
        (MapData::Or(m), MapOp::OrRemove(tag)) => {
            let holder = m.key_of_tag(tag).map(str::to_owned);
            let old = match (&holder, cx.subs) {
                (Some(k), true) => or_value(m, k, cx.now),
                _ => None,
            };
            let old_raw = match (&holder, cx.journal) {
                (Some(k), Some(_)) => or_raw(m, k, cx.now),
                _ => None,
            };
            let out = m.apply_tombstone(tag);
            if !out.newly_tombstoned && out.removed.is_none() {
                return Ok(None);
            }
            if out.newly_tombstoned {
                cx.wops.push(StoreOp::AddOrTombstone {
                    map: cx.map.to_string(),
                    tag: tag.to_string(),
                });
            }
            if let Some((k, _)) = &out.removed {
                touch(k);
                cx.wops.push(or_row(cx.map, k, m));
                if cx.subs {
                    cx.changed(k, old, or_value(m, k, cx.now));
                }
                if cx.journal.is_some() {
                    let after = or_raw(m, k, cx.now);
                    let ts = cx.clock.now();
                    cx.journal(k, old_raw, after, &ts);
                }
            }
            Ok(Some(op.clone()))
        }
        (data, _) => Err(ModuleError::internal(format!(
            "map {:?}: kind {:?} settled but the op is {}",
            cx.map,
            data.kind(),
            op_name(&op.op)
        ))),
    }
}

/// The ops of a batch grouped by map, each group in batch order, groups in
/// order of first appearance.
fn group_by_map(ops: &[CoreWriteOp]) -> Vec<(&str, Vec<usize>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, w) in ops.iter().enumerate() {
        let map = w.op.map.as_str();
        let g = *index.entry(map).or_insert_with(|| {
            groups.push((map, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups
}

/// The persistence side of one group, for ack registration.
enum Enqueued {
    Nothing,
    Seq(u64),
    Failed(String),
}

impl Core {
    /// Applies `batch`; one outcome per op, in order. With `track_acks`, a
    /// pending ack is registered for each op that was not rejected.
    ///
    /// # Errors
    /// [`ErrorKind::SHUT_DOWN`] before start. Per-op failures are rejected
    /// outcomes, not errors; while a failed commit waits to be committed
    /// again every op is rejected with [`ErrorKind::STORAGE`].
    pub(crate) async fn apply_batch(
        self: &Arc<Self>,
        batch: &ApplyBatch,
        track_acks: bool,
    ) -> ModuleResult<Vec<OpOutcome>> {
        let persist = self.persist()?;
        if let Some(cause) = persist.committer.failure() {
            let e = ModuleError::storage(format!(
                "writes are refused while persistence is failing ({cause}); the node commits the \
                 failed writes again by itself and takes writes once that succeeds (reads keep \
                 working)"
            ));
            return Ok(batch.ops.iter().map(|_| rejected(e.clone())).collect());
        }
        persist.committer.admit().await;
        let mut out: Vec<Option<OpOutcome>> = vec![None; batch.ops.len()];
        for (map, idx) in group_by_map(&batch.ops) {
            self.apply_group(persist, map, &idx, batch, &mut out, track_acks)
                .await?;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| rejected(ModuleError::internal("op left unprocessed"))))
            .collect())
    }

    async fn apply_group(
        self: &Arc<Self>,
        persist: &Persist,
        map: &str,
        idx: &[usize],
        batch: &ApplyBatch,
        out: &mut [Option<OpOutcome>],
        track_acks: bool,
    ) -> ModuleResult<()> {
        let mut todo = Vec::with_capacity(idx.len());
        for &i in idx {
            match validate(&batch.ops[i].op) {
                Ok(()) => todo.push(i),
                Err(e) => out[i] = Some(rejected(e)),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let slot = self.manager.slot(map);
        let sink = self.sink.read().clone();
        let (enqueued, changed, counts, kind, size) = loop {
            let Some((fetched, epoch)) = self.fetch_unheld(persist, &slot, &todo, batch, out).await
            else {
                return Ok(());
            };
            if let Some(done) = self.apply_locked(
                persist,
                &slot,
                &todo,
                batch,
                fetched,
                epoch,
                sink.as_deref(),
                out,
            ) {
                break done;
            }
            // A release dropped keys after the check: check again.
        };
        self.metrics.ops(kind, counts);
        self.metrics.map_size(map, size);
        if track_acks {
            for (n, &i) in todo.iter().enumerate() {
                if let Some(o) = out[i].as_mut() {
                    if o.status != OpStatus::Rejected {
                        o.ack = self.register_ack(persist, &batch.ops[i], changed[n], &enqueued)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The part under the map's lock; see the module docs.
    #[allow(
        clippy::too_many_arguments,
        clippy::type_complexity,
        reason = "the locked part of the write path takes the borrowed pieces of the map slot one by one"
    )]
    fn apply_locked(
        &self,
        persist: &Persist,
        slot: &MapSlot,
        todo: &[usize],
        batch: &ApplyBatch,
        fetched: Option<Vec<(String, StoredEntry)>>,
        epoch: u64,
        sink: Option<&dyn ChangeSink>,
        out: &mut [Option<OpOutcome>],
    ) -> Option<(Enqueued, Vec<bool>, OpCounts, Option<MapKind>, usize)> {
        let fts = self.fts_of(&slot.name).map(|w| &**w);
        let mut st = slot.state.lock();
        if epoch != slot.held.epoch() {
            return None;
        }
        if let Some(entries) = fetched {
            let mut clock = LoadClock::new(&*self.deps.clock, &slot.name);
            for (k, e) in &entries {
                let _ = merge_stored(&mut st, k, e, fts, &mut clock);
            }
        }
        let mut cx = OpCx {
            map: &slot.name,
            now: self.deps.clock.wall_millis(),
            subs: self.registry.has_subscriptions(&slot.name),
            registry: &self.registry,
            fts,
            clock: &*self.deps.clock,
            wops: Vec::new(),
            journal: self.journal.is_on().then_some(self.config.node_id.as_str()),
        };
        let mut counts = OpCounts::default();
        let mut changed = Vec::with_capacity(todo.len());
        for &i in todo {
            let outcome = match apply_one(&mut st, &mut cx, &batch.ops[i].op) {
                Ok(Some(change)) => {
                    counts.applied += 1;
                    changed.push(true);
                    if let Some(s) = sink {
                        let mut payload = self.pool.acquire();
                        s.on_change(payload.fill(&change, &batch.origin));
                    }
                    OpOutcome {
                        status: OpStatus::Applied,
                        ack: 0,
                        change: ROption::RSome(change),
                        error: ROption::RNone,
                    }
                }
                Ok(None) => {
                    counts.unchanged += 1;
                    changed.push(false);
                    OpOutcome {
                        status: OpStatus::Unchanged,
                        ack: 0,
                        change: ROption::RNone,
                        error: ROption::RNone,
                    }
                }
                Err(e) => {
                    counts.rejected += 1;
                    changed.push(false);
                    rejected(e)
                }
            };
            out[i] = Some(outcome);
        }
        let enqueued = if cx.wops.is_empty() {
            Enqueued::Nothing
        } else {
            match persist.committer.enqueue(WriteBatch { ops: cx.wops }) {
                Ok(d) => Enqueued::Seq(d.seq()),
                Err(e) => {
                    tracing::error!(map = %slot.name, error = %e, "enqueueing applied changes for persistence failed");
                    Enqueued::Failed(e.to_string())
                }
            }
        };
        Some((enqueued, changed, counts, st.data.kind(), st.data.entries()))
    }

    fn register_ack(
        &self,
        persist: &Persist,
        w: &CoreWriteOp,
        changed: bool,
        enqueued: &Enqueued,
    ) -> ModuleResult<AckId> {
        let timeout = w.timeout_ms.into_option().map(Duration::from_millis);
        let id = self.acks.register(w.concern, timeout)?;
        self.acks.notify(id, WriteConcern::Applied);
        if w.concern == WriteConcern::Persisted {
            match (changed, enqueued) {
                (true, Enqueued::Seq(seq)) => persist.durability.track(*seq, id),
                (true, Enqueued::Failed(msg)) => {
                    self.acks.fail(id, &format!("Persistence failed: {msg}"));
                }
                _ => persist.durability.track(persist.committer.last_seq(), id),
            }
        }
        Ok(id)
    }

    /// Applies changes a peer replicated (or repair found missing) through
    /// the same path as client writes, with the given origin; no acks.
    pub(crate) async fn apply_replicated(
        self: &Arc<Self>,
        changes: Vec<KeyedOp>,
        origin: Origin,
    ) -> ModuleResult<Vec<OpStatus>> {
        let batch = ApplyBatch {
            ops: changes
                .into_iter()
                .map(|op| CoreWriteOp {
                    op,
                    concern: WriteConcern::FireAndForget,
                    timeout_ms: ROption::RNone,
                })
                .collect(),
            origin,
            consistency: abi_stable::std_types::ROption::RNone,
        };
        Ok(self
            .apply_batch(&batch, false)
            .await?
            .into_iter()
            .map(|o| o.status)
            .collect())
    }
}
