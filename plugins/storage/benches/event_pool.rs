//! Event payload pool: a pooled acquire / fill / release cycle against
//! building the event by cloning, on one thread and with two threads sharing
//! the pool (the mutex under contention).
//!
//! Run: `cargo bench -p hangar-storage --bench event_pool`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hangar_core::module::storage_types::{ChangeEvent, Origin};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp};
use hangar_storage::event_pool::{EventPool, PoolConfig};

fn op() -> (KeyedOp, Origin) {
    (
        KeyedOp {
            map: "users".into(),
            key: "user:123456".into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(RawValue::from_msgpack(vec![0xa5; 96])),
                timestamp: Timestamp::new(1_700_000_000_000, 7, "node-a"),
                ttl_ms: ROption::RNone,
            }),
        },
        Origin::client(42, "node-a"),
    )
}

fn bench(c: &mut Criterion) {
    let (op, origin) = op();
    let pool = Arc::new(EventPool::for_events(PoolConfig::events()));
    let mut g = c.benchmark_group("event_pool");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(1));

    g.bench_function("pooled acquire+fill+release", |b| {
        b.iter(|| {
            let mut p = pool.acquire();
            std::hint::black_box(p.fill(&op, &origin));
        });
    });
    g.bench_function("acquire+release only", |b| {
        b.iter(|| {
            let p = pool.acquire();
            std::hint::black_box(&*p);
        });
    });
    let mut payload = hangar_storage::event_pool::EventPayload::new();
    g.bench_function("fill only (one payload, no pool)", |b| {
        b.iter(|| {
            std::hint::black_box(payload.fill(&op, &origin));
        });
    });
    g.bench_function("clone a new ChangeEvent (baseline)", |b| {
        b.iter(|| {
            let e = ChangeEvent {
                op: op.clone(),
                origin: origin.clone(),
            };
            std::hint::black_box(&e);
        });
    });
    {
        let threads = 2usize;
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(
            format!("pooled, {threads} threads sharing (per round)"),
            |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                for _ in 0..iters {
                                    let mut p = pool.acquire();
                                    std::hint::black_box(p.fill(&op, &origin));
                                }
                            });
                        }
                    });
                    start.elapsed()
                });
            },
        );
        g.bench_function(format!("clone, {threads} threads (per round)"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..iters {
                                let e = ChangeEvent {
                                    op: op.clone(),
                                    origin: origin.clone(),
                                };
                                std::hint::black_box(&e);
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
    }
    g.finish();
    let s = pool.stats();
    println!(
        "pool after run: created {} reused {} discarded {} peak {} reuse ratio {:.6}",
        s.created, s.reused, s.discarded, s.peak, s.reuse_ratio
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
