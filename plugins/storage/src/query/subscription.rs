//! One live subscription: its query, projection, resume position, window
//! and sink, and how it turns one change into ENTER / UPDATE / LEAVE.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use rmpv::Value;

use super::index::{Members, Registration};
use super::sort::SortKey;
use super::spec::{Projection, Query};
use super::update::{ChangeType, LiveSink, LiveUpdate, RegistryId};
use super::value::identical;
use super::window::{Delta, Window};

pub(super) struct Subscription {
    pub(super) query: Query,
    pub(super) projection: Projection,
    /// Only rows strictly after this position belong (a resumed cursor).
    pub(super) after: Option<SortKey>,
    pub(super) window: Window,
    pub(super) sink: Arc<dyn LiveSink>,
    pub(super) registration: Registration,
    /// Whether positions must be computed for every change (top-N or cursor).
    pub(super) positional: bool,
    pub(super) no_bytes: Arc<[u8]>,
}

impl Subscription {
    /// The row's position if `value` belongs to this subscription's set.
    pub(super) fn place(&self, key: &Arc<str>, value: &Value) -> Option<SortKey> {
        if !self.query.matcher().matches(value) {
            return None;
        }
        if !self.positional {
            return Some(SortKey::from_parts(self.no_bytes.clone(), key.clone()));
        }
        let sk = self.query.sort().key_of(key.clone(), value);
        if self.after.as_ref().is_some_and(|a| sk <= *a) {
            return None;
        }
        Some(sk)
    }

    /// The value this subscription's client sees: shared when unprojected.
    pub(super) fn shown(&self, v: &Arc<Value>) -> Arc<Value> {
        if self.projection.is_all() {
            v.clone()
        } else {
            Arc::new(self.projection.apply(v).into_owned())
        }
    }

    /// Applies one change. `old` is the value every holder of `key` was
    /// last told about; the caller guarantees `old` and `new` differ.
    pub(super) fn apply(
        &mut self,
        id: RegistryId,
        key: &Arc<str>,
        old: Option<&Arc<Value>>,
        new: Option<&Arc<Value>>,
        members: &Members,
    ) -> Delta {
        let now = new.and_then(|v| self.place(key, v));
        let d = self.window.apply(key, now);
        let send = |change: ChangeType, k: &Arc<str>, value: Option<Arc<Value>>| {
            self.sink.deliver(LiveUpdate {
                subscription: id,
                key: k.clone(),
                change,
                value,
            });
        };
        if d.was_visible && !d.is_visible {
            send(ChangeType::Leave, key, None);
        }
        if let Some(k) = &d.displaced {
            send(ChangeType::Leave, k, None);
        }
        if d.is_visible && !d.was_visible {
            if let Some(n) = new {
                send(ChangeType::Enter, key, Some(self.shown(n)));
            }
        }
        if let Some(k) = &d.promoted {
            if let Some(m) = members.get(&**k) {
                send(ChangeType::Enter, k, Some(self.shown(&m.value)));
            }
        }
        if d.was_visible && d.is_visible {
            if let (Some(o), Some(n)) = (old, new) {
                if self.projection.is_all() {
                    send(ChangeType::Update, key, Some(n.clone()));
                } else {
                    let pn = self.projection.apply(n);
                    if !identical(&self.projection.apply(o), &pn) {
                        send(ChangeType::Update, key, Some(Arc::new(pn.into_owned())));
                    }
                }
            }
        }
        d
    }
}

/// Hashes a [`RegistryId`] with one multiplication (ids are
/// registry-assigned, not attacker-chosen, so SipHash buys nothing here).
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
        self.0 = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(super) type IdMap<V> = HashMap<RegistryId, V, BuildHasherDefault<IdHasher>>;
