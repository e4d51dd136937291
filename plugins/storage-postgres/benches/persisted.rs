//! PERSISTED writes on PostgreSQL against the embedded store (redb), side
//! by side in one run: the default module's group committer over each
//! backend, driven by `hangar_storage::persistence::bench` (the loop the
//! redb-only `persistence` bench of `hangar-storage` runs too), 1, 16 and 64 concurrent writers, committed records/s and the
//! enqueue-to-durable latency p50/p99 of each write (distinct keys, nothing
//! coalesced away); then the time to load N records of one map.
//!
//! `cargo bench -p hangar-storage-postgres --bench persisted` (release), or
//! in a debug build `cargo test -p hangar-storage-postgres --bench persisted
//! --` (figures then measure the debug build). Flags: `--quick` (1 s per
//! row, 100,000 records to load). `HANGAR_BENCH_RECORDS` overrides the load
//! size. PostgreSQL is a throwaway server from `scripts/pg-test-server` on
//! this machine (fsync and synchronous_commit on, default settings); redb
//! goes to the system temp directory. Conditions are printed first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::ROption;
use hangar_core::module::services::NoMetrics;
use hangar_core::{LwwRecord, RawValue, Timestamp};
use hangar_storage::persistence::bench::{ms, persisted_writers, write_records, RecordFn};
use hangar_storage::persistence::{PersistenceBackend, RedbBackend, StoredEntry};
use hangar_storage_postgres::test_server::PgTestServer;
use hangar_storage_postgres::{PostgresBackend, PostgresSettings};

fn first_line_with(path: &str, prefix: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(prefix))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_conditions() {
    println!("# conditions");
    println!(
        "machine : {}, {} logical cores, {} RAM",
        first_line_with("/proc/cpuinfo", "model name"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line_with("/proc/meminfo", "MemTotal")
    );
    println!(
        "load    : {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "build   : {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release (bench)"
        }
    );
    println!(
        "postgres: local throwaway server over TCP 127.0.0.1, pool 8 (hangar-storage-postgres)"
    );
    println!("redb    : RedbBackend in the temp directory, Durability::Immediate");
    println!();
}

fn record(i: u64) -> StoredEntry {
    StoredEntry::Lww(LwwRecord {
        value: ROption::RSome(RawValue::encode(&"x".repeat(96)).unwrap()),
        timestamp: Timestamp::new(i, 0, "bench"),
        ttl_ms: ROption::RNone,
    })
}

async fn group_commit_run(
    name: &str,
    backend: Arc<dyn PersistenceBackend>,
    writers: usize,
    run_for: Duration,
) {
    let f = persisted_writers(backend, writers, run_for, Arc::new(record)).await;
    println!(
        "{name:>8}  {writers:>3} writers  {:>8.0} records/s  p50 {:>9}  p99 {:>9}  {:>5.1} records/commit",
        f.records_per_s(),
        ms(f.p50),
        ms(f.p99),
        f.records_per_commit(),
    );
}

async fn load_run(name: &str, backend: &dyn PersistenceBackend, records: u64) {
    let chunk = 10_000u64;
    let write = write_records(
        backend,
        "big",
        records,
        chunk,
        &(Arc::new(record) as RecordFn),
    )
    .await;
    let t = Instant::now();
    let m = backend.load_map("big").await.unwrap();
    let load = t.elapsed();
    assert_eq!(m.entries.len() as u64, records);
    println!(
        "{name:>8}  {records} records: written in {chunk}-record commits in {:.2} s; load_map {:.2} s ({:.0} records/s)",
        write.as_secs_f64(),
        load.as_secs_f64(),
        records as f64 / load.as_secs_f64()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_secs(if quick { 1 } else { 5 });
    let records: u64 = std::env::var("HANGAR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    print_conditions();
    let server = PgTestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let pg = |s: PostgresSettings| async move {
            let b: Arc<dyn PersistenceBackend> = Arc::new(
                PostgresBackend::connect(
                    PostgresSettings { pool_size: 8, ..s },
                    Arc::new(NoMetrics),
                )
                .await
                .unwrap(),
            );
            b
        };
        println!(
            "# PERSISTED writes through the group committer, {}s per row",
            run_for.as_secs()
        );
        for writers in [1, 16, 64] {
            let redb: Arc<dyn PersistenceBackend> =
                Arc::new(RedbBackend::open(tmp.path().join(format!("gc-{writers}"))).unwrap());
            group_commit_run("redb", redb, writers, run_for).await;
            let b = pg(server.fresh_settings()).await;
            group_commit_run("postgres", b, writers, run_for).await;
        }
        println!();
        println!("# load one map");
        let redb = RedbBackend::open(tmp.path().join("load")).unwrap();
        load_run("redb", &redb, records).await;
        let b = pg(server.fresh_settings()).await;
        load_run("postgres", &*b, records).await;
    });
    server.destroy();
}
