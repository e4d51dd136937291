//! What the module tests share: a lone node's module over an instrumented
//! memory store, a metrics recorder, and builders of ops.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString};
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::module::services::{MetricKind, MetricSample, MetricsSink};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{OpOutcome, Origin, RecordState};
use hangar_core::{KeyedOp, LwwRecord, MapOp, OrRecord, RawValue, Timestamp, WriteConcern};
use hangar_storage::persistence::testing::InstrumentedBackend;
use hangar_storage::persistence::{MemoryBackend, MemoryStore, PersistenceBackend};
use hangar_storage::DefaultStorage;
use hangar_storage::StorageSettings;
use hangar_testkit::storage::helpers::batch_from;
use hangar_testkit::support::storage_deps_with;
use parking_lot::Mutex;

pub const NODE: &str = "n1";

pub type Labels = Vec<(String, String)>;

/// Records every metric sample by name.
#[derive(Default)]
pub struct Metrics(Mutex<Vec<(String, MetricKind, Labels, f64)>>);

impl Metrics {
    pub fn named(&self, name: &str) -> Vec<(Labels, f64)> {
        self.0
            .lock()
            .iter()
            .filter(|s| s.0 == name)
            .map(|s| (s.2.clone(), s.3))
            .collect()
    }
}

impl MetricsSink for Metrics {
    fn record(&self, s: MetricSample<'_>) {
        self.0.lock().push((
            s.name.to_string(),
            s.kind,
            s.labels
                .iter()
                .map(|t| (t.0.to_string(), t.1.to_string()))
                .collect(),
            s.value,
        ));
    }
}

pub fn deps(metrics: Arc<Metrics>) -> StorageDeps {
    storage_deps_with(NODE, metrics)
}

pub fn config() -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 500,
        ..StorageModuleConfig::new(
            NODE,
            "./data",
            PluginSettings::of(&StorageSettings::memory()),
        )
    }
}

/// A module over an instrumented memory backend on `store`.
pub fn module_on(
    store: &MemoryStore,
    config: StorageModuleConfig,
    metrics: Arc<Metrics>,
) -> (DefaultStorage, Arc<InstrumentedBackend>) {
    let inst = Arc::new(InstrumentedBackend::new(Arc::new(MemoryBackend::open(
        store,
    ))));
    let b = inst.clone();
    let m = DefaultStorage::with_backend(
        config,
        deps(metrics),
        "instrumented memory",
        Arc::new(move |_| Ok(b.clone() as Arc<dyn PersistenceBackend>)),
    )
    .expect("builds");
    (m, inst)
}

/// A started module with the default config and no metrics over `store`.
pub async fn started(store: &MemoryStore) -> DefaultStorage {
    let (m, _) = module_on(store, config(), Arc::default());
    m.start().await.unwrap();
    m
}

/// Shuts `m` down and starts a new module on the same `store`, as a restart
/// within the process would.
pub async fn restarted(m: DefaultStorage, store: &MemoryStore) -> DefaultStorage {
    m.shutdown().await.unwrap();
    started(store).await
}

/// A store holding `n` records `k0`.. in the map `big`.
pub async fn seeded(n: usize) -> MemoryStore {
    let store = MemoryStore::new();
    let m = started(&store).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let ops = chunk
            .iter()
            .map(|i| put("big", &format!("k{i}"), *i as i64, 10))
            .collect();
        apply(&m, ops, WriteConcern::Memory).await;
    }
    m.shutdown().await.unwrap();
    store
}

pub fn v(n: i64) -> RawValue {
    RawValue::encode(&n).unwrap()
}

pub fn put(map: &str, key: &str, n: i64, millis: u64) -> KeyedOp {
    put_ttl(map, key, n, millis, None)
}

pub fn put_ttl(map: &str, key: &str, n: i64, millis: u64, ttl: Option<u64>) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: ROption::RSome(v(n)),
            timestamp: Timestamp::new(millis, 0, "w"),
            ttl_ms: ttl.into(),
        }),
    }
}

pub fn tombstone(map: &str, key: &str, millis: u64) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: ROption::RNone,
            timestamp: Timestamp::new(millis, 0, "w"),
            ttl_ms: ROption::RNone,
        }),
    }
}

pub fn or_add(map: &str, key: &str, n: i64, millis: u64, ttl: Option<u64>) -> KeyedOp {
    let timestamp = Timestamp::new(millis, 0, "w");
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::OrAdd(OrRecord {
            value: v(n),
            tag: timestamp.to_string().into(),
            timestamp,
            ttl_ms: ttl.into(),
        }),
    }
}

pub async fn apply(m: &DefaultStorage, ops: Vec<KeyedOp>, concern: WriteConcern) -> Vec<OpOutcome> {
    m.apply(batch_from(ops, concern, Origin::client(1, NODE), None))
        .await
        .expect("apply")
        .into_vec()
}

pub async fn read(m: &DefaultStorage, map: &str, key: &str) -> RecordState {
    m.read(map.into(), vec![RString::from(key)].into())
        .await
        .expect("read")
        .remove(0)
        .state
}

pub fn now() -> u64 {
    hangar_core::hlc::system_millis()
}
