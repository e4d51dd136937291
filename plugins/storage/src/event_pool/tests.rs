//! Claims about the pool and the event payload, numbered by theme: t10 the
//! pool, t20 the payload fill, t30 threads. (Zero allocations after warm-up:
//! `tests/t20_event_pool_allocs.rs`, which needs its own global allocator.)

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString};
use hangar_core::module::storage_types::{ChangeEvent, Origin, OriginKind};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, OrRecord, RawValue, Timestamp};
use proptest::prelude::*;

use super::*;

fn config(max: usize, initial: usize) -> PoolConfig {
    PoolConfig {
        name: "test".into(),
        max_size: max,
        initial_size: initial,
        max_retained_bytes: 1024,
    }
}

fn lww(key: &str, value: Option<&[u8]>) -> KeyedOp {
    KeyedOp {
        map: "users".into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: value.map(RawValue::from_msgpack).into(),
            timestamp: Timestamp::new(1_700_000_000_000, 3, "node-a"),
            ttl_ms: ROption::RSome(60_000),
        }),
    }
}

fn or_add(key: &str, value: &[u8], tag: &str) -> KeyedOp {
    KeyedOp {
        map: "carts".into(),
        key: key.into(),
        op: MapOp::OrAdd(OrRecord {
            value: RawValue::from_msgpack(value),
            timestamp: Timestamp::new(5, 0, "n"),
            tag: tag.into(),
            ttl_ms: ROption::RNone,
        }),
    }
}

fn or_remove(key: &str, tag: &str) -> KeyedOp {
    KeyedOp {
        map: "carts".into(),
        key: key.into(),
        op: MapOp::OrRemove(tag.into()),
    }
}

#[test]
fn t10_the_last_object_returned_is_the_first_reused() {
    let pool = EventPool::for_events(config(8, 0));
    let a = pool.acquire();
    let b = pool.acquire();
    let (pa, pb) = (&*a as *const EventPayload, &*b as *const EventPayload);
    drop(b);
    drop(a);
    let again = pool.acquire();
    assert_eq!(
        &*again as *const EventPayload, pa,
        "LIFO: `a` came back last"
    );
    let next = pool.acquire();
    assert_eq!(&*next as *const EventPayload, pb);
}

#[test]
fn t11_a_returned_object_is_reset() {
    let pool = EventPool::for_events(config(8, 0));
    {
        let mut p = pool.acquire();
        p.fill(&lww("k1", Some(b"\xa3abc")), &Origin::client(7, "node-a"));
    }
    let p = pool.acquire();
    let e = p.event();
    assert!(e.op.map.is_empty() && e.op.key.is_empty() && e.origin.node.is_empty());
    assert_eq!(
        (e.origin.connection, e.origin.kind),
        (0, OriginKind::Internal)
    );
    match &e.op.op {
        MapOp::Lww(r) => {
            assert!(r.timestamp.node_id.is_empty());
            assert!(matches!(&r.value, ROption::RSome(v) if v.0.is_empty()));
        }
        other => panic!("the variant is kept for reuse, got {other:?}"),
    }
}

#[test]
fn t12_the_pool_keeps_at_most_max_size_idle_objects() {
    let pool = EventPool::for_events(config(2, 0));
    let held: Vec<_> = (0..5).map(|_| pool.acquire()).collect();
    drop(held);
    let s = pool.stats();
    assert_eq!((s.available, s.discarded, s.created), (2, 3, 5));
}

#[test]
fn t13_stats_count_creation_reuse_use_and_peak() {
    let pool = EventPool::for_events(config(16, 4));
    assert_eq!(pool.stats().created, 4, "made up front");
    {
        let _held: Vec<_> = (0..6).map(|_| pool.acquire()).collect();
        let s = pool.stats();
        assert_eq!((s.in_use, s.available, s.created, s.reused), (6, 0, 6, 4));
    }
    let _one = pool.acquire();
    let s = pool.stats();
    assert_eq!((s.in_use, s.peak, s.reused, s.available), (1, 6, 5, 5));
    assert!((s.reuse_ratio - 5.0 / 11.0).abs() < 1e-12);
    assert_eq!(s.max_size, 16);
}

#[test]
fn t14_initial_size_is_capped_at_max_size() {
    let pool = EventPool::for_events(config(3, 10));
    let s = pool.stats();
    assert_eq!((s.created, s.available), (3, 3));
}

#[test]
fn t15_an_object_grown_past_the_retention_limit_is_discarded() {
    let pool = EventPool::for_events(config(8, 0));
    {
        let mut p = pool.acquire();
        p.fill(&lww("k", Some(&[0u8; 4096])), &Origin::internal("n"));
    }
    let s = pool.stats();
    assert_eq!((s.available, s.discarded), (0, 1));
}

#[test]
fn t16_a_detached_object_is_not_returned() {
    let pool = EventPool::for_events(config(8, 1));
    let p = pool.acquire();
    let owned = p.detach();
    drop(owned);
    let s = pool.stats();
    assert_eq!((s.in_use, s.available, s.discarded), (0, 0, 0));
}

#[test]
fn t17_clear_drops_idle_objects() {
    let pool = EventPool::for_events(PoolConfig::events());
    assert_eq!(pool.stats().available, 128);
    pool.clear();
    assert_eq!(pool.stats().available, 0);
}

#[test]
fn t20_fill_keeps_capacity_across_smaller_values_and_variant_changes() {
    let mut p = EventPayload::new();
    let origin = Origin::client(1, "node-a");
    p.fill(&lww(&"k".repeat(40), Some(&[1u8; 200])), &origin);
    let key_cap = p.event().op.key.capacity();
    let bytes_before = p.retained_bytes();
    // Different variants, a tombstone, smaller values: nothing is given up.
    p.fill(&or_add("k2", &[2u8; 10], "1:0:n"), &origin);
    p.fill(&or_remove("k3", "1:0:n"), &origin);
    p.fill(&lww("k4", None), &origin);
    p.fill(&lww("k5", Some(&[3u8; 5])), &origin);
    assert_eq!(p.event().op.key.capacity(), key_cap);
    assert!(p.retained_bytes() >= bytes_before);
    match &p.event().op.op {
        MapOp::Lww(r) => match &r.value {
            ROption::RSome(v) => assert!(v.0.capacity() >= 200, "value buffer kept"),
            ROption::RNone => panic!("expected a value"),
        },
        other => panic!("expected LWW, got {other:?}"),
    }
}

fn arb_str() -> impl Strategy<Value = String> {
    "[a-z0-9:]{0,24}"
}

fn arb_op() -> impl Strategy<Value = KeyedOp> {
    let ts =
        || (any::<u64>(), any::<u32>(), arb_str()).prop_map(|(m, c, n)| Timestamp::new(m, c, n));
    let ttl = || prop::option::of(any::<u64>()).prop_map(ROption::from);
    let bytes = || prop::collection::vec(any::<u8>(), 0..64);
    let op = prop_oneof![
        (prop::option::of(bytes()), ts(), ttl()).prop_map(|(v, timestamp, ttl_ms)| {
            MapOp::Lww(LwwRecord {
                value: v.map(RawValue::from_msgpack).into(),
                timestamp,
                ttl_ms,
            })
        }),
        (bytes(), ts(), arb_str(), ttl()).prop_map(|(v, timestamp, tag, ttl_ms)| {
            MapOp::OrAdd(OrRecord {
                value: RawValue::from_msgpack(v),
                timestamp,
                tag: tag.into(),
                ttl_ms,
            })
        }),
        arb_str().prop_map(|t| MapOp::OrRemove(t.into())),
    ];
    (arb_str(), arb_str(), op).prop_map(|(map, key, op)| KeyedOp {
        map: map.into(),
        key: key.into(),
        op,
    })
}

fn arb_origin() -> impl Strategy<Value = Origin> {
    let kind = prop::sample::select(vec![
        OriginKind::Client,
        OriginKind::Replication,
        OriginKind::Repair,
        OriginKind::Internal,
    ]);
    (kind, any::<u64>(), arb_str()).prop_map(|(kind, connection, node)| Origin {
        kind,
        connection,
        node: RString::from(node),
    })
}

proptest! {
    #[test]
    fn t21_a_reused_payload_always_equals_the_op_it_was_filled_from(
        seq in prop::collection::vec((arb_op(), arb_origin(), any::<bool>()), 1..24)
    ) {
        let pool = EventPool::for_events(config(2, 0));
        for (op, origin, hold_another) in seq {
            // Sometimes hold a second payload so both pool slots get mixed use.
            let _other = hold_another.then(|| pool.acquire());
            let mut p = pool.acquire();
            let got = p.fill(&op, &origin).clone();
            prop_assert_eq!(got, ChangeEvent { op, origin });
        }
    }
}

#[test]
fn t30_many_threads_share_one_pool_and_the_counts_add_up() {
    let pool = Arc::new(EventPool::for_events(config(64, 8)));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let op = lww(&format!("k{t}"), Some(b"\x01"));
                let origin = Origin::client(t, "n");
                for _ in 0..10_000 {
                    let mut p = pool.acquire();
                    assert_eq!(p.fill(&op, &origin).op.key.as_str(), format!("k{t}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.in_use, 0);
    assert!(s.peak <= 4);
    assert_eq!(
        s.reused + (s.created - 8),
        40_000,
        "every acquire counted once"
    );
    assert_eq!(s.available as u64, s.created - s.discarded);
}
