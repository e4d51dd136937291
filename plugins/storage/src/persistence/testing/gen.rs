//! proptest strategies for stored entries and write ops (tests only).

use abi_stable::std_types::ROption;
use hangar_core::{LwwRecord, OrRecord, RawValue, Timestamp};
use proptest::prelude::*;

use crate::persistence::entry::{StoreOp, StoredEntry};

/// Any timestamp with a short ASCII node id.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<u64>(), any::<u32>(), "[a-z0-9-]{0,8}").prop_map(|(m, c, n)| Timestamp::new(m, c, n))
}

/// A msgpack value: an integer, a string or a small map.
pub fn raw_value() -> impl Strategy<Value = RawValue> {
    prop_oneof![
        any::<i64>().prop_map(|v| RawValue::encode(&v).unwrap()),
        ".{0,40}".prop_map(|s| RawValue::encode(&s).unwrap()),
        proptest::collection::btree_map("[a-z]{1,6}", any::<i32>(), 0..4)
            .prop_map(|m| RawValue::encode(&m).unwrap()),
    ]
}

fn ttl() -> impl Strategy<Value = ROption<u64>> {
    proptest::option::of(any::<u64>()).prop_map(ROption::from)
}

/// An LWW record, tombstones included.
pub fn lww_record() -> impl Strategy<Value = LwwRecord> {
    (proptest::option::of(raw_value()), timestamp(), ttl()).prop_map(|(v, t, ttl)| LwwRecord {
        value: v.into(),
        timestamp: t,
        ttl_ms: ttl,
    })
}

/// An OR record whose tag is its timestamp's string form.
pub fn or_record() -> impl Strategy<Value = OrRecord> {
    (raw_value(), timestamp(), ttl()).prop_map(|(v, t, ttl)| OrRecord {
        value: v,
        tag: t.to_string().into(),
        timestamp: t,
        ttl_ms: ttl,
    })
}

/// Any stored entry.
pub fn stored_entry() -> impl Strategy<Value = StoredEntry> {
    prop_oneof![
        lww_record().prop_map(StoredEntry::Lww),
        proptest::collection::vec(or_record(), 0..5)
            .prop_map(|records| StoredEntry::Or { records }),
    ]
}

/// An op on a small key space of two maps: `"lww"` (LWW puts and deletes)
/// and `"or"` (OR puts, deletes and tombstones), so that slots collide often.
pub fn small_op() -> impl Strategy<Value = StoreOp> {
    let key = "k[0-4]";
    let tag = "t[0-3]";
    prop_oneof![
        (key, lww_record()).prop_map(|(k, r)| StoreOp::Put {
            map: "lww".into(),
            key: k,
            entry: StoredEntry::Lww(r),
        }),
        key.prop_map(|k| StoreOp::Delete {
            map: "lww".into(),
            key: k,
        }),
        (key, proptest::collection::vec(or_record(), 0..3)).prop_map(|(k, records)| StoreOp::Put {
            map: "or".into(),
            key: k,
            entry: StoredEntry::Or { records },
        }),
        key.prop_map(|k| StoreOp::Delete {
            map: "or".into(),
            key: k,
        }),
        tag.prop_map(|t| StoreOp::AddOrTombstone {
            map: "or".into(),
            tag: t,
        }),
        tag.prop_map(|t| StoreOp::RemoveOrTombstone {
            map: "or".into(),
            tag: t,
        }),
    ]
}
