//! Lazy loading: one load for concurrent first uses, failed loads retried,
//! large loads and snapshots cut into tasklet slices.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString};
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{
    ChangeType, QueryRequest, QuerySink, QueryUpdate, RecordState,
};
use hangar_core::{ErrorKind, KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_storage::persistence::MemoryStore;
use parking_lot::Mutex;

use super::support::{apply, config, module_on, read, seeded, Metrics};

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
    c.settings = c.settings.with("tasklet_budget_ms", 1);
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
    c.settings = c.settings.with("tasklet_budget_ms", 1);
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
                consistency: ROption::RNone,
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
            consistency: ROption::RNone,
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
