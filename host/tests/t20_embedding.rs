//! Embedding: the host built in-process with module implementations passed
//! in directly, no shared library loaded.

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::storage_types::{ApplyBatch, Origin, RecordState, WriteOp};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_host::{HangarConfig, Modules};

#[tokio::test]
async fn t10_an_embedded_node_runs_the_default_modules_without_loading_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HangarConfig {
        port: 0,
        data_dir: dir.path().to_path_buf(),
        ..HangarConfig::default()
    };
    config.storage.set("backend", "memory");
    config.finish().unwrap();
    let running = hangar_host::start(
        config,
        Modules::embedded(hangar_storage::create, hangar_cluster::create),
    )
    .await
    .expect("node starts");
    assert!(
        running.node.plugins.is_empty(),
        "no shared library was loaded"
    );
    let node = running.node.clone();
    let out = node
        .storage
        .apply(ApplyBatch {
            ops: RVec::from(vec![WriteOp {
                op: KeyedOp {
                    map: "m".into(),
                    key: "k".into(),
                    op: MapOp::Lww(LwwRecord {
                        value: ROption::RSome(RawValue::encode(&"v").unwrap()),
                        timestamp: Timestamp::new(1, 0, "c"),
                        ttl_ms: ROption::RNone,
                    }),
                },
                concern: WriteConcern::Applied,
                timeout_ms: ROption::RNone,
            }]),
            origin: Origin::client(1, "node-1"),
            consistency: abi_stable::std_types::ROption::RNone,
        })
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    let r = node
        .storage
        .read("m".into(), RVec::from(vec![RString::from("k")]))
        .await
        .unwrap();
    assert!(matches!(r[0].state, RecordState::Lww(_)));
    assert!(node.cluster.partition_view().is_local_owner(95));
    running.shutdown().await;
}
