//! In-crate tests of the module's internals that the trait cannot reach.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString};
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::hlc::Hlc;

use crate::settings::StorageSettings;
use hangar_core::module::services::NoMetrics;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{ApplyBatch, Origin, WriteOp};
use hangar_core::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use parking_lot::Mutex;

use super::DefaultStorage;
use crate::persistence::testing::InstrumentedBackend;
use crate::persistence::{MemoryBackend, MemoryStore, PersistenceBackend};
use crate::query::{self, LiveUpdate, Projection, Query};

fn module(store: &MemoryStore) -> (DefaultStorage, Arc<InstrumentedBackend>) {
    let inst = Arc::new(InstrumentedBackend::new(Arc::new(MemoryBackend::open(
        store,
    ))));
    let b = inst.clone();
    let m = DefaultStorage::with_backend(
        StorageModuleConfig::new(
            "n1",
            "./data",
            PluginSettings::of(&StorageSettings::memory()),
        ),
        // A lone node: every partition related. (This unit-test binary
        // cannot link `hangar-testkit`: through its `persistence` feature it
        // links this crate's library, whose plugin symbols would clash.)
        StorageDeps {
            clock: Arc::new(Hlc::new("n1").unwrap()),
            metrics: Arc::new(NoMetrics),
            partitions: super::testing::ControlledView::new("n1", |_| true),
        },
        "test",
        Arc::new(move |_| Ok(b.clone() as Arc<dyn PersistenceBackend>)),
    )
    .unwrap();
    (m, inst)
}

fn put(key: &str, n: i64) -> WriteOp {
    WriteOp {
        op: KeyedOp {
            map: "m".into(),
            key: key.into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(RawValue::encode(&n).unwrap()),
                timestamp: Timestamp::new(10, 0, "w"),
                ttl_ms: ROption::RNone,
            }),
        },
        concern: WriteConcern::Memory,
        timeout_ms: ROption::RNone,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_live_queries_on_a_map_are_refreshed_when_its_load_finishes() {
    let store = MemoryStore::new();
    let (m, _) = module(&store);
    m.start().await.unwrap();
    m.apply(ApplyBatch {
        ops: vec![put("a", 1), put("b", 2)].into(),
        origin: Origin::internal("n1"),
        consistency: abi_stable::std_types::ROption::RNone,
    })
    .await
    .unwrap();
    m.shutdown().await.unwrap();

    let (m, inst) = module(&store);
    m.start().await.unwrap();
    let gate = inst.hold_loads().await;
    let reader = {
        let m = m.clone();
        tokio::spawn(async move { m.read("m".into(), vec![RString::from("a")].into()).await })
    };
    while inst.loads() == 0 {
        tokio::task::yield_now().await;
    }
    // A subscription that exists while the map loads (the registry is
    // shared by every path), holding nothing yet.
    let seen: Arc<Mutex<Vec<(query::ChangeType, String)>>> = Arc::default();
    let sink = {
        let seen = seen.clone();
        move |u: LiveUpdate| seen.lock().push((u.change, u.key.to_string()))
    };
    m.0.registry.subscribe_as(
        query::RegistryId(9),
        "m",
        Query::parse(&rmpv::Value::Nil).unwrap(),
        Projection::all(),
        Arc::new(sink),
        std::iter::empty(),
        0,
    );
    drop(gate);
    reader.await.unwrap().unwrap();
    let mut got = seen.lock().clone();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        [
            (query::ChangeType::Enter, "a".to_string()),
            (query::ChangeType::Enter, "b".to_string())
        ],
        "the finished load sends what the subscription was missing"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_a_read_of_a_loaded_or_unknown_map_is_ready_at_once_an_unloaded_one_loads() {
    use futures::FutureExt as _;
    use hangar_core::module::storage_types::RecordState;

    let store = MemoryStore::new();
    let (m, _) = module(&store);
    m.start().await.unwrap();
    m.apply(ApplyBatch {
        ops: vec![put("a", 1)].into(),
        origin: Origin::internal("n1"),
        consistency: abi_stable::std_types::ROption::RNone,
    })
    .await
    .unwrap();
    let keys = || vec![RString::from("a")].into();
    // Loaded: answered on the caller's thread, no runtime hop.
    let now = m
        .read("m".into(), keys())
        .now_or_never()
        .expect("a loaded map's read is ready on its first poll")
        .unwrap();
    assert!(matches!(now[0].state, RecordState::Lww(_)), "{now:?}");
    // Unknown: every key missing, also at once.
    let none = m
        .read("nobody-wrote-this".into(), keys())
        .now_or_never()
        .expect("an unknown map's read is ready on its first poll")
        .unwrap();
    assert_eq!(none[0].state, RecordState::Missing);
    m.shutdown().await.unwrap();

    // After a restart the map is on disk but not loaded: the read waits for
    // the load (held here), then answers with the stored record.
    let (m, inst) = module(&store);
    m.start().await.unwrap();
    let gate = inst.hold_loads().await;
    let mut pending = m.read("m".into(), keys());
    assert!(
        (&mut pending).now_or_never().is_none(),
        "a read that needs a load cannot answer before it"
    );
    drop(gate);
    let loaded = pending.await.unwrap();
    assert!(matches!(loaded[0].state, RecordState::Lww(_)), "{loaded:?}");
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_released_keys_leave_the_full_text_index_and_return_with_their_partitions() {
    use super::testing::ControlledView;
    use crate::settings::FullTextSettings;
    use hangar_core::module::storage::StorageDeps;
    use hangar_core::partition_of;

    let view = ControlledView::new("n1", |_| true);
    let mut settings = StorageSettings::memory();
    settings.full_text_search.insert(
        "m".into(),
        FullTextSettings {
            fields: vec!["title".into()],
            ..Default::default()
        },
    );
    let config = StorageModuleConfig::new("n1", "./data", PluginSettings::of(&settings));
    let m = DefaultStorage::new(
        config,
        StorageDeps {
            clock: Arc::new(hangar_core::hlc::Hlc::new("n1").unwrap()),
            metrics: Arc::new(NoMetrics),
            partitions: view.clone(),
        },
    )
    .unwrap();
    m.start().await.unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("doc-{i}")).collect();
    let ops: Vec<WriteOp> = keys
        .iter()
        .map(|k| {
            let mut w = put(k, 0);
            w.op.op = MapOp::Lww(LwwRecord {
                value: ROption::RSome(
                    RawValue::encode(&serde_json::json!({"title": "hangar storage"})).unwrap(),
                ),
                timestamp: Timestamp::new(10, 0, "w"),
                ttl_ms: ROption::RNone,
            });
            w
        })
        .collect();
    m.apply(ApplyBatch {
        ops: ops.into(),
        origin: Origin::internal("n1"),
        consistency: ROption::RNone,
    })
    .await
    .unwrap();
    let indexed = || async {
        let w = m.0.fts_of("m").unwrap();
        w.wait_current().await;
        let n = w.read().len();
        n
    };
    assert_eq!(indexed().await, keys.len());
    let even = keys.iter().filter(|k| partition_of(k) % 2 == 0).count();

    let settle = |v: u64| {
        let m = m.clone();
        async move {
            m.0.partitions_changed(v);
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while m.partitions_applied() < v {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
            .await
            .expect("the change is applied within 10 s");
        }
    };
    settle(view.set_related(|p| p % 2 == 0)).await;
    assert_eq!(indexed().await, even, "released keys leave the index");
    settle(view.set_related(|_| true)).await;
    assert_eq!(
        indexed().await,
        keys.len(),
        "reloaded keys are indexed again"
    );
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_pruned_or_tombstones_leave_memory_and_the_store() {
    let remove = |tag: &str| WriteOp {
        op: KeyedOp {
            map: "o".into(),
            key: "k".into(),
            op: MapOp::OrRemove(tag.into()),
        },
        concern: WriteConcern::Persisted,
        timeout_ms: ROption::RNone,
    };
    let store = MemoryStore::new();
    let (m, _) = module(&store);
    m.start().await.unwrap();
    let out = m
        .apply(ApplyBatch {
            ops: vec![remove("1:0:a"), remove("2:0:a")].into(),
            origin: Origin::internal("n1"),
            consistency: ROption::RNone,
        })
        .await
        .unwrap();
    let acks: Vec<_> = out.iter().map(|o| o.ack).collect();
    m.await_acks(acks.into()).await.unwrap();
    let n = m
        .prune_or_tombstones(
            "o".into(),
            vec![RString::from("1:0:a"), "9:0:a".into()].into(),
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "only a tombstoned tag counts");
    assert_eq!(
        m.prune_or_tombstones("nope".into(), vec![RString::from("1:0:a")].into())
            .await
            .unwrap(),
        0,
        "a map nobody wrote"
    );
    assert_eq!(
        m.accessor()
            .or_tombstones("o".into())
            .await
            .unwrap()
            .to_vec(),
        vec![RString::from("2:0:a")]
    );
    m.shutdown().await.unwrap();
    let (m, _) = module(&store);
    m.start().await.unwrap();
    assert_eq!(
        m.accessor()
            .or_tombstones("o".into())
            .await
            .unwrap()
            .to_vec(),
        vec![RString::from("2:0:a")],
        "the prune was persisted"
    );
    m.shutdown().await.unwrap();
}
