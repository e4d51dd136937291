//! Partition table changes (`StorageAccessor::partitions_changed`): newly
//! held partitions are loaded into loaded maps with the CRDT rules and
//! reach live queries; released ones leave memory (not the disk) without
//! LEAVE events; writes during the change are kept; a later table
//! supersedes an earlier one.
//!
//! Keys are split by the parity of their partition: the view relates the
//! even partitions, the odd ones, or all of them.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString};
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::hlc::Hlc;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{
    ChangeType, OpStatus, QueryRequest, QuerySink, QueryUpdate, RecordState,
};
use hangar_core::{partition_of, MapKind, RawValue, WriteConcern};
use hangar_storage::module::testing::ControlledView;
use hangar_storage::persistence::testing::InstrumentedBackend;
use hangar_storage::persistence::{MemoryBackend, MemoryStore, PersistenceBackend};
use hangar_storage::DefaultStorage;
use parking_lot::Mutex;

use super::support::{apply, config, now, or_add, put, read, v, Metrics, NODE};

const MAP: &str = "m";

fn even(p: u32) -> bool {
    p % 2 == 0
}

fn odd(p: u32) -> bool {
    p % 2 == 1
}

/// 40 keys, with their partition's parity.
fn keys() -> Vec<(String, bool)> {
    (0..40)
        .map(|i| {
            let k = format!("key-{i}");
            let e = even(partition_of(&k));
            (k, e)
        })
        .collect()
}

fn keys_where(want_even: bool) -> Vec<String> {
    keys()
        .into_iter()
        .filter(|(_, e)| *e == want_even)
        .map(|(k, _)| k)
        .collect()
}

fn deps(view: Arc<ControlledView>, metrics: Arc<Metrics>) -> StorageDeps {
    StorageDeps {
        clock: Arc::new(Hlc::new(NODE).unwrap()),
        metrics,
        partitions: view,
    }
}

/// A started module over an instrumented memory backend on `store`.
async fn on_memory(
    store: &MemoryStore,
    view: Arc<ControlledView>,
    metrics: Arc<Metrics>,
) -> (DefaultStorage, Arc<InstrumentedBackend>) {
    let inst = Arc::new(InstrumentedBackend::new(Arc::new(MemoryBackend::open(
        store,
    ))));
    let b = inst.clone();
    let m = DefaultStorage::with_backend(
        config(),
        deps(view, metrics),
        "instrumented memory",
        Arc::new(move |_| Ok(b.clone() as Arc<dyn PersistenceBackend>)),
    )
    .unwrap();
    m.start().await.unwrap();
    (m, inst)
}

/// Writes value `i + 1` at millis 10 for the `i`th key of [`keys`]
/// (never 0: a falsy value is no query row), persisted.
async fn seed(m: &DefaultStorage) {
    let ops = keys()
        .iter()
        .enumerate()
        .map(|(i, (k, _))| put(MAP, k, i as i64 + 1, 10))
        .collect();
    for o in apply(m, ops, WriteConcern::Persisted).await {
        assert_eq!(o.status, OpStatus::Applied);
    }
}

/// Tells `m` about `version` and waits (bounded) until it is applied.
async fn change(m: &DefaultStorage, version: u64) {
    m.accessor().partitions_changed(version);
    applied(m, version).await;
}

async fn applied(m: &DefaultStorage, version: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while m.partitions_applied() < version {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("version {version} was not applied within 10 s"));
}

fn value_of(state: &RecordState) -> Option<i64> {
    match state {
        RecordState::Lww(r) => r
            .value
            .as_ref()
            .into_option()
            .map(|v| rmp_serde::from_slice(v.as_bytes()).unwrap()),
        _ => None,
    }
}

async fn query_keys(m: &DefaultStorage) -> Vec<String> {
    let page = m
        .query(QueryRequest {
            map: MAP.into(),
            query: RawValue::from_msgpack(Vec::new()),
            fields: ROption::RNone,
            consistency: ROption::RNone,
        })
        .await
        .unwrap();
    let mut keys: Vec<String> = page.rows.iter().map(|r| r.key.to_string()).collect();
    keys.sort();
    keys
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every update a live query sends.
#[derive(Default)]
struct Updates(Mutex<Vec<(ChangeType, String)>>);

impl QuerySink for Updates {
    fn deliver(&self, u: &QueryUpdate) {
        self.0.lock().push((u.change, u.key.to_string()));
    }
}

async fn subscribe(m: &DefaultStorage) -> (Arc<Updates>, Vec<String>) {
    let updates = Arc::new(Updates::default());
    let page = m
        .subscribe(
            1,
            QueryRequest {
                map: MAP.into(),
                query: RawValue::from_msgpack(Vec::new()),
                fields: ROption::RNone,
                consistency: ROption::RNone,
            },
            updates.clone(),
        )
        .await
        .unwrap();
    let keys = page.rows.iter().map(|r| r.key.to_string()).collect();
    (updates, sorted(keys))
}

fn counter(metrics: &Metrics, change: &str) -> f64 {
    metrics
        .named("hangar_ownership_records_total")
        .iter()
        .filter(|(l, _)| l.iter().any(|(k, v)| k == "change" && v == change))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_newly_held_partitions_load_into_a_loaded_map_on_redb_and_enter_live_queries() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageModuleConfig {
        data_dir: dir.path().to_path_buf(),
        settings: PluginSettings::default().with("backend", "embedded"),
        ..config()
    };
    let all = ControlledView::new(NODE, |_| true);
    let m = DefaultStorage::new(cfg.clone(), deps(all, Arc::default())).unwrap();
    m.start().await.unwrap();
    seed(&m).await;
    m.shutdown().await.unwrap();

    let view = ControlledView::new(NODE, even);
    let metrics = Arc::new(Metrics::default());
    let m = DefaultStorage::new(cfg, deps(view.clone(), metrics.clone())).unwrap();
    m.start().await.unwrap();
    let (updates, first) = subscribe(&m).await;
    assert_eq!(first, sorted(keys_where(true)), "only related keys load");
    let odd_key = &keys_where(false)[0];
    assert_eq!(read(&m, MAP, odd_key).await, RecordState::Missing);

    let version = view.set_related(|_| true);
    change(&m, version).await;
    for (i, (k, _)) in keys().iter().enumerate() {
        assert_eq!(value_of(&read(&m, MAP, k).await), Some(i as i64 + 1), "{k}");
    }
    let all_keys: Vec<String> = keys().into_iter().map(|(k, _)| k).collect();
    assert_eq!(query_keys(&m).await, sorted(all_keys));
    let mut got = updates.0.lock().clone();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let want: Vec<(ChangeType, String)> = sorted(keys_where(false))
        .into_iter()
        .map(|k| (ChangeType::Enter, k))
        .collect();
    assert_eq!(got, want, "one ENTER per newly loaded key, nothing else");
    assert_eq!(counter(&metrics, "loaded"), keys_where(false).len() as f64);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_a_newer_value_in_memory_is_not_overwritten_by_an_older_persisted_one() {
    let store = MemoryStore::new();
    let (m, _) = on_memory(&store, ControlledView::new(NODE, |_| true), Arc::default()).await;
    seed(&m).await;
    m.shutdown().await.unwrap();

    let view = ControlledView::new(NODE, even);
    let (m, inst) = on_memory(&store, view.clone(), Arc::default()).await;
    let k = keys_where(false)[0].clone();
    // Load the map, then hold commits: the newer write lives in memory
    // only while the change loads the older persisted record.
    assert_eq!(read(&m, MAP, &k).await, RecordState::Missing);
    let hold = inst.hold().await;
    let out = apply(&m, vec![put(MAP, &k, 999, 50)], WriteConcern::Memory).await;
    assert_eq!(out[0].status, OpStatus::Applied);
    let version = view.set_related(|_| true);
    change(&m, version).await;
    assert_eq!(value_of(&read(&m, MAP, &k).await), Some(999));
    drop(hold);
    m.shutdown().await.unwrap();
    let (m, _) = on_memory(&store, ControlledView::new(NODE, |_| true), Arc::default()).await;
    assert_eq!(
        value_of(&read(&m, MAP, &k).await),
        Some(999),
        "the newer value is the persisted one too"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_released_keys_leave_memory_without_leave_events_and_come_back_from_disk() {
    let store = MemoryStore::new();
    let view = ControlledView::new(NODE, |_| true);
    let metrics = Arc::new(Metrics::default());
    let (m, _) = on_memory(&store, view.clone(), metrics.clone()).await;
    seed(&m).await;
    let root_all = m.merkle_root(MAP.into(), MapKind::Lww).await.unwrap();
    let (updates, first) = subscribe(&m).await;
    assert_eq!(first.len(), keys().len());

    let version = view.set_related(even);
    change(&m, version).await;
    for k in keys_where(false) {
        assert_eq!(read(&m, MAP, &k).await, RecordState::Missing, "{k}");
    }
    for k in keys_where(true) {
        assert!(value_of(&read(&m, MAP, &k).await).is_some(), "{k}");
    }
    assert_eq!(query_keys(&m).await, sorted(keys_where(true)));
    assert!(
        updates.0.lock().is_empty(),
        "no LEAVE for released keys: {:?}",
        updates.0.lock()
    );
    let root_even = m.merkle_root(MAP.into(), MapKind::Lww).await.unwrap();
    assert_ne!(root_even, root_all, "released keys leave the Merkle tree");
    assert_eq!(
        counter(&metrics, "released"),
        keys_where(false).len() as f64
    );
    let info = m.list_maps().await.unwrap();
    assert_eq!(info[0].entries, keys_where(true).len() as u64);

    // The disk kept them: relating them again brings them back.
    let version = view.set_related(|_| true);
    change(&m, version).await;
    for (i, (k, _)) in keys().iter().enumerate() {
        assert_eq!(value_of(&read(&m, MAP, k).await), Some(i as i64 + 1), "{k}");
    }
    assert_eq!(
        m.merkle_root(MAP.into(), MapKind::Lww).await.unwrap(),
        root_all
    );
    let mut got = updates.0.lock().clone();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let want: Vec<(ChangeType, String)> = sorted(keys_where(false))
        .into_iter()
        .map(|k| (ChangeType::Enter, k))
        .collect();
    assert_eq!(got, want, "returning keys ENTER again");
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_writes_made_while_the_change_loads_are_kept_and_stale_ones_refused() {
    let store = MemoryStore::new();
    let (m, _) = on_memory(&store, ControlledView::new(NODE, |_| true), Arc::default()).await;
    seed(&m).await;
    m.shutdown().await.unwrap();

    let view = ControlledView::new(NODE, even);
    let (m, inst) = on_memory(&store, view.clone(), Arc::default()).await;
    let odd_keys = keys_where(false);
    assert_eq!(read(&m, MAP, &odd_keys[0]).await, RecordState::Missing);
    let loads = inst.loads();
    let gate = inst.hold_loads().await;
    let version = view.set_related(|_| true);
    m.accessor().partitions_changed(version);
    tokio::time::timeout(Duration::from_secs(10), async {
        while inst.loads() == loads {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the change reads the backend");
    let newer = apply(
        &m,
        vec![put(MAP, &odd_keys[0], 500, 50)],
        WriteConcern::Memory,
    )
    .await;
    let stale = apply(
        &m,
        vec![put(MAP, &odd_keys[1], 501, 5)],
        WriteConcern::Memory,
    )
    .await;
    assert_eq!(newer[0].status, OpStatus::Applied);
    assert_eq!(
        stale[0].status,
        OpStatus::Unchanged,
        "a stale write to a key held only on disk is refused"
    );
    assert!(m.partitions_applied() < version, "the load is still held");
    drop(gate);
    applied(&m, version).await;
    assert_eq!(value_of(&read(&m, MAP, &odd_keys[0]).await), Some(500));
    let i1 = keys().iter().position(|(k, _)| *k == odd_keys[1]).unwrap();
    assert_eq!(
        value_of(&read(&m, MAP, &odd_keys[1]).await),
        Some(i1 as i64 + 1)
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t84_quick_successive_versions_end_in_the_latest_state() {
    let store = MemoryStore::new();
    let view = ControlledView::new(NODE, |_| true);
    let metrics = Arc::new(Metrics::default());
    let (m, inst) = on_memory(&store, view.clone(), metrics.clone()).await;
    seed(&m).await;

    // Back to back, no waiting: all -> even -> odd.
    let v2 = view.set_related(even);
    m.accessor().partitions_changed(v2);
    let v3 = view.set_related(odd);
    m.accessor().partitions_changed(v3);
    applied(&m, v3).await;
    assert_eq!(query_keys(&m).await, sorted(keys_where(false)));

    // A load superseded while it reads the backend: even is asked for,
    // then odd again before the backend answers. Nothing even stays.
    let loads = inst.loads();
    let gate = inst.hold_loads().await;
    let v4 = view.set_related(|_| true);
    m.accessor().partitions_changed(v4);
    tokio::time::timeout(Duration::from_secs(10), async {
        while inst.loads() == loads {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the change reads the backend");
    let v5 = view.set_related(odd);
    m.accessor().partitions_changed(v5);
    let loaded_before = counter(&metrics, "loaded");
    drop(gate);
    applied(&m, v5).await;
    assert_eq!(query_keys(&m).await, sorted(keys_where(false)));
    for k in keys_where(true) {
        assert_eq!(read(&m, MAP, &k).await, RecordState::Missing, "{k}");
    }
    assert_eq!(
        counter(&metrics, "loaded"),
        loaded_before,
        "the superseded load merged nothing"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_or_records_and_tombstones_come_back_exactly() {
    let store = MemoryStore::new();
    let view = ControlledView::new(NODE, |_| true);
    let (m, _) = on_memory(&store, view.clone(), Arc::default()).await;
    // TTL records stamped now, so that garbage collection leaves them be.
    let t0 = now();
    let mut ops = Vec::new();
    for (i, (k, _)) in keys().iter().enumerate() {
        ops.push(or_add("o", k, i as i64 + 1, 10 + i as u64, None));
        ops.push(or_add(
            "o",
            k,
            100 + i as i64,
            t0 + i as u64,
            Some(3_600_000),
        ));
    }
    apply(&m, ops, WriteConcern::Persisted).await;
    // Remove the first tag of one odd key: its tombstone must survive.
    let k = keys_where(false)[0].clone();
    let RecordState::Or(before) = read(&m, "o", &k).await else {
        panic!("an OR key")
    };
    let tag = before[0].tag.clone();
    let remove = hangar_core::KeyedOp {
        map: "o".into(),
        key: k.as_str().into(),
        op: hangar_core::MapOp::OrRemove(tag.clone()),
    };
    apply(&m, vec![remove], WriteConcern::Persisted).await;
    let root = m.merkle_root("o".into(), MapKind::Or).await.unwrap();
    let state: Vec<RecordState> = {
        let keys: Vec<RString> = keys().into_iter().map(|(k, _)| k.into()).collect();
        m.read("o".into(), keys.into())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.state)
            .collect()
    };

    let v2 = view.set_related(even);
    change(&m, v2).await;
    assert_eq!(read(&m, "o", &k).await, RecordState::Missing);
    let v3 = view.set_related(|_| true);
    change(&m, v3).await;
    let again: Vec<RecordState> = {
        let keys: Vec<RString> = keys().into_iter().map(|(k, _)| k.into()).collect();
        m.read("o".into(), keys.into())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.state)
            .collect()
    };
    assert_eq!(again, state, "every OR record comes back as it was");
    assert_eq!(m.merkle_root("o".into(), MapKind::Or).await.unwrap(), root);
    let tombstones = m.accessor().or_tombstones("o".into()).await.unwrap();
    assert!(tombstones.contains(&tag), "{tombstones:?}");
    // A stale add of the removed tag stays refused.
    let readd = hangar_core::KeyedOp {
        map: "o".into(),
        key: k.as_str().into(),
        op: hangar_core::MapOp::OrAdd(hangar_core::OrRecord {
            value: v(7),
            timestamp: before[0].timestamp.clone(),
            tag,
            ttl_ms: ROption::RNone,
        }),
    };
    let out = apply(&m, vec![readd], WriteConcern::Memory).await;
    assert_eq!(out[0].status, OpStatus::Unchanged);
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_a_write_to_a_released_key_waits_until_its_persisted_copy_is_complete() {
    let store = MemoryStore::new();
    let view = ControlledView::new(NODE, |_| true);
    let (m, inst) = on_memory(&store, view.clone(), Arc::default()).await;
    seed(&m).await;
    let k = keys_where(false)[0].clone();
    // A newer value still on its way to disk when its key is released.
    let hold = inst.hold().await;
    let out = apply(&m, vec![put(MAP, &k, 50, 50)], WriteConcern::Memory).await;
    assert_eq!(out[0].status, OpStatus::Applied);
    let v2 = view.set_related(even);
    change(&m, v2).await;
    assert_eq!(read(&m, MAP, &k).await, RecordState::Missing);
    // A write older than it but newer than the disk's must not win: it
    // waits for the commit, then merges what the disk holds.
    let stale = {
        let (m, k) = (m.clone(), k.clone());
        tokio::spawn(
            async move { apply(&m, vec![put(MAP, &k, 30, 30)], WriteConcern::Memory).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !stale.is_finished(),
        "the write waits for the released key's commit"
    );
    drop(hold);
    let stale = tokio::time::timeout(Duration::from_secs(10), stale)
        .await
        .expect("the write finishes once the commit is durable")
        .unwrap();
    assert_eq!(stale[0].status, OpStatus::Unchanged);
    let v3 = view.set_related(|_| true);
    change(&m, v3).await;
    assert_eq!(value_of(&read(&m, MAP, &k).await), Some(50));
    m.shutdown().await.unwrap();
}
