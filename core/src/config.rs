//! Configuration and dependencies of the two modules
//! (`ClusterModuleConfig` / `StorageModuleConfig`), with every default
//! written down.
//!
//! Configs are plain serde data: they cross the plugin boundary as msgpack,
//! and the host reads them from TOML. The few things that are not data (the
//! peer resolver) travel beside them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::settings::PluginSettings;

/// Configuration of the cluster module: what the host owns and passes, plus
/// the plugin's own settings.
///
/// The host fills every field: `node_id` and `data_dir` from the node's
/// configuration, `client_endpoint` with the URL of the client endpoint it
/// serves, `advertise_host` from `[cluster] advertise_host` (the host builds
/// `client_endpoint` from it too), and `settings` with the rest of the
/// `[cluster]` section, the environment variables the plugin declared and
/// the command-line flags that set them (`--cluster-port`, ...). The plugin
/// decodes `settings` itself ([`PluginSettings::decode`]); the host never
/// reads them. The default cluster plugin's settings (transport, gossip,
/// replication, migration, repair, TLS, discovery, consistency) are its
/// `ClusterSettings` (`plugins/cluster/src/settings.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterModuleConfig {
    /// This node's id; MUST NOT contain `:`.
    pub node_id: String,
    /// Directory for the module's own state, if it keeps any
    /// (`<data_dir>/<node_id>/cluster` for a node).
    pub data_dir: Option<PathBuf>,
    /// WebSocket URL clients use to reach this node, for the module to
    /// advertise in the partition map (the host fills it in once it
    /// listens, unless `[cluster] client_endpoint` sets it).
    pub client_endpoint: Option<String>,
    /// The name or address other machines reach this node at, if not its
    /// bind address: the host builds `client_endpoint` from it, the module
    /// advertises its own transport under it.
    pub advertise_host: Option<String>,
    /// The plugin's own settings (`[cluster]`, its environment variables
    /// and the flags that set them), opaque to the host.
    pub settings: PluginSettings,
}

impl Default for ClusterModuleConfig {
    fn default() -> Self {
        Self {
            node_id: "node-1".to_string(),
            data_dir: None,
            client_endpoint: None,
            advertise_host: None,
            settings: PluginSettings::default(),
        }
    }
}

impl ClusterModuleConfig {
    /// A config for `node_id` keeping its state in `data_dir`, with the
    /// given plugin settings (for tests and embedding hosts).
    #[must_use]
    pub fn new(node_id: &str, data_dir: impl Into<PathBuf>, settings: PluginSettings) -> Self {
        Self {
            node_id: node_id.to_string(),
            data_dir: Some(data_dir.into()),
            settings,
            ..Self::default()
        }
    }
}

/// Configuration of the storage module: what the host owns and passes,
/// plus the plugin's own settings.
///
/// The host fills every field: `node_id` and `data_dir` from the node's
/// configuration, `write_ack_timeout_ms` from `[storage]` (the host's write
/// path waits that long for forwarded writes too), and `settings` with the
/// rest of the `[storage]` section and the environment variables the
/// plugin declared. The plugin decodes `settings` itself
/// ([`PluginSettings::decode`]); the host never reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageModuleConfig {
    /// This node's id.
    pub node_id: String,
    /// The module's own directory (`<data_dir>/<node_id>/storage` for a
    /// node; "./data" by default).
    pub data_dir: PathBuf,
    /// Default write-ack timeout in ms (5 000).
    pub write_ack_timeout_ms: u64,
    /// The plugin's own settings (`[storage]` and its environment
    /// variables), opaque to the host.
    pub settings: PluginSettings,
}

impl Default for StorageModuleConfig {
    fn default() -> Self {
        Self {
            node_id: "node-1".to_string(),
            data_dir: PathBuf::from("./data"),
            write_ack_timeout_ms: 5_000,
            settings: PluginSettings::default(),
        }
    }
}

impl StorageModuleConfig {
    /// A config for `node_id` in `data_dir` with the given plugin settings
    /// (for tests and embedding hosts).
    #[must_use]
    pub fn new(node_id: &str, data_dir: impl Into<PathBuf>, settings: PluginSettings) -> Self {
        Self {
            node_id: node_id.to_string(),
            data_dir: data_dir.into(),
            settings,
            ..Self::default()
        }
    }
}

/// Serialises a config for the plugin boundary.
///
/// # Errors
/// Only if the config holds something msgpack cannot represent.
pub fn encode_config<T: Serialize>(config: &T) -> Result<Vec<u8>, crate::ModuleError> {
    rmp_serde::to_vec_named(config).map_err(|e| {
        crate::ModuleError::new(
            crate::ErrorKind::CONFIG,
            format!("cannot encode config: {e}"),
        )
    })
}

/// Reads a config that crossed the plugin boundary.
///
/// # Errors
/// [`crate::ErrorKind::CONFIG`] naming what did not match the expected shape.
pub fn decode_config<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, crate::ModuleError> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        crate::ModuleError::new(
            crate::ErrorKind::CONFIG,
            format!(
                "invalid module config: {e} (expected a {})",
                std::any::type_name::<T>()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_defaults_follow_the_seed() {
        let c = ClusterModuleConfig::default();
        assert_eq!((c.data_dir, c.client_endpoint), (None, None));
        assert_eq!(c.settings, PluginSettings::default());
        let s = StorageModuleConfig::default();
        assert_eq!(s.write_ack_timeout_ms, 5_000);
        assert_eq!(s.settings, PluginSettings::default());
    }

    #[test]
    fn t11_configs_round_trip_through_the_boundary_encoding() {
        let s = StorageModuleConfig::new(
            "n",
            "/tmp/x",
            PluginSettings::default()
                .with("backend", "memory")
                .with("worker_threads", 3),
        );
        let back: StorageModuleConfig = decode_config(&encode_config(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let c = ClusterModuleConfig {
            client_endpoint: Some("ws://a:1/ws".into()),
            ..ClusterModuleConfig::new(
                "n",
                "/tmp/c",
                PluginSettings::default()
                    .with(
                        "seed_nodes",
                        rmpv::Value::Array(vec!["127.0.0.1:9000".into()]),
                    )
                    .with("cluster_port", 9000),
            )
        };
        let back: ClusterModuleConfig = decode_config(&encode_config(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn t12_a_wrong_config_shape_names_the_expected_type() {
        let bytes = encode_config(&42u32).unwrap();
        let e = decode_config::<StorageModuleConfig>(&bytes).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::CONFIG);
        assert!(e.message.contains("StorageModuleConfig"), "{e}");
    }
}
