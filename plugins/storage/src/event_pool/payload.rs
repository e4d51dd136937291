//! A reusable [`ChangeEvent`] and the fill that copies an op into it without
//! giving up any buffer.
//!
//! A `ChangeEvent` holds a `MapOp`, an enum: switching an event from an LWW
//! put to an OR add would drop the put's buffers and allocate the add's. So
//! the payload keeps one spare of each variant (and a spare value buffer for
//! tombstones, which have none) and swaps them in and out: after it has seen
//! each kind of op once, filling it allocates only when a string or value is
//! longer than any it held before.

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::storage_types::{ChangeEvent, Origin, OriginKind};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, OrRecord, RawValue, Timestamp};

use super::Reusable;

/// A [`ChangeEvent`] whose buffers are kept across uses.
#[derive(Debug)]
pub struct EventPayload {
    event: ChangeEvent,
    spare_lww: Option<LwwRecord>,
    spare_or_add: Option<OrRecord>,
    spare_or_remove: Option<RString>,
    spare_value: Option<RawValue>,
}

impl Default for EventPayload {
    fn default() -> Self {
        Self::new()
    }
}

impl EventPayload {
    /// An empty payload (allocates nothing until filled).
    #[must_use]
    pub fn new() -> Self {
        Self {
            event: ChangeEvent {
                op: KeyedOp {
                    map: RString::new(),
                    key: RString::new(),
                    op: MapOp::OrRemove(RString::new()),
                },
                origin: Origin {
                    kind: OriginKind::Internal,
                    connection: 0,
                    node: RString::new(),
                },
            },
            spare_lww: None,
            spare_or_add: None,
            spare_or_remove: None,
            spare_value: None,
        }
    }

    /// The event as last filled (empty strings after a reset).
    #[must_use]
    pub fn event(&self) -> &ChangeEvent {
        &self.event
    }

    /// Makes the event equal to `{op, origin}`, reusing the buffers held.
    pub fn fill(&mut self, op: &KeyedOp, origin: &Origin) -> &ChangeEvent {
        copy_str(&mut self.event.op.map, &op.map);
        copy_str(&mut self.event.op.key, &op.key);
        match &op.op {
            MapOp::Lww(src) => {
                let mut spare_value = self.spare_value.take();
                let dst = self.lww_slot();
                copy_lww(dst, src, &mut spare_value);
                self.spare_value = spare_value;
            }
            MapOp::OrAdd(src) => copy_or(self.or_add_slot(), src),
            MapOp::OrRemove(tag) => copy_str(self.or_remove_slot(), tag),
        }
        let o = &mut self.event.origin;
        o.kind = origin.kind;
        o.connection = origin.connection;
        copy_str(&mut o.node, &origin.node);
        &self.event
    }

    /// Puts the current op variant aside for later and installs `next`.
    fn swap_variant(&mut self, next: MapOp) {
        match std::mem::replace(&mut self.event.op.op, next) {
            MapOp::Lww(r) => self.spare_lww = Some(r),
            MapOp::OrAdd(r) => self.spare_or_add = Some(r),
            MapOp::OrRemove(t) => self.spare_or_remove = Some(t),
        }
    }

    fn lww_slot(&mut self) -> &mut LwwRecord {
        if !matches!(self.event.op.op, MapOp::Lww(_)) {
            let r = self.spare_lww.take().unwrap_or_else(|| LwwRecord {
                value: ROption::RNone,
                timestamp: empty_timestamp(),
                ttl_ms: ROption::RNone,
            });
            self.swap_variant(MapOp::Lww(r));
        }
        match &mut self.event.op.op {
            MapOp::Lww(r) => r,
            _ => unreachable!("installed just above"),
        }
    }

    fn or_add_slot(&mut self) -> &mut OrRecord {
        if !matches!(self.event.op.op, MapOp::OrAdd(_)) {
            let r = self.spare_or_add.take().unwrap_or_else(|| OrRecord {
                value: RawValue::default(),
                timestamp: empty_timestamp(),
                tag: RString::new(),
                ttl_ms: ROption::RNone,
            });
            self.swap_variant(MapOp::OrAdd(r));
        }
        match &mut self.event.op.op {
            MapOp::OrAdd(r) => r,
            _ => unreachable!("installed just above"),
        }
    }

    fn or_remove_slot(&mut self) -> &mut RString {
        if !matches!(self.event.op.op, MapOp::OrRemove(_)) {
            let t = self.spare_or_remove.take().unwrap_or_default();
            self.swap_variant(MapOp::OrRemove(t));
        }
        match &mut self.event.op.op {
            MapOp::OrRemove(t) => t,
            _ => unreachable!("installed just above"),
        }
    }
}

impl Reusable for EventPayload {
    fn reset(&mut self) {
        let e = &mut self.event;
        e.op.map.clear();
        e.op.key.clear();
        match &mut e.op.op {
            MapOp::Lww(r) => {
                if let ROption::RSome(v) = &mut r.value {
                    v.0.clear();
                }
                r.timestamp.node_id.clear();
            }
            MapOp::OrAdd(r) => {
                r.value.0.clear();
                r.timestamp.node_id.clear();
                r.tag.clear();
            }
            MapOp::OrRemove(t) => t.clear(),
        }
        e.origin.node.clear();
        e.origin.connection = 0;
        e.origin.kind = OriginKind::Internal;
    }

    fn retained_bytes(&self) -> usize {
        let e = &self.event;
        let mut n = e.op.map.capacity() + e.op.key.capacity() + e.origin.node.capacity();
        n += op_bytes(&e.op.op);
        n += self.spare_lww.as_ref().map_or(0, lww_bytes);
        n += self.spare_or_add.as_ref().map_or(0, or_bytes);
        n += self.spare_or_remove.as_ref().map_or(0, RString::capacity);
        n += self.spare_value.as_ref().map_or(0, |v| v.0.capacity());
        n
    }
}

fn op_bytes(op: &MapOp) -> usize {
    match op {
        MapOp::Lww(r) => lww_bytes(r),
        MapOp::OrAdd(r) => or_bytes(r),
        MapOp::OrRemove(t) => t.capacity(),
    }
}

fn lww_bytes(r: &LwwRecord) -> usize {
    let v = match &r.value {
        ROption::RSome(v) => v.0.capacity(),
        ROption::RNone => 0,
    };
    v + r.timestamp.node_id.capacity()
}

fn or_bytes(r: &OrRecord) -> usize {
    r.value.0.capacity() + r.timestamp.node_id.capacity() + r.tag.capacity()
}

fn empty_timestamp() -> Timestamp {
    Timestamp {
        millis: 0,
        counter: 0,
        node_id: RString::new(),
    }
}

fn copy_str(dst: &mut RString, src: &str) {
    dst.clear();
    dst.push_str(src);
}

fn copy_bytes(dst: &mut RVec<u8>, src: &[u8]) {
    dst.clear();
    dst.extend_from_copy_slice(src);
}

fn copy_timestamp(dst: &mut Timestamp, src: &Timestamp) {
    dst.millis = src.millis;
    dst.counter = src.counter;
    copy_str(&mut dst.node_id, &src.node_id);
}

/// Copies an LWW record; a tombstone parks the value buffer in `spare`.
fn copy_lww(dst: &mut LwwRecord, src: &LwwRecord, spare: &mut Option<RawValue>) {
    match (&src.value, &mut dst.value) {
        (ROption::RSome(s), ROption::RSome(d)) => copy_bytes(&mut d.0, s.as_bytes()),
        (ROption::RSome(s), d @ ROption::RNone) => {
            let mut v = spare.take().unwrap_or_default();
            copy_bytes(&mut v.0, s.as_bytes());
            *d = ROption::RSome(v);
        }
        (ROption::RNone, d) => {
            if let ROption::RSome(v) = d.take() {
                *spare = Some(v);
            }
        }
    }
    copy_timestamp(&mut dst.timestamp, &src.timestamp);
    dst.ttl_ms = src.ttl_ms;
}

fn copy_or(dst: &mut OrRecord, src: &OrRecord) {
    copy_bytes(&mut dst.value.0, src.value.as_bytes());
    copy_timestamp(&mut dst.timestamp, &src.timestamp);
    copy_str(&mut dst.tag, &src.tag);
    dst.ttl_ms = src.ttl_ms;
}
