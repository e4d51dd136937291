//! Shared bench plumbing: conditions, percentiles, module builders, ops.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RVec};
use futures::future::BoxFuture;
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::module::services::NoMetrics;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{ApplyBatch, Origin};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_storage::persistence::{
    LoadedMap, PersistResult, PersistenceBackend, StoredEntry, StoredMap, WriteBatch,
};
use hangar_storage::DefaultStorage;
use hangar_storage::{StorageBackendKind, StorageSettings};
use hangar_testkit::storage::helpers::batch_from;
use hangar_testkit::support::storage_deps_with;

use super::machine;

pub const NODE: &str = "bench";

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn secs() -> Duration {
    Duration::from_secs(env_usize("HANGAR_BENCH_SECS", 3) as u64)
}

/// This process's resident set in KiB; 0 where it cannot be read.
pub fn rss_kb() -> u64 {
    machine::rss_kb().unwrap_or(0)
}

pub fn conditions() {
    println!("== hangar-storage module benchmarks ==");
    println!(
        "machine: {}, {} cpus, loadavg {}; build: {}; bench runtime: tokio 2 workers; module runtime: 2 workers",
        machine::cpu_model().unwrap_or_else(|| "unknown cpu".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        machine::load_average(),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 / p99 / max of latencies, formatted.
pub fn summary(lat: &mut [Duration]) -> String {
    lat.sort_unstable();
    format!(
        "p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        pct(lat, 0.5),
        pct(lat, 0.99),
        lat.last().copied().unwrap_or_default()
    )
}

pub fn deps() -> StorageDeps {
    storage_deps_with(NODE, Arc::new(NoMetrics))
}

pub fn config(backend: StorageBackendKind, dir: &Path) -> StorageModuleConfig {
    with_settings(
        StorageSettings {
            backend,
            ..StorageSettings::default()
        },
        dir,
    )
}

/// A config with the given settings in `dir`.
pub fn with_settings(settings: StorageSettings, dir: &Path) -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 60_000,
        ..StorageModuleConfig::new(NODE, dir, PluginSettings::of(&settings))
    }
}

/// A started module.
pub async fn module(config: StorageModuleConfig) -> DefaultStorage {
    let m = DefaultStorage::new(config, deps()).expect("builds");
    m.start().await.expect("starts");
    m
}

/// A backend that accepts every commit and keeps nothing: what is left in
/// memory is the module's own state.
pub struct NullBackend;

impl PersistenceBackend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }
    fn commit(&self, _b: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn load_map<'a>(&'a self, _m: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        Box::pin(async { Ok(LoadedMap::default()) })
    }
    fn load_keys<'a>(
        &'a self,
        _m: &'a str,
        _k: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn list_keys<'a>(&'a self, _m: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn load_or_tombstones<'a>(&'a self, _m: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A started module over [`NullBackend`].
pub async fn null_module(config: StorageModuleConfig) -> DefaultStorage {
    let m = DefaultStorage::with_backend(
        config,
        deps(),
        "null",
        Arc::new(|_| Ok(Arc::new(NullBackend) as Arc<dyn PersistenceBackend>)),
    )
    .expect("builds");
    m.start().await.expect("starts");
    m
}

/// A msgpack string of about `size` bytes.
pub fn value(size: usize, i: u64) -> RawValue {
    let s = format!("{i:016}");
    RawValue::encode(&format!(
        "{s}{}",
        "x".repeat(size.saturating_sub(s.len() + 3))
    ))
    .expect("encodes")
}

pub fn put(map: &str, key: &str, value: RawValue, millis: u64) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: ROption::RSome(value),
            timestamp: Timestamp::new(millis, 0, NODE),
            ttl_ms: ROption::RNone,
        }),
    }
}

/// A batch of `ops` with `concern` from a client of the bench node.
pub fn batch(ops: Vec<KeyedOp>, concern: WriteConcern) -> ApplyBatch {
    batch_from(ops, concern, Origin::client(1, NODE), None)
}

/// Applies one batch and, for PERSISTED, waits for the durable ack (after
/// reporting REPLICATED, as the host does on a lone node).
pub async fn write(m: &DefaultStorage, ops: Vec<KeyedOp>, concern: WriteConcern) {
    let out = m.apply(batch(ops, concern)).await.expect("apply");
    if concern >= WriteConcern::Replicated {
        let ids: RVec<u64> = out.iter().map(|o| o.ack).collect();
        m.notify_acks(ids.clone(), WriteConcern::Replicated);
        let acks = m.await_acks(ids).await.expect("await");
        assert!(acks.iter().all(|a| a.success), "{:?}", acks[0]);
    }
}

/// Runs `writers` tasks that each apply one op at a time with `concern` for
/// `dur`; the ops are `op(0)`, `op(1)`, ... from a counter the writers
/// share, made before each call's clock starts. Returns ops/s and every
/// latency.
pub async fn drive(
    m: &DefaultStorage,
    writers: usize,
    concern: WriteConcern,
    dur: Duration,
    op: impl Fn(u64) -> KeyedOp + Send + Sync + 'static,
) -> (f64, Vec<Duration>) {
    let (next, op) = (Arc::new(AtomicU64::new(0)), Arc::new(op));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (m, next, op) = (m.clone(), next.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while started.elapsed() < dur {
                    let op = op(next.fetch_add(1, Ordering::Relaxed));
                    let t = Instant::now();
                    write(&m, vec![op], concern).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), all)
}

/// Seeds `n` records of `size`-byte values into `map`, in batches.
pub async fn seed(m: &DefaultStorage, map: &str, n: usize, size: usize) {
    for start in (0..n).step_by(10_000) {
        let ops = (start..(start + 10_000).min(n))
            .map(|i| put(map, &format!("user:{i:010}"), value(size, i as u64), 1_000))
            .collect();
        write(m, ops, WriteConcern::Memory).await;
    }
}
