//! Configuration and dependencies of the two modules
//! (`ClusterModuleConfig` / `StorageModuleConfig`), with every default
//! written down.
//!
//! Configs are plain serde data: they cross the plugin boundary as msgpack,
//! and the host reads them from TOML. The few things that are not data (the
//! peer resolver) travel beside them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::settings::PluginSettings;
use crate::types::ConsistencyLevel;

/// How the cluster module finds its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// The `peers` list (and the peer resolver, if any).
    #[default]
    Manual,
    /// DNS A records of a headless Kubernetes service (`service_name`).
    Kubernetes,
}

/// Mutual TLS between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// Turn TLS on for the cluster transport.
    pub enabled: bool,
    /// PEM certificate chain of this node.
    pub cert_path: PathBuf,
    /// PEM private key of this node.
    pub key_path: PathBuf,
    /// PEM CA bundle that peers' certificates must chain to.
    pub ca_cert_path: Option<PathBuf>,
    /// Lowest TLS version accepted: "TLSv1.2" (default) or "TLSv1.3".
    pub min_version: String,
    /// Require peers to present a client certificate (mutual TLS).
    pub require_client_cert: bool,
    /// Refuse peers whose certificate does not verify.
    pub reject_unauthorized: bool,
    /// Passphrase of the private key, if it is encrypted.
    pub passphrase: Option<String>,
}

impl Default for ClusterTlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            ca_cert_path: None,
            min_version: "TLSv1.2".to_string(),
            require_client_cert: false,
            reject_unauthorized: true,
            passphrase: None,
        }
    }
}

/// Tuning of the replication pipeline (`DEFAULT_REPLICATION_CONFIG`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Changes that may be queued or in flight to one backup at once
    /// (10 000); a write that finds no room within `ack_timeout_ms` is not
    /// shipped (repair catches the backup up).
    pub queue_size_limit: usize,
    /// Ops per replication batch (100).
    pub batch_size: usize,
    /// Flush interval of EVENTUAL batches in ms (50).
    pub batch_interval_ms: u64,
    /// How long QUORUM/STRONG wait for acks, in ms (5 000).
    pub ack_timeout_ms: u64,
    /// Retries of a failed batch (3).
    pub max_retries: u32,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            queue_size_limit: 10_000,
            batch_size: 100,
            batch_interval_ms: 50,
            ack_timeout_ms: 5_000,
            max_retries: 3,
        }
    }
}

/// Configuration of the cluster module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterModuleConfig {
    /// This node's id; MUST NOT contain `:`.
    pub node_id: String,
    /// Address the cluster transport binds and advertises ("localhost").
    pub host: String,
    /// Cluster transport port; 0 binds an ephemeral port (0).
    pub cluster_port: u16,
    /// Cluster id; nodes with another id are refused ("hangar").
    pub cluster_id: String,
    /// Seed nodes' cluster addresses as `host:port` (empty). Host names are
    /// re-resolved periodically, so a headless service name lists every pod.
    /// Also accepted as `peers`.
    #[serde(alias = "peers")]
    pub seed_nodes: Vec<String>,
    /// Address advertised to peers and in clients' partition map; defaults
    /// to `host`.
    pub advertise_host: Option<String>,
    /// Backups per partition (1).
    pub backup_count: u32,
    /// This node's zone label (empty = none).
    pub zone: String,
    /// Gossip round interval in ms (200).
    pub gossip_interval_ms: u64,
    /// Phi-accrual threshold above which a silent member is suspected (8).
    pub phi_threshold: u32,
    /// Time in ms a suspected member stays suspected before it is confirmed
    /// failed and its partitions are taken over (500).
    pub failure_confirm_ms: u64,
    /// How long in ms a new node waits for all its seeds before it forms a
    /// cluster with the nodes it has found (5 000).
    pub bootstrap_timeout_ms: u64,
    /// Manual peers or Kubernetes DNS (manual).
    pub discovery: Discovery,
    /// Headless service name for Kubernetes discovery.
    pub service_name: Option<String>,
    /// How often discovery runs, in ms (10 000).
    pub discovery_interval_ms: u64,
    /// TLS between nodes (off).
    pub cluster_tls: Option<ClusterTlsConfig>,
    /// Replicate applied changes to backups (true).
    pub replication_enabled: bool,
    /// Consistency of writes that do not ask for one (EVENTUAL).
    pub default_consistency: ConsistencyLevel,
    /// Per-map consistency, overriding `default_consistency` for writes to
    /// that map that do not ask for one (empty).
    pub map_consistency: BTreeMap<String, ConsistencyLevel>,
    /// Consistency of reads (queries, live queries, search, Merkle sync)
    /// that do not ask for one (EVENTUAL): at EVENTUAL a partition is read
    /// from any complete replica (this node's first, then the one with the
    /// lowest measured latency), at QUORUM and STRONG from its owner.
    pub default_read_consistency: ConsistencyLevel,
    /// Per-map read consistency, overriding `default_read_consistency` for
    /// reads of that map that do not ask for one (empty).
    pub map_read_consistency: BTreeMap<String, ConsistencyLevel>,
    /// Replication tuning.
    pub replication: ReplicationConfig,
    /// WebSocket URL clients use to reach this node, advertised in the
    /// partition map (the host fills it in once it listens).
    pub client_endpoint: Option<String>,
    /// Directory for the module's own state, if it keeps any.
    pub data_dir: Option<PathBuf>,
    /// Partition migration tuning (joins, restored backups, graceful leaves).
    pub migration: MigrationConfig,
    /// Anti-entropy repair (`[cluster.repair]`).
    pub repair: RepairConfig,
}

/// Anti-entropy repair: each owner periodically compares its partitions
/// with their backups by per-partition digests and exchanges the records
/// that differ, both ways (`[cluster.repair]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepairConfig {
    /// Run repair periodically (true). On-demand repair
    /// (`POST /cluster/repair`) works either way.
    pub enabled: bool,
    /// Time between periodic runs, in ms (60 000).
    pub interval_ms: u64,
    /// Time one periodic run may take, in ms (2 000); partitions not
    /// reached wait for the next run (partitions that recently changed
    /// hands come first).
    pub budget_ms: u64,
    /// Partitions compared per round with one backup (16).
    pub batch_partitions: u32,
    /// Records per read or apply message (1 000).
    pub chunk_records: u32,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 60_000,
            budget_ms: 2_000,
            batch_partitions: 16,
            chunk_records: 1_000,
        }
    }
}

/// Tuning of partition migration: how fast a partition's records stream to
/// a new holder, so client writes keep their latency while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationConfig {
    /// Bytes per second one node streams to new holders, all transfers
    /// together (4 MiB/s: on the reference machine a join's move then keeps
    /// a QUORUM + PERSISTED writer's p50 within 1.5x and its p99 within
    /// about 6x of their values without a move, where 16 MiB/s let the p99
    /// grow 20x; see `tests/benches/CLUSTER_RESULTS.md`); 0 means
    /// unthrottled.
    pub max_bytes_per_sec: u64,
    /// The target commits each chunk in slices, one at a time for the
    /// node, sized so a slice's commit takes at most this many times the
    /// node's recent client-write commit latency, so client writes queued
    /// behind a slice keep their latency (2; see
    /// `hangar-cluster`'s `migration::pacing`). 0 commits each chunk whole.
    pub commit_budget_factor: u32,
    /// Records per chunk (500).
    pub chunk_records: u32,
    /// Partitions the Raft leader has transferred at once (4).
    pub parallel_transfers: usize,
    /// A transfer not done within this many ms is abandoned and retried
    /// (120 000).
    pub transfer_timeout_ms: u64,
    /// How long a node stopping gracefully waits for its partitions to be
    /// handed off before it exits anyway, in ms (30 000).
    pub leave_timeout_ms: u64,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            max_bytes_per_sec: 4 * 1024 * 1024,
            commit_budget_factor: 2,
            chunk_records: 500,
            parallel_transfers: 4,
            transfer_timeout_ms: 120_000,
            leave_timeout_ms: 30_000,
        }
    }
}

impl Default for ClusterModuleConfig {
    fn default() -> Self {
        Self {
            node_id: "node-1".to_string(),
            host: "localhost".to_string(),
            cluster_port: 0,
            cluster_id: "hangar".to_string(),
            seed_nodes: Vec::new(),
            advertise_host: None,
            backup_count: 1,
            zone: String::new(),
            gossip_interval_ms: 200,
            phi_threshold: 8,
            failure_confirm_ms: 500,
            bootstrap_timeout_ms: 5_000,
            discovery: Discovery::Manual,
            service_name: None,
            discovery_interval_ms: 10_000,
            cluster_tls: None,
            replication_enabled: true,
            default_consistency: ConsistencyLevel::Eventual,
            map_consistency: BTreeMap::new(),
            default_read_consistency: ConsistencyLevel::Eventual,
            map_read_consistency: BTreeMap::new(),
            replication: ReplicationConfig::default(),
            client_endpoint: None,
            data_dir: None,
            migration: MigrationConfig::default(),
            repair: RepairConfig::default(),
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
        assert_eq!(c.host, "localhost");
        assert_eq!(c.cluster_port, 0);
        assert_eq!(c.discovery_interval_ms, 10_000);
        assert!(c.replication_enabled);
        assert_eq!(c.default_consistency, ConsistencyLevel::Eventual);
        assert_eq!(c.default_read_consistency, ConsistencyLevel::Eventual);
        assert!(c.map_read_consistency.is_empty());
        assert_eq!(c.replication.batch_size, 100);
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
            seed_nodes: vec!["127.0.0.1:9000".into()],
            default_read_consistency: ConsistencyLevel::Quorum,
            map_read_consistency: [("orders".to_string(), ConsistencyLevel::Strong)].into(),
            ..Default::default()
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
