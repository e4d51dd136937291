//! The metrics the module reports: ops, map sizes, loads, commit latency
//! and write acks.

use std::collections::BTreeMap;
use std::sync::Arc;

use hangar_core::module::storage::StorageModule;
use hangar_core::WriteConcern;

use super::support::{apply, config, module_on, put, read, seeded, Metrics};

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
