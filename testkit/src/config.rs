//! The module configs the suites pass to factories: the one place they are
//! built, so a change to core's config types is made here only.

use std::collections::BTreeMap;
use std::path::Path;

use hangar_core::config::{
    ClusterModuleConfig, FullTextIndexConfig, StorageBackendKind, StorageModuleConfig,
};

use crate::storage::FTS_MAP;

/// The storage suite's config for node `node`: data in `dir/storage` (the
/// embedded backend), full-text search on [`FTS_MAP`] (`title`, `body`), a
/// 300 ms write-ack timeout.
#[must_use]
pub fn storage_config(node: &str, dir: &Path) -> StorageModuleConfig {
    let mut fts = BTreeMap::new();
    fts.insert(
        FTS_MAP.to_string(),
        FullTextIndexConfig {
            fields: vec!["title".into(), "body".into()],
            ..FullTextIndexConfig::default()
        },
    );
    StorageModuleConfig {
        node_id: node.to_string(),
        backend: StorageBackendKind::Embedded,
        data_dir: dir.join("storage"),
        full_text_search: fts,
        write_ack_timeout_ms: 300,
        ..StorageModuleConfig::default()
    }
}

/// A cluster config for node `node` of cluster `suite` on loopback: its
/// state in `dir`, its transport on `cluster_port` (0: an ephemeral one),
/// `seeds` as its seed nodes (`127.0.0.1:port`), gossip every 100 ms and a
/// 3 s bootstrap wait.
#[must_use]
pub fn cluster_config(
    node: &str,
    dir: &Path,
    cluster_port: u16,
    seeds: &[String],
) -> ClusterModuleConfig {
    ClusterModuleConfig {
        node_id: node.to_string(),
        host: "127.0.0.1".to_string(),
        cluster_port,
        cluster_id: "suite".to_string(),
        seed_nodes: seeds.to_vec(),
        gossip_interval_ms: 100,
        bootstrap_timeout_ms: 3_000,
        client_endpoint: Some("ws://127.0.0.1:1/ws".to_string()),
        data_dir: Some(dir.to_path_buf()),
        ..ClusterModuleConfig::default()
    }
}
