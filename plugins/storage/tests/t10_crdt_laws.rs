//! The CRDT laws for both maps, as properties: applying any multiset of ops
//! (repetitions included) in any order gives the same state and the same
//! Merkle root; and joining whole states is commutative, associative and
//! idempotent.
//!
//! Op domains are small on purpose, so that keys, tags and timestamps
//! collide often: collisions are where non-convergent merges show.

use std::collections::BTreeMap;

use abi_stable::std_types::ROption;
use hangar_core::merkle::{LwwMerkleTree, OrMerkleTree};
use hangar_core::{LwwRecord, OrRecord, RawValue, Timestamp};
use hangar_storage::crdt::{LwwMap, OrMap};
use proptest::prelude::*;

const NODES: [&str; 3] = ["a", "b", "c"];
const NOW: u64 = 10;

// ---- LWW ------------------------------------------------------------------

#[derive(Debug, Clone)]
struct LwwOp {
    key: String,
    record: LwwRecord,
}

/// Equal timestamps name the same write, so the record is a function of
/// (key, timestamp): value, tombstone-ness and TTL derive from it.
fn lww_op() -> impl Strategy<Value = LwwOp> {
    (0u8..4, 0u64..6, 0u32..3, 0usize..3).prop_map(|(k, m, c, n)| {
        let seed = m * 9 + u64::from(c) * 3 + n as u64 + u64::from(k);
        let value = (seed % 4 != 0).then(|| RawValue::encode(&(seed as i64)).unwrap());
        LwwOp {
            key: format!("k{k}"),
            record: LwwRecord {
                value: value.into(),
                timestamp: Timestamp::new(m, c, NODES[n]),
                ttl_ms: if seed % 3 == 0 {
                    ROption::RSome(seed % 7)
                } else {
                    ROption::RNone
                },
            },
        }
    })
}

type LwwState = (BTreeMap<String, LwwRecord>, Vec<(String, Vec<u8>)>, u32);

fn lww_state(m: &LwwMap) -> LwwState {
    let records = m.records().map(|(k, r)| (k.to_string(), r)).collect();
    let mut live: Vec<(String, Vec<u8>)> = m
        .entries(NOW)
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    live.sort();
    (records, live, m.merkle_root())
}

fn lww_apply(ops: &[LwwOp]) -> LwwMap {
    let mut m = LwwMap::new();
    for op in ops {
        m.merge(&op.key, &op.record);
    }
    m
}

fn lww_join(x: &LwwMap, y: &LwwMap) -> LwwMap {
    let mut out = x.clone();
    for (k, r) in y.records() {
        out.merge(k, &r);
    }
    out
}

fn lww_ops_and_shuffle() -> impl Strategy<Value = (Vec<LwwOp>, Vec<LwwOp>)> {
    proptest::collection::vec(lww_op(), 0..40).prop_flat_map(|ops| {
        let doubled: Vec<LwwOp> = ops.iter().chain(&ops).cloned().collect();
        (Just(ops), Just(doubled).prop_shuffle())
    })
}

// ---- OR -------------------------------------------------------------------

#[derive(Debug, Clone)]
enum OrOp {
    Add(String, OrRecord),
    Remove(String),
    MergeKey(String, Vec<OrRecord>, Vec<String>),
}

/// Fields vary independently even for one tag: the map must converge even
/// on malformed duplicates.
fn or_record() -> impl Strategy<Value = OrRecord> {
    (
        0u8..5,
        0u64..4,
        0u32..2,
        0usize..3,
        0i64..3,
        proptest::option::of(0u64..5),
    )
        .prop_map(|(t, m, c, n, v, ttl)| OrRecord {
            value: RawValue::encode(&v).unwrap(),
            timestamp: Timestamp::new(m, c, NODES[n]),
            tag: format!("{t}:0:x").into(),
            ttl_ms: ttl.into(),
        })
}

fn or_key() -> impl Strategy<Value = String> {
    (0u8..3).prop_map(|k| format!("k{k}"))
}

fn or_tag() -> impl Strategy<Value = String> {
    (0u8..5).prop_map(|t| format!("{t}:0:x"))
}

fn or_op() -> impl Strategy<Value = OrOp> {
    prop_oneof![
        4 => (or_key(), or_record()).prop_map(|(k, r)| OrOp::Add(k, r)),
        1 => or_tag().prop_map(OrOp::Remove),
        1 => (
            or_key(),
            proptest::collection::vec(or_record(), 0..3),
            proptest::collection::vec(or_tag(), 0..2)
        )
            .prop_map(|(k, r, t)| OrOp::MergeKey(k, r, t)),
    ]
}

type OrState = (
    BTreeMap<String, Vec<OrRecord>>,
    Vec<String>,
    u32,
    usize,
    usize,
);

fn or_state(m: &OrMap) -> OrState {
    let items = m.keys().map(|k| (k.to_string(), m.records(k))).collect();
    let mut tombs: Vec<String> = m.tombstones().map(str::to_string).collect();
    tombs.sort();
    (items, tombs, m.merkle_root(), m.size(), m.total_records())
}

fn or_apply(ops: &[OrOp]) -> OrMap {
    let mut m = OrMap::new();
    for op in ops {
        match op {
            OrOp::Add(k, r) => {
                m.apply(k, r);
            }
            OrOp::Remove(t) => {
                m.apply_tombstone(t);
            }
            OrOp::MergeKey(k, r, t) => {
                m.merge_key(k, r, t);
            }
        }
    }
    m
}

fn or_join(x: &OrMap, y: &OrMap) -> OrMap {
    let mut out = x.clone();
    let tombs: Vec<String> = y.tombstones().map(str::to_string).collect();
    for k in y.keys() {
        out.merge_key(k, &y.records(k), &tombs);
    }
    for t in &tombs {
        out.apply_tombstone(t);
    }
    out
}

fn or_ops_and_shuffle() -> impl Strategy<Value = (Vec<OrOp>, Vec<OrOp>)> {
    proptest::collection::vec(or_op(), 0..30).prop_flat_map(|ops| {
        let doubled: Vec<OrOp> = ops.iter().chain(&ops).cloned().collect();
        (Just(ops), Just(doubled).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn t10_lww_any_order_and_repetition_converge((ops, shuffled) in lww_ops_and_shuffle()) {
        // `shuffled` is a random permutation of every op twice over.
        let a = lww_apply(&ops);
        let b = lww_apply(&shuffled);
        prop_assert_eq!(lww_state(&a), lww_state(&b));
    }

    #[test]
    fn t11_lww_join_is_commutative_associative_idempotent(
        x in proptest::collection::vec(lww_op(), 0..15),
        y in proptest::collection::vec(lww_op(), 0..15),
        z in proptest::collection::vec(lww_op(), 0..15),
    ) {
        let (a, b, c) = (lww_apply(&x), lww_apply(&y), lww_apply(&z));
        prop_assert_eq!(lww_state(&lww_join(&a, &b)), lww_state(&lww_join(&b, &a)));
        prop_assert_eq!(
            lww_state(&lww_join(&lww_join(&a, &b), &c)),
            lww_state(&lww_join(&a, &lww_join(&b, &c)))
        );
        prop_assert_eq!(lww_state(&lww_join(&a, &a)), lww_state(&a));
    }

    #[test]
    fn t20_or_any_order_and_repetition_converge((ops, shuffled) in or_ops_and_shuffle()) {
        // `shuffled` is a random permutation of every op twice over.
        let a = or_apply(&ops);
        let b = or_apply(&shuffled);
        prop_assert_eq!(or_state(&a), or_state(&b));
    }

    #[test]
    fn t21_or_join_is_commutative_associative_idempotent(
        x in proptest::collection::vec(or_op(), 0..12),
        y in proptest::collection::vec(or_op(), 0..12),
        z in proptest::collection::vec(or_op(), 0..12),
    ) {
        let (a, b, c) = (or_apply(&x), or_apply(&y), or_apply(&z));
        prop_assert_eq!(or_state(&or_join(&a, &b)), or_state(&or_join(&b, &a)));
        prop_assert_eq!(
            or_state(&or_join(&or_join(&a, &b), &c)),
            or_state(&or_join(&a, &or_join(&b, &c)))
        );
        prop_assert_eq!(or_state(&or_join(&a, &a)), or_state(&a));
    }

    #[test]
    fn t30_lww_matches_a_model_and_the_core_merkle_tree(
        ops in proptest::collection::vec(lww_op(), 0..40)
    ) {
        // Model: per key, the record with the greatest timestamp.
        let mut model: BTreeMap<String, LwwRecord> = BTreeMap::new();
        for op in &ops {
            let newer = model.get(&op.key).is_none_or(|r| op.record.timestamp > r.timestamp);
            if newer {
                model.insert(op.key.clone(), op.record.clone());
            }
        }
        let m = lww_apply(&ops);
        let mut tree = LwwMerkleTree::new();
        for (k, r) in &model {
            tree.update(k, &r.timestamp);
        }
        prop_assert_eq!(&lww_state(&m).0, &model);
        prop_assert_eq!(m.merkle_root(), tree.root());
        prop_assert_eq!(m.merkle_buckets(""), tree.buckets(""));
        for (k, r) in &model {
            let live = r.value.is_some() && !r.is_expired(NOW);
            prop_assert_eq!(m.get(k, NOW).is_some(), live);
        }
    }

    #[test]
    fn t31_or_root_matches_the_core_merkle_tree(ops in proptest::collection::vec(or_op(), 0..30)) {
        let m = or_apply(&ops);
        let mut tree = OrMerkleTree::new();
        for k in m.keys() {
            tree.update(k, &m.records(k));
        }
        prop_assert_eq!(m.merkle_root(), tree.root());
        for k in m.keys() {
            for r in m.records(k) {
                prop_assert!(!m.is_tombstoned(&r.tag), "a stored tag is never tombstoned");
                prop_assert_eq!(m.key_of_tag(&r.tag), Some(k));
            }
        }
        let tagged: usize = m.keys().map(|k| m.records(k).len()).sum();
        prop_assert_eq!(tagged, m.total_records());
    }
}
