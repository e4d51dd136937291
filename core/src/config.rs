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
    /// together (16 MiB/s); 0 means unthrottled.
    pub max_bytes_per_sec: u64,
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
            max_bytes_per_sec: 16 * 1024 * 1024,
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

/// Which persistence backend the storage module uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackendKind {
    /// The embedded store: one redb file in the data directory (default).
    #[default]
    Embedded,
    /// Nothing is persisted; for tests and caches.
    Memory,
}

/// BM25 parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bm25Config {
    /// Term-frequency saturation (1.2).
    pub k1: f64,
    /// Length normalisation, 0..=1 (0.75).
    pub b: f64,
}

impl Default for Bm25Config {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

/// Tokenizer of the full-text index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    /// Lowercase before splitting (true).
    pub lowercase: bool,
    /// Drop English stopwords (true).
    pub stopwords: bool,
    /// Porter-stem tokens (true).
    pub stemmer: bool,
    /// Shortest token kept, in UTF-16 units (2).
    pub min_length: usize,
    /// Longest token kept (40).
    pub max_length: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            stopwords: true,
            stemmer: true,
            min_length: 2,
            max_length: 40,
        }
    }
}

/// Full-text search on one map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FullTextIndexConfig {
    /// Fields of the record value to index; MUST be non-empty.
    pub fields: Vec<String>,
    /// Tokenizer settings.
    pub tokenizer: TokenizerConfig,
    /// Scoring settings.
    pub bm25: Bm25Config,
}

/// Configuration of the storage module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageModuleConfig {
    /// This node's id.
    pub node_id: String,
    /// Persistence backend (embedded).
    pub backend: StorageBackendKind,
    /// Directory of the embedded store ("./data").
    pub data_dir: PathBuf,
    /// Full-text search per map name (none).
    pub full_text_search: BTreeMap<String, FullTextIndexConfig>,
    /// Default write-ack timeout in ms (5 000).
    pub write_ack_timeout_ms: u64,
    /// Tasklet time budget per slice in ms (5).
    pub tasklet_budget_ms: u64,
    /// Most tasklets running at once (20).
    pub tasklet_max_concurrent: usize,
    /// Event payload pool: most buffers kept (4 096).
    pub event_pool_max: usize,
    /// Event payload pool: buffers made up front (128).
    pub event_pool_initial: usize,
    /// Worker threads of the module's own runtime (2).
    pub worker_threads: usize,
    /// Start with a new, empty embedded store when the existing store file
    /// is damaged (unreadable, empty, failing its integrity check), moving
    /// the damaged file aside (`hangar.redb.damaged-<unix ms>`) instead of
    /// deleting it (false: a damaged store refuses the start). Only for an
    /// operator who chose to lose what it held. Not sent across the plugin
    /// boundary when false, so plugins built before it still accept the
    /// config.
    #[serde(skip_serializing_if = "is_false")]
    pub reset_damaged_store: bool,
    /// Check the embedded store's integrity (every page checksum) at every
    /// start, not only after an unclean shutdown (false). Reads the whole
    /// file. Not sent across the boundary when false.
    #[serde(skip_serializing_if = "is_false")]
    pub check_integrity_on_start: bool,
    /// Most event-journal entries kept (10 000): past it the oldest are
    /// pruned, in the commit that adds the new ones. 0 turns the journal
    /// off. Not sent across the boundary at its default.
    #[serde(skip_serializing_if = "is_default_journal_capacity")]
    pub journal_capacity: u64,
}

/// The default of [`StorageModuleConfig::journal_capacity`].
pub const DEFAULT_JOURNAL_CAPACITY: u64 = 10_000;

fn is_default_journal_capacity(n: &u64) -> bool {
    *n == DEFAULT_JOURNAL_CAPACITY
}

// serde's skip_serializing_if takes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for StorageModuleConfig {
    fn default() -> Self {
        Self {
            node_id: "node-1".to_string(),
            backend: StorageBackendKind::Embedded,
            data_dir: PathBuf::from("./data"),
            full_text_search: BTreeMap::new(),
            write_ack_timeout_ms: 5_000,
            tasklet_budget_ms: 5,
            tasklet_max_concurrent: 20,
            event_pool_max: 4_096,
            event_pool_initial: 128,
            worker_threads: 2,
            reset_damaged_store: false,
            check_integrity_on_start: false,
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
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
        assert_eq!((s.tasklet_budget_ms, s.tasklet_max_concurrent), (5, 20));
        assert_eq!((s.event_pool_max, s.event_pool_initial), (4_096, 128));
    }

    #[test]
    fn t11_configs_round_trip_through_the_boundary_encoding() {
        let mut s = StorageModuleConfig::default();
        s.full_text_search.insert(
            "articles".into(),
            FullTextIndexConfig {
                fields: vec!["title".into(), "body".into()],
                ..Default::default()
            },
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
