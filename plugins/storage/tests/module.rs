//! The default module's own behaviour beyond the trait contract (which the
//! conformance suite in `hangar-tests` checks): configuration errors, lazy
//! loading (one load, failures retried, slices), fail-stop persistence,
//! garbage collection, metrics, and the convergence law through the whole
//! module.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::{FullTextIndexConfig, StorageBackendKind, StorageModuleConfig};
use hangar_core::hlc::Hlc;
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::{MetricKind, MetricSample, MetricsSink};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{
    ApplyBatch, ChangeType, OpOutcome, OpStatus, Origin, QueryRequest, QuerySink, QueryUpdate,
    RecordState, WriteOp,
};
use hangar_core::{
    ErrorKind, KeyedOp, LwwRecord, MapKind, MapOp, OrRecord, RawValue, Timestamp, WriteConcern,
};
use hangar_storage::persistence::testing::{FailureStyle, InstrumentedBackend};
use hangar_storage::persistence::{MemoryBackend, MemoryStore, PersistenceBackend};
use hangar_storage::DefaultStorage;
use parking_lot::Mutex;
use proptest::prelude::*;

const NODE: &str = "n1";

struct AllLocal;

impl PartitionView for AllLocal {
    fn local_node(&self) -> RString {
        NODE.into()
    }
    fn version(&self) -> u64 {
        1
    }
    fn owner(&self, _p: u32) -> ROption<RString> {
        ROption::RSome(NODE.into())
    }
    fn backups(&self, _p: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, _p: u32) -> bool {
        true
    }
    fn is_related(&self, _p: u32) -> bool {
        true
    }
}

type Labels = Vec<(String, String)>;

/// Records every metric sample by name.
#[derive(Default)]
struct Metrics(Mutex<Vec<(String, MetricKind, Labels, f64)>>);

impl Metrics {
    fn named(&self, name: &str) -> Vec<(Labels, f64)> {
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

fn deps(metrics: Arc<Metrics>) -> StorageDeps {
    StorageDeps {
        clock: Arc::new(Hlc::new(NODE).unwrap()),
        metrics,
        partitions: Arc::new(AllLocal),
    }
}

fn config() -> StorageModuleConfig {
    StorageModuleConfig {
        node_id: NODE.into(),
        backend: StorageBackendKind::Memory,
        write_ack_timeout_ms: 500,
        ..StorageModuleConfig::default()
    }
}

/// A module over an instrumented memory backend on `store`.
fn module_on(
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

fn v(n: i64) -> RawValue {
    RawValue::encode(&n).unwrap()
}

fn put(map: &str, key: &str, n: i64, millis: u64) -> KeyedOp {
    put_ttl(map, key, n, millis, None)
}

fn put_ttl(map: &str, key: &str, n: i64, millis: u64, ttl: Option<u64>) -> KeyedOp {
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

fn tombstone(map: &str, key: &str, millis: u64) -> KeyedOp {
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

fn or_add(map: &str, key: &str, n: i64, millis: u64, ttl: Option<u64>) -> KeyedOp {
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

async fn apply(m: &DefaultStorage, ops: Vec<KeyedOp>, concern: WriteConcern) -> Vec<OpOutcome> {
    m.apply(ApplyBatch {
        ops: ops
            .into_iter()
            .map(|op| WriteOp {
                op,
                concern,
                timeout_ms: ROption::RNone,
            })
            .collect(),
        origin: Origin::client(1, NODE),
    })
    .await
    .expect("apply")
    .into_vec()
}

async fn read(m: &DefaultStorage, map: &str, key: &str) -> RecordState {
    m.read(map.into(), vec![RString::from(key)].into())
        .await
        .expect("read")
        .remove(0)
        .state
}

fn now() -> u64 {
    hangar_core::hlc::system_millis()
}

#[tokio::test]
async fn t10_a_bad_full_text_config_is_a_config_error_naming_the_map_and_field() {
    let mut c = config();
    c.full_text_search.insert(
        "docs".into(),
        FullTextIndexConfig {
            fields: vec!["title".into(), "".into()],
            ..FullTextIndexConfig::default()
        },
    );
    let e = DefaultStorage::new(c, deps(Arc::default()))
        .err()
        .expect("refused");
    assert_eq!(e.kind, ErrorKind::CONFIG);
    assert!(
        e.message.contains("docs") && e.message.contains("fields[1]"),
        "{e}"
    );
    let mut c = config();
    c.node_id = "a:b".into();
    let e = DefaultStorage::new(c, deps(Arc::default()))
        .err()
        .expect("refused");
    assert_eq!(e.kind, ErrorKind::CONFIG);
}

#[tokio::test]
async fn t11_the_memory_backend_keeps_maps_across_a_module_restart_in_the_process() {
    let store = MemoryStore::new();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    let out = apply(&m, vec![put("m", "k", 1, 10)], WriteConcern::Persisted).await;
    m.notify_acks(vec![out[0].ack].into(), WriteConcern::Replicated);
    let acks = m.await_acks(vec![out[0].ack].into()).await.unwrap();
    assert!(
        acks[0].success,
        "PERSISTED = committed to the memory store: {:?}",
        acks[0]
    );
    m.shutdown().await.unwrap();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    assert!(matches!(read(&m, "m", "k").await, RecordState::Lww(r) if r.timestamp.millis == 10));
    m.shutdown().await.unwrap();
}

async fn seeded(n: usize) -> MemoryStore {
    let store = MemoryStore::new();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_concurrent_first_uses_share_one_load() {
    let store = seeded(2_000).await;
    let metrics = Arc::new(Metrics::default());
    let (m, inst) = module_on(&store, config(), metrics.clone());
    m.start().await.unwrap();
    let gate = inst.hold_loads().await;
    let users: Vec<_> = (0..10)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move { read(&m, "big", &format!("k{i}")).await })
        })
        .collect();
    while inst.loads() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!m.is_loaded("big"));
    drop(gate);
    for u in users {
        assert!(matches!(u.await.unwrap(), RecordState::Lww(_)));
    }
    assert_eq!(inst.loads(), 1, "one load for every concurrent first use");
    let loads = metrics.named("hangar_map_load_seconds");
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0].0, [("map".to_string(), "big".to_string())]);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_a_failed_load_surfaces_as_storage_and_the_next_use_retries() {
    let store = seeded(10).await;
    let metrics = Arc::new(Metrics::default());
    let (m, inst) = module_on(&store, config(), metrics.clone());
    m.start().await.unwrap();
    inst.fail_next_loads(1);
    let e = m
        .read("big".into(), vec![RString::from("k1")].into())
        .await
        .expect_err("the load failed");
    assert_eq!(e.kind, ErrorKind::STORAGE, "{e}");
    assert!(
        e.message.contains("big") && e.message.contains("injected"),
        "{e}"
    );
    assert_eq!(metrics.named("hangar_map_load_failures_total").len(), 1);
    assert!(
        matches!(read(&m, "big", "k1").await, RecordState::Lww(_)),
        "retried"
    );
    assert_eq!(inst.loads(), 2);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_a_large_load_runs_in_tasklet_slices() {
    let store = seeded(60_000).await;
    let mut c = config();
    c.tasklet_budget_ms = 1;
    let (m, _) = module_on(&store, c, Arc::default());
    m.start().await.unwrap();
    assert!(matches!(
        read(&m, "big", "k59999").await,
        RecordState::Lww(_)
    ));
    let t = m.stats().tasklets;
    assert_eq!(t.completed, 1, "{t:?}");
    assert!(t.iterations >= 2, "the merge was cut into slices: {t:?}");
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_after_a_commit_failure_writes_are_refused_and_reads_keep_working() {
    let (m, inst) = module_on(&MemoryStore::new(), config(), Arc::default());
    m.start().await.unwrap();
    let first = apply(&m, vec![put("m", "ok", 1, 10)], WriteConcern::Persisted).await;
    m.notify_acks(vec![first[0].ack].into(), WriteConcern::Replicated);
    assert!(m.await_acks(vec![first[0].ack].into()).await.unwrap()[0].success);
    inst.fail_commits_after(0, FailureStyle::BeforeWrite);
    let out = apply(&m, vec![put("m", "k", 2, 11)], WriteConcern::Persisted).await;
    assert_eq!(out[0].status, OpStatus::Applied, "applied in memory");
    m.notify_acks(vec![out[0].ack].into(), WriteConcern::Replicated);
    let ack = m.await_acks(vec![out[0].ack].into()).await.unwrap();
    assert!(!ack[0].success);
    let msg = ack[0].error.as_ref().into_option().unwrap().to_string();
    assert!(msg.contains("Persistence failed"), "{msg}");
    let later = apply(&m, vec![put("m", "z", 3, 12)], WriteConcern::Memory).await;
    assert_eq!(later[0].status, OpStatus::Rejected);
    let e = later[0].error.as_ref().into_option().unwrap();
    assert_eq!(e.kind, ErrorKind::STORAGE);
    assert!(e.message.contains("restart"), "{e}");
    assert!(
        matches!(read(&m, "m", "ok").await, RecordState::Lww(_)),
        "reads work"
    );
    let _ = m.shutdown().await;
}

struct Updates(Mutex<Vec<(ChangeType, String)>>);

impl QuerySink for Updates {
    fn deliver(&self, u: &QueryUpdate) {
        self.0.lock().push((u.change, u.key.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_gc_turns_expired_records_into_tombstones_that_live_queries_see() {
    let store = MemoryStore::new();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    let t = now();
    apply(
        &m,
        vec![
            put_ttl("ttl", "short", 1, t, Some(150)),
            put_ttl("ttl", "long", 2, t, Some(3_600_000)),
            or_add("ttlor", "k", 3, t, Some(150)),
        ],
        WriteConcern::Memory,
    )
    .await;
    let updates = Arc::new(Updates(Mutex::new(Vec::new())));
    let empty = RawValue::encode(&serde_json::json!({})).unwrap();
    m.subscribe(
        1,
        QueryRequest {
            map: "ttl".into(),
            query: empty,
            fields: ROption::RNone,
        },
        updates.clone(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = m.collect_garbage(false).await.unwrap();
    assert_eq!(report.expired, 2, "{report:?}");
    match read(&m, "ttl", "short").await {
        RecordState::Lww(r) => {
            assert!(r.is_tombstone());
            assert_eq!(
                r.timestamp,
                Timestamp::new(t + 150, 0, NODE),
                "{{millis+ttl, 0, node}}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(read(&m, "ttl", "long").await, RecordState::Lww(r) if !r.is_tombstone()));
    assert_eq!(read(&m, "ttlor", "k").await, RecordState::Missing);
    assert_eq!(
        *updates.0.lock(),
        [(ChangeType::Leave, "short".to_string())]
    );
    assert_eq!(
        m.collect_garbage(false).await.unwrap().expired,
        0,
        "once only"
    );
    m.shutdown().await.unwrap();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    assert!(matches!(read(&m, "ttl", "short").await, RecordState::Lww(r) if r.is_tombstone()));
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_gc_prunes_tombstones_older_than_30_days_from_memory_and_store() {
    let store = MemoryStore::new();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    let old = now() - hangar_storage::module::TOMBSTONE_MAX_AGE_MS - 60_000;
    apply(
        &m,
        vec![
            tombstone("p", "ancient", old),
            tombstone("p", "recent", now()),
            put("p", "live", 1, old),
        ],
        WriteConcern::Memory,
    )
    .await;
    let report = m.collect_garbage(true).await.unwrap();
    assert_eq!(report.pruned, 1, "{report:?}");
    assert_eq!(read(&m, "p", "ancient").await, RecordState::Missing);
    assert!(matches!(read(&m, "p", "recent").await, RecordState::Lww(_)));
    assert!(
        matches!(read(&m, "p", "live").await, RecordState::Lww(_)),
        "values are never pruned"
    );
    m.shutdown().await.unwrap();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    assert_eq!(
        read(&m, "p", "ancient").await,
        RecordState::Missing,
        "gone from the store"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_metrics_report_ops_sizes_loads_and_commit_latency() {
    let store = seeded(100).await;
    let metrics = Arc::new(Metrics::default());
    let (m, _) = module_on(&store, config(), metrics.clone());
    m.start().await.unwrap();
    apply(
        &m,
        vec![
            put("big", "k1", 5, 20),
            put("big", "k2", 5, 1),
            put("new", "a", 1, 1),
        ],
        WriteConcern::Memory,
    )
    .await;
    let _ = read(&m, "big", "k1").await;
    m.shutdown().await.unwrap();
    let ops: BTreeMap<String, f64> = metrics.named("hangar_ops_applied_total").into_iter().fold(
        BTreeMap::new(),
        |mut acc, (labels, v)| {
            let key = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            *acc.entry(key).or_default() += v;
            acc
        },
    );
    assert_eq!(ops.get("kind=lww,status=applied"), Some(&2.0), "{ops:?}");
    assert_eq!(ops.get("kind=lww,status=unchanged"), Some(&1.0), "{ops:?}");
    let sizes = metrics.named("hangar_map_size_items");
    assert!(
        sizes.iter().any(|(l, v)| l[0].1 == "big" && *v == 100.0),
        "{sizes:?}"
    );
    assert!(
        sizes.iter().any(|(l, v)| l[0].1 == "new" && *v == 1.0),
        "{sizes:?}"
    );
    assert_eq!(metrics.named("hangar_map_load_seconds").len(), 1);
    let commits = metrics.named("hangar_commit_seconds");
    assert!(!commits.is_empty() && commits.iter().all(|(_, s)| *s >= 0.0));
    assert!(
        !metrics.named("hangar_write_acks_total").is_empty()
            || !metrics.named("hangar_write_acks_tracked").is_empty()
    );
}

fn arb_op() -> impl Strategy<Value = KeyedOp> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let node = prop::sample::select(vec!["x", "y"]);
    prop_oneof![
        // One timestamp is one write: its value follows from it (two
        // different writes with equal timestamps do not exist).
        (key.clone(), 1u64..6, node.clone()).prop_map(|(k, m, nd)| {
            let n = m as i64 * 2 + i64::from(nd == "y");
            KeyedOp {
                map: "lww".into(),
                key: k.into(),
                op: MapOp::Lww(LwwRecord {
                    value: if n % 3 == 0 {
                        ROption::RNone
                    } else {
                        ROption::RSome(v(n))
                    },
                    timestamp: Timestamp::new(m, 0, nd),
                    ttl_ms: ROption::RNone,
                }),
            }
        }),
        (key.clone(), 0i64..5, 1u64..6, node.clone()).prop_map(|(k, n, m, nd)| {
            let timestamp = Timestamp::new(m, 0, nd);
            KeyedOp {
                map: "or".into(),
                key: k.into(),
                op: MapOp::OrAdd(OrRecord {
                    value: v(n),
                    tag: timestamp.to_string().into(),
                    timestamp,
                    ttl_ms: ROption::RNone,
                }),
            }
        }),
        (key, 1u64..6, node).prop_map(|(k, m, nd)| KeyedOp {
            map: "or".into(),
            key: k.into(),
            op: MapOp::OrRemove(Timestamp::new(m, 0, nd).to_string().into()),
        }),
    ]
}

async fn fingerprint(m: &DefaultStorage) -> (u32, u32, Vec<RecordState>) {
    let mut states = Vec::new();
    for map in ["lww", "or"] {
        for k in ["a", "b", "c"] {
            states.push(read(m, map, k).await);
        }
    }
    (
        m.merkle_root("lww".into(), MapKind::Lww).await.unwrap(),
        m.merkle_root("or".into(), MapKind::Or).await.unwrap(),
        states,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Applying the same ops in any order, in any batches, with repeats,
    /// gives the same reads and Merkle roots through the whole module.
    #[test]
    fn t60_prop_any_order_and_batching_gives_the_same_state(
        ops in prop::collection::vec(arb_op(), 1..25),
        seed in any::<u64>(),
        split in 1usize..6,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (a, _) = module_on(&MemoryStore::new(), config(), Arc::default());
            let (b, _) = module_on(&MemoryStore::new(), config(), Arc::default());
            a.start().await.unwrap();
            b.start().await.unwrap();
            apply(&a, ops.clone(), WriteConcern::Memory).await;
            let mut shuffled = ops.clone();
            shuffled.extend(ops.iter().take(3).cloned());
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            for chunk in shuffled.chunks(split) {
                apply(&b, chunk.to_vec(), WriteConcern::Memory).await;
            }
            let (fa, fb) = (fingerprint(&a).await, fingerprint(&b).await);
            a.shutdown().await.unwrap();
            b.shutdown().await.unwrap();
            prop_assert_eq!(fa, fb);
            Ok(())
        })?;
    }
}

/// Keeps the keys a subscription's client holds. Updates may arrive before
/// `subscribe` returns the first page (the subscription is live from the
/// snapshot on), so they are buffered until the page is applied, as a host
/// does.
/// Ready to apply updates directly, the keys held, updates buffered before.
type WindowState = (
    bool,
    std::collections::BTreeSet<String>,
    Vec<(ChangeType, String)>,
);

#[derive(Default)]
struct Window(Mutex<WindowState>);

impl Window {
    fn apply(keys: &mut std::collections::BTreeSet<String>, change: ChangeType, key: &str) {
        match change {
            ChangeType::Enter => assert!(keys.insert(key.to_string()), "ENTER twice: {key}"),
            ChangeType::Leave => assert!(keys.remove(key), "LEAVE of an absent key: {key}"),
            ChangeType::Update => assert!(keys.contains(key), "UPDATE of an absent key: {key}"),
        }
    }

    fn first_page(&self, rows: impl IntoIterator<Item = String>) {
        let mut g = self.0.lock();
        let (ready, keys, early) = &mut *g;
        keys.extend(rows);
        for (c, k) in std::mem::take(early) {
            Self::apply(keys, c, &k);
        }
        *ready = true;
    }
}

impl QuerySink for Window {
    fn deliver(&self, u: &QueryUpdate) {
        let mut g = self.0.lock();
        let (ready, keys, early) = &mut *g;
        if *ready {
            Self::apply(keys, u.change, &u.key);
        } else {
            early.push((u.change, u.key.to_string()));
        }
    }
}

fn hot(map: &str, key: &str, on: bool, millis: u64) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: ROption::RSome(RawValue::encode(&serde_json::json!({"hot": on})).unwrap()),
            timestamp: Timestamp::new(millis, 0, "w"),
            ttl_ms: ROption::RNone,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t23_a_large_maps_snapshot_is_read_in_slices_and_misses_no_concurrent_change() {
    let mut c = config();
    c.tasklet_budget_ms = 1;
    let (m, _) = module_on(&MemoryStore::new(), c, Arc::default());
    m.start().await.unwrap();
    let n = 40_000u64;
    for start in (0..n).step_by(5_000) {
        let ops = (start..start + 5_000)
            .map(|i| hot("big", &format!("k{i:05}"), i % 2 == 0, 10))
            .collect();
        apply(&m, ops, WriteConcern::Memory).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (m, stop) = (m.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let k = (i * 7919) % n;
                apply(
                    &m,
                    vec![hot("big", &format!("k{k:05}"), i % 3 == 0, 100 + i)],
                    WriteConcern::Memory,
                )
                .await;
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let window = Arc::new(Window::default());
    let query = RawValue::encode(&serde_json::json!({"where": {"hot": true}})).unwrap();
    let page = m
        .subscribe(
            3,
            QueryRequest {
                map: "big".into(),
                query: query.clone(),
                fields: ROption::RNone,
            },
            window.clone(),
        )
        .await
        .unwrap();
    window.first_page(page.rows.iter().map(|r| r.key.to_string()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 10, "writes raced the snapshot: {writes}");
    let slices = m.stats().tasklets.iterations;
    assert!(slices >= 2, "the snapshot was read in slices: {slices}");
    let now = m
        .query(QueryRequest {
            map: "big".into(),
            query,
            fields: ROption::RNone,
        })
        .await
        .unwrap();
    let fresh: std::collections::BTreeSet<String> =
        now.rows.iter().map(|r| r.key.to_string()).collect();
    let held = window.0.lock().1.clone();
    let diff: Vec<&String> = held.symmetric_difference(&fresh).take(10).collect();
    assert!(
        diff.is_empty(),
        "snapshot + updates = a fresh query; differing keys: {diff:?}"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_gc_skips_replaced_records_and_finds_ttl_records_after_a_restart() {
    let store = MemoryStore::new();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    let t = now();
    apply(
        &m,
        vec![
            put_ttl("ttl", "replaced", 1, t, Some(100)),
            put_ttl("ttl", "loaded", 2, t, Some(400)),
        ],
        WriteConcern::Memory,
    )
    .await;
    // A newer write without TTL replaces the first record before it expires.
    apply(
        &m,
        vec![put("ttl", "replaced", 3, t + 1)],
        WriteConcern::Memory,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        m.collect_garbage(false).await.unwrap().expired,
        0,
        "nothing expired any more"
    );
    assert!(matches!(read(&m, "ttl", "replaced").await, RecordState::Lww(r) if !r.is_tombstone()));
    m.shutdown().await.unwrap();
    let (m, _) = module_on(&store, config(), Arc::default());
    m.start().await.unwrap();
    let _ = read(&m, "ttl", "loaded").await; // loads the map and its expiry queue
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(m.collect_garbage(false).await.unwrap().expired, 1);
    assert!(matches!(read(&m, "ttl", "loaded").await, RecordState::Lww(r) if r.is_tombstone()));
    m.shutdown().await.unwrap();
}
