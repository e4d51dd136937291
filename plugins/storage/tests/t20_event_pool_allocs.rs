//! Proves the event pool's point: after warm-up, an acquire / fill / release
//! cycle allocates nothing for values that fit the capacity already held.
//!
//! The counting global allocator of `hangar-testkit` counts allocations per
//! thread, so tests running in parallel do not disturb each other's counts.

use abi_stable::std_types::ROption;
use hangar_core::module::storage_types::{ChangeEvent, Origin};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, OrRecord, RawValue, Timestamp};
use hangar_storage::event_pool::{EventPool, PoolConfig};

#[global_allocator]
static GLOBAL: hangar_testkit::alloc::Counting = hangar_testkit::alloc::Counting;

/// Allocations made on this thread while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    hangar_testkit::alloc::allocations_on_this_thread(f)
}

/// A mix of every op kind: puts, a tombstone, OR adds and removes, with
/// values and strings of different lengths.
fn ops() -> Vec<(KeyedOp, Origin)> {
    let lww = |key: &str, value: Option<Vec<u8>>| KeyedOp {
        map: "users".into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: value.map(RawValue::from_msgpack).into(),
            timestamp: Timestamp::new(1_700_000_000_000, 1, "node-a"),
            ttl_ms: ROption::RNone,
        }),
    };
    let add = |key: &str, n: usize| KeyedOp {
        map: "shopping-carts".into(),
        key: key.into(),
        op: MapOp::OrAdd(OrRecord {
            value: RawValue::from_msgpack(vec![0x91; n]),
            timestamp: Timestamp::new(1_700_000_000_001, 0, "node-bb"),
            tag: "1700000000001:0:node-bb".into(),
            ttl_ms: ROption::RSome(1000),
        }),
    };
    let remove = |key: &str| KeyedOp {
        map: "shopping-carts".into(),
        key: key.into(),
        op: MapOp::OrRemove("1700000000001:0:node-bb".into()),
    };
    vec![
        (
            lww("user:1", Some(vec![0xa5; 120])),
            Origin::client(1, "node-a"),
        ),
        (add("cart:77", 40), Origin::client(2, "node-a")),
        (lww("user:2", None), Origin::internal("node-a")),
        (remove("cart:77"), Origin::client(3, "node-a")),
        (lww("u3", Some(vec![0xa1; 3])), Origin::client(4, "node-c")),
        (add("c", 2), Origin::internal("n")),
    ]
}

#[test]
fn t10_a_warm_cycle_allocates_nothing() {
    let pool = EventPool::for_events(PoolConfig::events());
    let ops = ops();
    // Warm-up: the payload on top of the pool sees every op kind once.
    for (op, origin) in &ops {
        let mut p = pool.acquire();
        p.fill(op, origin);
    }
    let mut checksum = 0usize;
    let n = allocations(|| {
        for _ in 0..10_000 {
            for (op, origin) in &ops {
                let mut p = pool.acquire();
                checksum += p.fill(op, origin).op.key.len();
            }
        }
    });
    assert_eq!(
        n, 0,
        "allocations in 60 000 warm acquire/fill/release cycles"
    );
    assert!(checksum > 0);
}

#[test]
fn t11_two_payloads_in_flight_stay_allocation_free_once_both_are_warm() {
    let pool = EventPool::for_events(PoolConfig::events());
    let ops = ops();
    let cycle = |pool: &EventPool| {
        for pair in ops.chunks(2) {
            let mut a = pool.acquire();
            let mut b = pool.acquire();
            a.fill(&pair[0].0, &pair[0].1);
            b.fill(&pair[1].0, &pair[1].1);
        }
    };
    // LIFO hands the same two payloads out in the same order each cycle.
    cycle(&pool);
    cycle(&pool);
    assert_eq!(allocations(|| (0..1_000).for_each(|_| cycle(&pool))), 0);
}

#[test]
fn t12_negative_control_a_value_larger_than_any_held_does_allocate() {
    let pool = EventPool::for_events(PoolConfig::events());
    let (small, origin) = ops().swap_remove(0);
    {
        let mut p = pool.acquire();
        p.fill(&small, &origin);
    }
    let mut big = small.clone();
    if let MapOp::Lww(r) = &mut big.op {
        r.value = ROption::RSome(RawValue::from_msgpack(vec![0u8; 4_000]));
    }
    let n = allocations(|| {
        let mut p = pool.acquire();
        p.fill(&big, &origin);
    });
    assert!(
        n >= 1,
        "growing the value buffer must allocate (counter works)"
    );
}

#[test]
fn t13_negative_control_building_events_without_the_pool_allocates() {
    let ops = ops();
    let n = allocations(|| {
        for (op, origin) in &ops {
            let e = ChangeEvent {
                op: op.clone(),
                origin: origin.clone(),
            };
            std::hint::black_box(&e);
        }
    });
    assert!(
        n >= ops.len() as u64 * 3,
        "cloning allocates per string: {n}"
    );
}
