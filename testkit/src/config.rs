//! The module configs the suites pass to factories: the one place they are
//! built, so a change to core's config types is made here only.

use std::path::Path;

use hangar_core::config::{ClusterModuleConfig, PluginSettings, StorageModuleConfig};
use rmpv::Value;

use crate::storage::FTS_MAP;

/// The storage suite's config for node `node`: data in `dir/storage`, a
/// 300 ms write-ack timeout, and [`storage_settings`].
#[must_use]
pub fn storage_config(node: &str, dir: &Path) -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 300,
        ..StorageModuleConfig::new(node, dir.join("storage"), storage_settings())
    }
}

/// The plugin settings the storage suite passes: the embedded backend
/// (`backend = "embedded"`) and full-text search on [`FTS_MAP`] (`title`,
/// `body`), in the keys of the default storage plugin's `[storage]`
/// section. A module with settings of its own replaces
/// `config.settings` in its factory (the search cases need an index on
/// [`FTS_MAP`] on `title` and `body`).
#[must_use]
pub fn storage_settings() -> PluginSettings {
    let fields = Value::Array(vec!["title".into(), "body".into()]);
    let index = Value::Map(vec![("fields".into(), fields)]);
    PluginSettings::default().with("backend", "embedded").with(
        "full_text_search",
        Value::Map(vec![(FTS_MAP.into(), index)]),
    )
}

/// A cluster config for node `node` of cluster `suite` on loopback: its
/// state in `dir`, its transport on `cluster_port` (0: an ephemeral one),
/// `seeds` as its seed nodes (`127.0.0.1:port`), gossip every 100 ms and a
/// 3 s bootstrap wait, in the keys of the default cluster plugin's
/// `[cluster]` section ([`cluster_settings`]). A module with settings of
/// its own replaces `config.settings` in its factory.
#[must_use]
pub fn cluster_config(
    node: &str,
    dir: &Path,
    cluster_port: u16,
    seeds: &[String],
) -> ClusterModuleConfig {
    ClusterModuleConfig {
        client_endpoint: Some("ws://127.0.0.1:1/ws".to_string()),
        ..ClusterModuleConfig::new(node, dir, cluster_settings(cluster_port, seeds))
    }
}

/// The plugin settings [`cluster_config`] passes: `host = "127.0.0.1"`,
/// `cluster_port`, `cluster_id = "suite"`, `seed_nodes`,
/// `gossip_interval_ms = 100`, `bootstrap_timeout_ms = 3000`.
#[must_use]
pub fn cluster_settings(cluster_port: u16, seeds: &[String]) -> PluginSettings {
    let seeds = Value::Array(seeds.iter().map(|s| Value::from(s.as_str())).collect());
    PluginSettings::default()
        .with("host", "127.0.0.1")
        .with("cluster_port", cluster_port)
        .with("cluster_id", "suite")
        .with("seed_nodes", seeds)
        .with("gossip_interval_ms", 100)
        .with("bootstrap_timeout_ms", 3_000)
}
