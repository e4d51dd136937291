//! Section 6: allocations per applied op on the change-event path.

use std::sync::Arc;

use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{ChangeEvent, ChangeSink, Origin};
use hangar_core::{RawValue, WriteConcern};
use hangar_storage::event_pool::{EventPayload, ObjectPool, PoolConfig};
use hangar_storage::StorageBackendKind;

use super::util::{batch, config, null_module, put};
use hangar_testkit::alloc;

/// A sink that looks at the event and allocates nothing.
struct Touch;

impl ChangeSink for Touch {
    fn on_change(&self, event: &ChangeEvent) {
        std::hint::black_box(event.op.key.len());
    }
}

const OPS: usize = 100_000;

async fn allocs_per_op(with_sink: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let m = null_module(config(StorageBackendKind::Memory, dir.path())).await;
    if with_sink {
        m.set_change_sink(Arc::new(Touch));
    }
    let make = |start: usize| {
        (start..start + 1_000)
            .map(|i| {
                put(
                    "ev",
                    &format!("k{:06}", i % 1_000),
                    RawValue::encode(&(i as u64)).unwrap(),
                    1_000 + i as u64,
                )
            })
            .collect::<Vec<_>>()
    };
    for w in 0..5 {
        m.apply(batch(make(w * 1_000), WriteConcern::Memory))
            .await
            .unwrap();
    }
    let mut batches: Vec<_> = (0..OPS / 1_000)
        .map(|b| batch(make(10_000 + b * 1_000), WriteConcern::Memory))
        .collect();
    let before = alloc::calls();
    for b in batches.drain(..) {
        m.apply(b).await.unwrap();
    }
    let n = alloc::calls() - before;
    m.shutdown().await.unwrap();
    n as f64 / OPS as f64
}

pub async fn run() {
    println!("\n-- 6. allocations per applied op (counting allocator, {OPS} LWW puts in batches of 1 000, null backend) --");
    let without = allocs_per_op(false).await;
    let with = allocs_per_op(true).await;
    println!("whole apply path, no change sink:      {without:.2} allocations/op");
    println!("whole apply path, change sink:         {with:.2} allocations/op");
    println!(
        "change-event path (difference):        {:.2} allocations/op",
        with - without
    );

    // The event path alone: the pooled payload vs building a fresh event.
    let ops: Vec<_> = (0..OPS)
        .map(|i| {
            put(
                "ev",
                &format!("k{:06}", i % 1_000),
                RawValue::encode(&(i as u64)).unwrap(),
                i as u64,
            )
        })
        .collect();
    let origin = Origin::client(1, "bench");
    let pool = ObjectPool::<EventPayload>::for_events(PoolConfig::events());
    for op in ops.iter().take(100) {
        Touch.on_change(pool.acquire().fill(op, &origin));
    }
    let before = alloc::calls();
    for op in &ops {
        Touch.on_change(pool.acquire().fill(op, &origin));
    }
    let pooled = (alloc::calls() - before) as f64 / OPS as f64;
    let before = alloc::calls();
    for op in &ops {
        let event = ChangeEvent {
            op: op.clone(),
            origin: origin.clone(),
        };
        Touch.on_change(&event);
    }
    let fresh = (alloc::calls() - before) as f64 / OPS as f64;
    println!("event alone, pooled payload:           {pooled:.2} allocations/op");
    println!("event alone, fresh ChangeEvent clone:  {fresh:.2} allocations/op");
}
