//! The default cluster plugin's own settings: the `[cluster]` section of the
//! node's TOML (less what the host owns and passes in
//! `ClusterModuleConfig`: `advertise_host`, `client_endpoint`, `data_dir`),
//! the environment variables below and the host's flags that set them
//! (`--cluster-port`, `--seed-nodes`, `--cluster-id`), decoded and validated
//! here, not by the host (see `hangar_core::settings`).
//!
//! ```toml
//! [cluster]
//! cluster_port = 9081
//! seed_nodes = ["10.0.0.2:9081", "10.0.0.3:9081"]
//! backup_count = 1
//! [cluster.migration]
//! max_bytes_per_sec = 4194304
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use hangar_core::settings::Settings;
use hangar_core::ConsistencyLevel;
use serde::{Deserialize, Deserializer, Serialize};

/// How the cluster module finds its peers.
///
/// Read case-insensitively: `manual` or `kubernetes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Discovery {
    /// The `seed_nodes` list (and the peer resolver, if any).
    #[default]
    Manual,
    /// DNS A records of a headless Kubernetes service (`service_name`).
    Kubernetes,
}

impl TryFrom<String> for Discovery {
    type Error = String;

    fn try_from(v: String) -> Result<Self, String> {
        match v.to_ascii_lowercase().as_str() {
            "manual" => Ok(Self::Manual),
            "kubernetes" => Ok(Self::Kubernetes),
            _ => Err(format!(
                "unknown discovery {v:?}, expected manual or kubernetes"
            )),
        }
    }
}

/// Mutual TLS between nodes (`[cluster.cluster_tls]`).
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

/// Tuning of the replication pipeline (`[cluster.replication]`).
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
/// a new holder, so client writes keep their latency while it runs
/// (`[cluster.migration]`).
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
    /// behind a slice keep their latency (2; see `migration::pacing`).
    /// 0 commits each chunk whole.
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

/// The default cluster plugin's settings (`[cluster]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Address the cluster transport binds ("localhost"); advertised to
    /// peers unless the host passes an `advertise_host`.
    #[serde(deserialize_with = "text")]
    pub host: String,
    /// Cluster transport port; 0 binds an ephemeral port (0).
    pub cluster_port: u16,
    /// Cluster id; nodes with another id are refused ("hangar").
    #[serde(deserialize_with = "text")]
    pub cluster_id: String,
    /// Seed nodes' cluster addresses as `host:port` (empty): a list, or
    /// one comma-separated text (as `HANGAR_SEED_NODES` gives it). Host
    /// names are re-resolved periodically, so a headless service name
    /// lists every pod. Also accepted as `peers`.
    #[serde(alias = "peers", deserialize_with = "list")]
    pub seed_nodes: Vec<String>,
    /// Backups per partition (1).
    pub backup_count: u32,
    /// This node's zone label (empty = none).
    #[serde(deserialize_with = "text")]
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
    /// Replicate applied changes to backups (true). False keeps no backup
    /// copies at all, as `backup_count = 0` does ([`Self::backups`]).
    pub replication_enabled: bool,
    /// Consistency of writes that do not ask for one (EVENTUAL).
    #[serde(deserialize_with = "level")]
    pub default_consistency: ConsistencyLevel,
    /// Per-map consistency, overriding `default_consistency` for writes to
    /// that map that do not ask for one (empty).
    #[serde(deserialize_with = "levels")]
    pub map_consistency: BTreeMap<String, ConsistencyLevel>,
    /// Consistency of reads (queries, live queries, search, Merkle sync)
    /// that do not ask for one (EVENTUAL): at EVENTUAL a partition is read
    /// from any complete replica (this node's first, then the one with the
    /// lowest measured latency), at QUORUM and STRONG from its owner. The
    /// host passes a read's own level, or none, and never reads this.
    #[serde(deserialize_with = "level")]
    pub default_read_consistency: ConsistencyLevel,
    /// Per-map read consistency, overriding `default_read_consistency` for
    /// reads of that map that do not ask for one (empty).
    #[serde(deserialize_with = "levels")]
    pub map_read_consistency: BTreeMap<String, ConsistencyLevel>,
    /// Replication tuning.
    pub replication: ReplicationConfig,
    /// Partition migration tuning (joins, restored backups, graceful leaves).
    pub migration: MigrationConfig,
    /// Anti-entropy repair.
    pub repair: RepairConfig,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_string(),
            cluster_port: 0,
            cluster_id: "hangar".to_string(),
            seed_nodes: Vec::new(),
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
            migration: MigrationConfig::default(),
            repair: RepairConfig::default(),
        }
    }
}

impl ClusterSettings {
    /// Backups per partition: `backup_count`, or 0 when
    /// `replication_enabled` is false.
    #[must_use]
    pub fn backups(&self) -> usize {
        if self.replication_enabled {
            self.backup_count as usize
        } else {
            0
        }
    }
}

impl Settings for ClusterSettings {
    fn keys() -> &'static [(&'static str, &'static str)] {
        &[
            ("host", "address the cluster transport binds; advertised to peers unless [cluster] advertise_host is set"),
            ("cluster_port", "cluster transport port (node-to-node traffic and gossip); 0 picks one"),
            ("cluster_id", "cluster name; nodes of another cluster are refused"),
            ("seed_nodes", "seed nodes' cluster addresses, host:port (a list, or one comma-separated text); also `peers` (which then cannot be combined with HANGAR_SEED_NODES or --seed-nodes)"),
            ("backup_count", "backups per partition"),
            ("zone", "this node's zone label (empty: none); zone-aware strategies keep a copy in another zone"),
            ("gossip_interval_ms", "gossip round interval, in ms; at least 1"),
            ("phi_threshold", "phi-accrual threshold above which a silent member is suspected"),
            ("failure_confirm_ms", "time a suspected member stays suspected before it is confirmed failed, in ms"),
            ("bootstrap_timeout_ms", "how long a new node waits for all its seeds before it forms a cluster with the nodes it found, in ms"),
            ("discovery", "manual (seed_nodes) or kubernetes (DNS of service_name)"),
            ("service_name", "headless service name for kubernetes discovery (required with it)"),
            ("discovery_interval_ms", "how often discovery runs, in ms"),
            ("cluster_tls", "mutual TLS between nodes: [cluster.cluster_tls] enabled, cert_path, key_path, ca_cert_path (required when enabled), min_version, require_client_cert, reject_unauthorized, passphrase"),
            ("replication_enabled", "replicate applied changes to backups; false keeps no backup copies (as backup_count = 0)"),
            ("default_consistency", "consistency of writes that do not ask for one: EVENTUAL, QUORUM or STRONG"),
            ("map_consistency", "per-map write consistency: [cluster.map_consistency] <map> = \"QUORUM\""),
            ("default_read_consistency", "consistency of reads that do not ask for one: EVENTUAL (any complete replica), QUORUM or STRONG (the owner)"),
            ("map_read_consistency", "per-map read consistency: [cluster.map_read_consistency] <map> = \"STRONG\""),
            ("replication", "replication tuning: queue_size_limit, batch_size, batch_interval_ms, ack_timeout_ms, max_retries"),
            ("migration", "partition migration tuning: max_bytes_per_sec (0: unthrottled), commit_budget_factor (0: chunks committed whole), chunk_records, parallel_transfers, transfer_timeout_ms, leave_timeout_ms"),
            ("repair", "anti-entropy repair: enabled, interval_ms, budget_ms, batch_partitions, chunk_records"),
        ]
    }

    fn env() -> &'static [(&'static str, &'static str)] {
        &[
            ("HANGAR_CLUSTER_PORT", "cluster_port"),
            ("HANGAR_SEED_NODES", "seed_nodes"),
            ("HANGAR_CLUSTER_ID", "cluster_id"),
            ("HANGAR_ZONE", "zone"),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        if self.cluster_id.is_empty() {
            return Err(
                "cluster_id: must not be empty; expected a name all nodes of the cluster share"
                    .into(),
            );
        }
        if self.discovery == Discovery::Kubernetes && self.service_name.is_none() {
            return Err(
                "discovery = \"kubernetes\" needs service_name (the headless service's DNS name)"
                    .into(),
            );
        }
        if self.gossip_interval_ms == 0 {
            return Err("gossip_interval_ms = 0: expected at least 1".into());
        }
        if let Some(tls) = self.cluster_tls.as_ref().filter(|t| t.enabled) {
            if tls.ca_cert_path.is_none() {
                return Err("cluster_tls.ca_cert_path: required when cluster TLS is enabled (peers are verified against it)".into());
            }
        }
        Ok(())
    }
}

/// A text setting that also takes a number or a boolean as its text: an
/// environment variable or flag (`HANGAR_CLUSTER_ID=7`) reaches the plugin
/// typed by its look.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    let expected = "a text";
    match Text::deserialize(d)
        .map_err(|_| serde::de::Error::custom(format!("invalid type: expected {expected}")))?
    {
        Text::S(s) => Ok(s),
        Text::I(i) => Ok(i.to_string()),
        Text::U(u) => Ok(u.to_string()),
        Text::F(f) => Ok(f.to_string()),
        Text::B(b) => Ok(b.to_string()),
    }
}

/// A consistency level by name (`EVENTUAL`, `QUORUM`, `STRONG`, any
/// case): the settings reach the plugin as a msgpack value, whose enums
/// serde reads only as maps.
fn level<'de, D: Deserializer<'de>>(d: D) -> Result<ConsistencyLevel, D::Error> {
    parse_level(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Map name to consistency level, each as [`level`] reads it.
fn levels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ConsistencyLevel>, D::Error> {
    BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(map, l)| {
            parse_level(&l)
                .map(|l| (map.clone(), l))
                .map_err(|e| serde::de::Error::custom(format!("map {map:?}: {e}")))
        })
        .collect()
}

fn parse_level(name: &str) -> Result<ConsistencyLevel, String> {
    match name.to_ascii_uppercase().as_str() {
        "EVENTUAL" => Ok(ConsistencyLevel::Eventual),
        "QUORUM" => Ok(ConsistencyLevel::Quorum),
        "STRONG" => Ok(ConsistencyLevel::Strong),
        _ => Err(format!(
            "unknown consistency {name:?}, expected EVENTUAL, QUORUM or STRONG"
        )),
    }
}

/// A list of texts, or one comma-separated text (blanks trimmed, empty
/// items dropped).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<String>),
        One(String),
    }
    match List::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "invalid type: expected a list of \"host:port\" texts or one comma-separated text",
        )
    })? {
        List::Many(v) => Ok(v),
        List::One(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ToString::to_string)
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::settings::{PluginSettings, SettingsDescription};
    use rmpv::Value;

    fn section() -> PluginSettings {
        PluginSettings {
            plugin: "hangar-cluster".into(),
            section: "cluster".into(),
            ..PluginSettings::default()
        }
    }

    fn refused(s: PluginSettings) -> String {
        s.decode::<ClusterSettings>()
            .unwrap_err()
            .message
            .to_string()
    }

    #[test]
    fn t10_every_default_key_is_documented_and_every_variable_sets_a_key() {
        let d = SettingsDescription::of::<ClusterSettings>().unwrap();
        let Value::Map(defaults) = &d.defaults else {
            panic!("defaults are a map")
        };
        let keys: Vec<&str> = defaults.iter().filter_map(|(k, _)| k.as_str()).collect();
        let documented: Vec<&str> = d.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, documented);
        for v in &d.env {
            assert!(documented.contains(&v.key.as_str()), "{v:?}");
        }
        assert_eq!(
            section().decode::<ClusterSettings>().unwrap(),
            ClusterSettings::default()
        );
    }

    #[test]
    fn t11_variables_override_the_section_and_take_the_flags_shapes() {
        let d: ClusterSettings = section()
            .with("peers", Value::Array(vec!["a:1".into()]))
            .with("discovery", "Kubernetes")
            .with("service_name", "svc")
            .with("default_read_consistency", "STRONG")
            .with(
                "map_consistency",
                Value::Map(vec![("orders".into(), "quorum".into())]),
            )
            .decode()
            .unwrap();
        assert_eq!(d.seed_nodes, ["a:1"]);
        assert_eq!(d.discovery, Discovery::Kubernetes);
        assert_eq!(d.default_read_consistency, ConsistencyLevel::Strong);
        assert_eq!(d.map_consistency["orders"], ConsistencyLevel::Quorum);
        let mut s = section()
            .with("cluster_port", 9000)
            .with("seed_nodes", Value::Array(vec!["a:1".into()]))
            .with("cluster_id", "from-file");
        let d: ClusterSettings = s.decode().unwrap();
        assert_eq!(
            (d.cluster_port, d.seed_nodes.clone()),
            (9000, vec!["a:1".to_string()])
        );
        s.env.insert("HANGAR_CLUSTER_PORT".into(), "9081".into());
        s.env.insert(
            "HANGAR_SEED_NODES".into(),
            "127.0.0.1:9082, 127.0.0.1:9083".into(),
        );
        s.env.insert("HANGAR_CLUSTER_ID".into(), "7".into());
        s.env.insert("HANGAR_ZONE".into(), "eu-1a".into());
        let d: ClusterSettings = s.decode().unwrap();
        assert_eq!(d.cluster_port, 9081);
        assert_eq!(d.seed_nodes, ["127.0.0.1:9082", "127.0.0.1:9083"]);
        assert_eq!((d.cluster_id.as_str(), d.zone.as_str()), ("7", "eu-1a"));
    }

    #[test]
    fn t13_replication_disabled_means_no_backups() {
        let s = ClusterSettings::default();
        assert_eq!(s.backups(), 1);
        let s = ClusterSettings {
            backup_count: 2,
            replication_enabled: false,
            ..ClusterSettings::default()
        };
        assert_eq!(s.backups(), 0);
    }

    #[test]
    fn t12_unknown_keys_wrong_types_and_bad_values_are_refused_by_name() {
        let m = refused(section().with("gossip_interval", 5));
        assert!(
            m.contains("plugin hangar-cluster: setting cluster.gossip_interval: unknown field `gossip_interval`"),
            "{m}"
        );
        let m = refused(section().with("backup_count", "two"));
        assert!(
            m.contains("setting cluster.backup_count: invalid type: string \"two\", expected u32"),
            "{m}"
        );
        let m = refused(section().with(
            "migration",
            Value::Map(vec![("max_bytes_per_second".into(), 1.into())]),
        ));
        assert!(
            m.contains("setting cluster.migration.max_bytes_per_second: unknown field"),
            "{m}"
        );
        let mut s = section();
        s.env.insert("HANGAR_CLUSTER_PORT".into(), "70000".into());
        let m = refused(s);
        assert!(
            m.contains("setting cluster.cluster_port (set by HANGAR_CLUSTER_PORT)"),
            "{m}"
        );
        let m = refused(section().with(
            "map_read_consistency",
            Value::Map(vec![("orders".into(), "ALL".into())]),
        ));
        assert!(
            m.contains(
                "setting cluster.map_read_consistency: map \"orders\": unknown consistency \"ALL\""
            ),
            "{m}"
        );
        let m = refused(section().with("seed_nodes", 5));
        assert!(
            m.contains("setting cluster.seed_nodes: invalid type"),
            "{m}"
        );
        for (s, want) in [
            (
                section().with("cluster_id", ""),
                "cluster_id: must not be empty",
            ),
            (
                section().with("gossip_interval_ms", 0),
                "gossip_interval_ms = 0",
            ),
            (
                section().with("discovery", "kubernetes"),
                "needs service_name",
            ),
            (
                section().with(
                    "cluster_tls",
                    Value::Map(vec![("enabled".into(), true.into())]),
                ),
                "cluster_tls.ca_cert_path: required",
            ),
        ] {
            let m = refused(s);
            assert!(
                m.contains("plugin hangar-cluster: [cluster]: ") && m.contains(want),
                "{m}"
            );
        }
    }
}
