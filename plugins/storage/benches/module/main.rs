//! Benchmarks of the whole default storage module, through the
//! `StorageModule` trait as the host calls it.
//!
//! Sections (run all, or name some: `cargo bench -p hangar-storage --bench
//! module -- apply fts`):
//!
//! 1. `apply`: applied ops/s and p50/p99 apply latency for LWW puts of
//!    100 B and 1 KiB values: MEMORY concern on the memory backend, and
//!    PERSISTED on redb with several concurrent writers.
//! 2. `memory`: bytes of memory per record for 1M small records (counting
//!    allocator, and RSS).
//! 3. `load`: time to load 1M records from redb (lazy load in tasklet
//!    slices), and write latency p50/p99/max while it loads vs idle.
//! 4. `live`: live-query update latency with 1 000 subscriptions, from the
//!    apply call to the sink's delivery.
//! 5. `fts`: apply throughput and latency of 1 KiB text documents with and
//!    without full-text search on the map.
//! 6. `events`: allocations per applied op on the change-event path, with
//!    the pooled payload vs building a fresh event.
//! 7. `journal`: apply throughput and latency with the event journal off
//!    and on.
//!
//! Environment: `HANGAR_BENCH_RECORDS` (default 1 000 000) for sections 2
//! and 3; `HANGAR_BENCH_SECS` (default 3) per throughput row.

mod apply;
mod events;
mod fts;
mod journal;
mod live;
mod load;
#[path = "../common/machine.rs"]
mod machine;
mod memory;
mod util;

#[global_allocator]
static ALLOC: hangar_testkit::alloc::Counting = hangar_testkit::alloc::Counting;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    util::conditions();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if wants("apply") {
        rt.block_on(apply::run());
    }
    if wants("memory") {
        rt.block_on(memory::run());
    }
    if wants("load") {
        rt.block_on(load::run());
    }
    if wants("live") {
        rt.block_on(live::run());
    }
    if wants("fts") {
        rt.block_on(fts::run());
    }
    if wants("events") {
        rt.block_on(events::run());
    }
    if wants("journal") {
        rt.block_on(journal::run());
    }
}
