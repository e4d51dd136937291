//! PN counters (`COUNTER_REQUEST`, `COUNTER_SYNC`): the node's copy of
//! each counter, the connections that listen to it, and where it is kept.
//!
//! A counter's state is a [`PnCounter`] CRDT. The node merges every state a
//! client syncs into its copy, answers with the merged state, and sends it
//! to the counter's other listeners as `COUNTER_UPDATE`. A connection
//! listens to a counter from its first request or sync until it closes.
//!
//! # Persistence
//!
//! Counters are kept like a map: the merged state of counter `name` is the
//! LWW record at key `name` of the reserved map [`COUNTERS_MAP`], written
//! through the ordinary write path (so it is persisted, and replicated in a
//! cluster). The first use of a counter after a start merges the stored
//! state into the (empty) copy. Each write is stamped under the counter's
//! lock, after the merge, so of two writes the later-stamped one carries
//! the larger state, and the LWW merge of the store keeps it.
//!
//! # In a cluster
//!
//! Each node keeps its own copy and its own listeners; the stored record
//! is written through the key's owner. Two nodes syncing one counter at
//! once each store their own merged copy and the LWW store keeps the later
//! one, so an update only the other node saw is missing from the store
//! (not from that node's copy, which writes it again on its next change)
//! and `COUNTER_UPDATE` reaches only the listeners of the node that merged.
//! Merging in the store (a counter-aware merge) or serving each counter on
//! its owner would close both gaps; neither is done yet.
//!
//! Copies are kept for the life of the node: a copy dropped while a write
//! of it is still under way could be reloaded without that write and then
//! overwrite it. Memory is bounded by the counters used and their writers
//! ([`super::pn_counter::MAX_WRITERS`] per side).

use std::collections::HashMap;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use axum::body::Bytes;
use hangar_core::module::storage_types::{Origin, RecordState, WriteOp};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use parking_lot::Mutex;
use rmpv::Value;

use super::outbound::Outbound;
use super::pn_counter::{PnCounter, StateError, MAX_WRITERS};
use super::write_path;
use crate::factory::Node;
use crate::protocol::messages::CounterState;
use crate::protocol::Message;

/// The reserved map counters are kept in; client writes to maps named
/// `__hangar_*` are refused.
pub const COUNTERS_MAP: &str = "__hangar_counters";

/// The prefix of map names reserved for the node's own state.
pub const RESERVED_MAP_PREFIX: &str = "__hangar_";

/// Longest counter name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

#[derive(Default)]
struct Entry {
    state: PnCounter,
    loaded: bool,
    listeners: HashMap<u64, Outbound>,
}

/// The node's counters.
#[derive(Default)]
pub struct Counters {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("counters", &self.entries.lock().len())
            .finish()
    }
}

/// Why a counter request was refused (answered with `ERROR 400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The name is empty, too long or holds a NUL.
    #[error("invalid counter name: {0}")]
    Name(String),
    /// The synced state is malformed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The merged state would hold too many writers.
    #[error("counter {name:?} would hold more than {MAX_WRITERS} writers on one side; refused")]
    TooManyWriters {
        /// The counter.
        name: String,
    },
}

/// What a merge produced: the state to answer with, and what to do next.
struct Merged {
    state: PnCounter,
    /// When the state changed: its timestamp for the store, and the other
    /// listeners to tell.
    changed: Option<(Timestamp, Vec<Outbound>)>,
}

impl Counters {
    /// No counters yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks a counter name.
    ///
    /// # Errors
    /// [`CounterError::Name`] saying what is wrong.
    pub fn check_name(name: &str) -> Result<(), CounterError> {
        if name.is_empty() {
            return Err(CounterError::Name("empty; expected 1 to 1024 bytes".into()));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(CounterError::Name(format!(
                "{} bytes; at most {MAX_NAME_BYTES}",
                name.len()
            )));
        }
        if name.contains('\0') {
            return Err(CounterError::Name("contains a NUL character".into()));
        }
        Ok(())
    }

    /// Serves `COUNTER_REQUEST` (`incoming` = `None`) and `COUNTER_SYNC`:
    /// merges `incoming` into counter `name`, makes `out` a listener, keeps
    /// a changed state and tells the other listeners. Returns the merged
    /// state (the caller answers with it).
    ///
    /// # Errors
    /// A [`CounterError`]; nothing changed then.
    pub async fn serve(
        &self,
        node: &Arc<Node>,
        name: &str,
        incoming: Option<&Value>,
        out: &Outbound,
    ) -> Result<PnCounter, CounterError> {
        Self::check_name(name)?;
        let incoming = incoming.map(PnCounter::from_wire).transpose()?;
        let stored = if self.is_loaded(name) {
            None
        } else {
            Some(load(node, name).await)
        };
        let merged = self.merge(node, name, stored, incoming.as_ref(), out)?;
        if let Some((ts, others)) = merged.changed {
            persist(node, name, &merged.state, ts).await;
            if !others.is_empty() {
                let msg = Message::CounterUpdate {
                    payload: CounterState {
                        name: name.to_string(),
                        state: merged.state.to_wire(),
                    },
                };
                if let Ok(f) = msg.encode() {
                    let f = Bytes::from(f);
                    for o in others {
                        o.push(f.clone());
                    }
                }
            }
        }
        Ok(merged.state)
    }

    /// Connection `conn` stops listening to `name`.
    pub fn unsubscribe(&self, name: &str, conn: u64) {
        if let Some(e) = self.entries.lock().get_mut(name) {
            e.listeners.remove(&conn);
        }
    }

    /// Listeners of `name` (tests, metrics).
    #[must_use]
    pub fn listeners(&self, name: &str) -> usize {
        self.entries
            .lock()
            .get(name)
            .map_or(0, |e| e.listeners.len())
    }

    fn is_loaded(&self, name: &str) -> bool {
        self.entries.lock().get(name).is_some_and(|e| e.loaded)
    }

    fn merge(
        &self,
        node: &Node,
        name: &str,
        stored: Option<PnCounter>,
        incoming: Option<&PnCounter>,
        out: &Outbound,
    ) -> Result<Merged, CounterError> {
        let mut entries = self.entries.lock();
        let e = entries.entry(name.to_string()).or_default();
        if let Some(s) = stored {
            // Loading twice (two first uses at once) is harmless: merging
            // is idempotent.
            e.state.merge(&s);
            e.loaded = true;
        }
        let mut next = e.state.clone();
        let changed = incoming.is_some_and(|i| next.merge(i));
        if next.writers() > MAX_WRITERS {
            return Err(CounterError::TooManyWriters {
                name: name.to_string(),
            });
        }
        e.listeners.insert(out.conn(), out.clone());
        if !changed {
            return Ok(Merged {
                state: next,
                changed: None,
            });
        }
        e.state = next.clone();
        let ts = node.clock.now();
        let others = e
            .listeners
            .iter()
            .filter(|(c, _)| **c != out.conn())
            .map(|(_, o)| o.clone())
            .collect();
        Ok(Merged {
            state: next,
            changed: Some((ts, others)),
        })
    }
}

/// The stored state of counter `name` (empty when there is none, or when
/// it cannot be read: the copy then starts empty and the next sync
/// rewrites it from what clients hold).
async fn load(node: &Node, name: &str) -> PnCounter {
    let keys: RVec<_> = vec![name.into()].into();
    match node.storage.read(COUNTERS_MAP.into(), keys).await {
        Ok(records) => match records.first().map(|r| &r.state) {
            Some(RecordState::Lww(rec)) => match rec.value.as_ref().into_option() {
                Some(v) => match v
                    .decode()
                    .map_err(|e| e.to_string())
                    .and_then(|v| PnCounter::from_wire(&v).map_err(|e| e.to_string()))
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(counter = name, error = %e, "stored counter state unreadable; starting it empty");
                        PnCounter::default()
                    }
                },
                None => PnCounter::default(),
            },
            _ => PnCounter::default(),
        },
        Err(e) => {
            tracing::warn!(counter = name, error = %e, "cannot read a stored counter; starting it empty");
            PnCounter::default()
        }
    }
}

/// Writes the merged state of `name` to [`COUNTERS_MAP`]; replication and
/// the acknowledgement run in the background.
async fn persist(node: &Arc<Node>, name: &str, state: &PnCounter, ts: Timestamp) {
    let mut buf = Vec::new();
    if let Err(e) = rmpv::encode::write_value(&mut buf, &state.to_wire()) {
        tracing::error!(counter = name, error = %e, "cannot encode a counter state");
        return;
    }
    let op = WriteOp {
        op: KeyedOp {
            map: COUNTERS_MAP.into(),
            key: name.into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(RawValue::from_msgpack(buf)),
                timestamp: ts,
                ttl_ms: ROption::RNone,
            }),
        },
        concern: WriteConcern::Applied,
        timeout_ms: ROption::RNone,
    };
    let origin = Origin::internal(&node.config.node_id);
    let pending = write_path::prepare(node, vec![Ok(op)], &origin, None).await;
    if let Some(write_path::Route::Refused { reason, .. }) = pending.routes.first() {
        tracing::warn!(counter = name, reason = %reason, "keeping a counter's state was refused");
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        let _ = pending.finish(&node).await;
    });
}
