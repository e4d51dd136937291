//! The node's configuration: defaults, then a TOML file, then environment
//! variables, then command-line flags, each overriding the one before.
//!
//! Unknown keys in the file are errors (a typo must not silently fall back to
//! a default), and every error names the key and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hangar_core::config::{ClusterModuleConfig, PluginSettings, StorageModuleConfig};
use semver::VersionReq;
use serde::{Deserialize, Serialize};

/// Which plugins fill the two slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory searched first for plugins given by name.
    pub dir: Option<PathBuf>,
    /// Storage plugin: a crate name (`hangar_storage`) or a path to the file.
    pub storage: String,
    /// Requirement on the storage plugin's own version.
    pub storage_version: String,
    /// Cluster plugin: a crate name or a path.
    pub cluster: String,
    /// Requirement on the cluster plugin's own version.
    pub cluster_version: String,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            storage: "hangar_storage".to_string(),
            storage_version: "*".to_string(),
            cluster: "hangar_cluster".to_string(),
            cluster_version: "*".to_string(),
        }
    }
}

/// Client authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret; when set, clients must send a valid JWT.
    pub jwt_secret: Option<String>,
}

/// Limits and timings of the client front end (`[network]`).
///
/// The defaults are TopGun's: 10 s to authenticate, 60 s idle reaping,
/// 20 000 ops/s per connection with bursts of 40 000, 32 in-flight write
/// acknowledgements per connection. A client's outbound queue holds up to
/// 8 192 frames and 16 MiB: bursts of small events (a topic with several
/// publishers) fit, while memory per slow client stays bounded by bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// How long a connection may take to send a valid `AUTH`, in ms.
    pub auth_timeout_ms: u64,
    /// A connection that sends nothing for this long is closed, in ms.
    pub idle_timeout_ms: u64,
    /// Sustained per-connection rate, in items per second (an `OP_BATCH`
    /// or `BATCH` is charged by its real item count).
    pub rate_limit_per_sec: f64,
    /// Per-connection burst, in items.
    pub rate_limit_burst: f64,
    /// Requests in flight across all connections before `ERROR 429`.
    pub max_in_flight: usize,
    /// Write acknowledgements one connection may wait for at once; more
    /// makes that connection's reader wait (backpressure on it alone).
    pub max_in_flight_per_connection: usize,
    /// Frames queued towards one client; a subscriber whose queue is full
    /// is disconnected as too slow.
    pub outbound_queue: usize,
    /// Bytes queued towards one client; past this a subscriber is
    /// disconnected as too slow (one frame larger than it still goes out).
    pub outbound_queue_bytes: usize,
    /// Most open client connections, counting those whose HTTP request or
    /// WebSocket upgrade is still under way; more are refused (HTTP 503).
    pub max_connections: usize,
    /// Time a connection has to send a complete HTTP request head (the
    /// WebSocket upgrade included), in ms; a slower one is closed.
    pub request_timeout_ms: u64,
    /// A write to a client socket that stalls this long closes it, in ms.
    pub write_timeout_ms: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            auth_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            rate_limit_per_sec: 20_000.0,
            rate_limit_burst: 40_000.0,
            max_in_flight: 4_096,
            max_in_flight_per_connection: 32,
            outbound_queue: 8_192,
            outbound_queue_bytes: 16 << 20,
            max_connections: 10_000,
            request_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
        }
    }
}

/// OR-map tombstone epochs and the devices that confirm them (`[sync]`).
///
/// The node counts the OR tombstones it applies: every
/// `tombstone_epoch_width` of them close an epoch. Clients confirm the
/// epochs they applied (`CLIENT_APPLY_ACK`); with `epoch_protection`, the
/// tombstones of the epochs every remembered device confirmed are pruned
/// (checked every `prune_interval_ms`), and a device that may lack pruned
/// tombstones is answered `fullResync`. A device whose confirmed epoch lags
/// the current one by more than `forget_after_epochs` is forgotten: it no
/// longer holds pruning back. See `host/src/server/epochs/mod.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// New OR tombstones per epoch (at least 1).
    pub tombstone_epoch_width: u64,
    /// Prune confirmed tombstones and answer stale devices `fullResync`.
    pub epoch_protection: bool,
    /// Epochs a device's confirmation may lag before it is forgotten.
    pub forget_after_epochs: u64,
    /// How often pruning is considered, in ms (at least 10).
    pub prune_interval_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            tombstone_epoch_width: 1_000,
            epoch_protection: true,
            forget_after_epochs: 1_000,
            prune_interval_ms: 10_000,
        }
    }
}

/// The `[storage]` section: the one key the host reads, and the storage
/// plugin's own settings, which the host passes on without reading
/// (`hangar_core::settings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSection {
    /// Default write-ack timeout in ms (5 000): the storage module's, and
    /// how long the host waits for writes it forwards to other nodes.
    pub write_ack_timeout_ms: u64,
    /// Every other key: the storage plugin's settings.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            write_ack_timeout_ms: 5_000,
            settings: toml::Table::new(),
        }
    }
}

impl StorageSection {
    /// Sets one of the plugin's settings (for tests and embedding hosts).
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.settings.insert(key.to_string(), value.into());
    }
}

/// The `[cluster]` section: the keys the host reads (it owns them and
/// passes them in `ClusterModuleConfig`), and the cluster plugin's own
/// settings, which the host passes on without reading
/// (`hangar_core::settings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClusterSection {
    /// The name or address other machines reach this node at: the host
    /// advertises its client endpoint under it, the cluster plugin its
    /// transport (default: the plugin's bind address).
    pub advertise_host: Option<String>,
    /// WebSocket URL clients use to reach this node, advertised in the
    /// partition map (default: built from `advertise_host` or the bound
    /// client address once the node listens).
    pub client_endpoint: Option<String>,
    /// The cluster module's own directory (default
    /// `<data_dir>/<node_id>/cluster`).
    pub data_dir: Option<PathBuf>,
    /// Every other key: the cluster plugin's settings.
    #[serde(flatten)]
    pub settings: toml::Table,
    /// Values of the plugin's environment variables set by command-line
    /// flags (`--cluster-port` sets `HANGAR_CLUSTER_PORT`, see
    /// [`CLUSTER_FLAGS`]): they override the process environment. The
    /// plugin must declare each one; the host refuses a flag the loaded
    /// plugin does not read.
    #[serde(skip)]
    pub flags: BTreeMap<String, String>,
}

impl ClusterSection {
    /// Sets one of the plugin's settings (for tests and embedding hosts).
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.settings.insert(key.to_string(), value.into());
    }

    /// Records the value of one of [`CLUSTER_FLAGS`] as the variable it
    /// sets.
    ///
    /// # Panics
    /// If `flag` is not one of [`CLUSTER_FLAGS`] (a programming error).
    pub fn set_flag(&mut self, flag: &str, value: impl Into<String>) {
        let (_, var) = CLUSTER_FLAGS
            .iter()
            .find(|(f, _)| *f == flag)
            .unwrap_or_else(|| panic!("{flag} is not a cluster flag"));
        self.flags.insert((*var).to_string(), value.into());
    }
}

/// The cluster flags of `hangar` and the plugin variable each one sets: the
/// host does not know their types or keys; the default cluster plugin
/// declares these variables (`hangar_cluster::ClusterSettings`), another
/// plugin may declare them too.
pub const CLUSTER_FLAGS: [(&str, &str); 3] = [
    ("--cluster-port", "HANGAR_CLUSTER_PORT"),
    ("--seed-nodes", "HANGAR_SEED_NODES"),
    ("--cluster-id", "HANGAR_CLUSTER_ID"),
];

/// Keys of `[storage]` that moved, and where to.
const MOVED_STORAGE_KEYS: [(&str, &str); 2] = [
    (
        "node_id",
        "the node id is the host's: set the top-level node_id (it is passed to the storage plugin)",
    ),
    (
        "data_dir",
        "the data directory is the host's: set the top-level data_dir (the storage plugin gets <data_dir>/<node_id>/storage)",
    ),
];

/// Keys of `[cluster]` that the host owns elsewhere.
const MOVED_CLUSTER_KEYS: [(&str, &str); 1] = [(
    "node_id",
    "the node id is the host's: set the top-level node_id (it is passed to the cluster plugin)",
)];

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HangarConfig {
    /// Node id; MUST NOT contain `:`.
    pub node_id: String,
    /// Address the client port binds.
    pub host: String,
    /// Client port (WebSocket, `/health`, `/metrics`); 0 binds an ephemeral one.
    pub port: u16,
    /// Data directory (the embedded store and module state live here).
    pub data_dir: PathBuf,
    /// Log filter (`info`, `hangar=debug,plugin=trace`, ...).
    pub log: String,
    /// Plugins.
    pub plugins: PluginsConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// Client front-end limits and timings.
    pub network: NetworkConfig,
    /// OR-map tombstone epochs and device confirmations.
    pub sync: SyncConfig,
    /// `[cluster]`: the advertised host, the client endpoint, the module's
    /// directory and the cluster plugin's own settings.
    pub cluster: ClusterSection,
    /// `[storage]`: the write-ack timeout and the storage plugin's own
    /// settings.
    pub storage: StorageSection,
    /// How long shutdown waits for in-flight work, in ms.
    pub shutdown_grace_ms: u64,
}

impl Default for HangarConfig {
    fn default() -> Self {
        Self {
            node_id: "node-1".to_string(),
            host: "127.0.0.1".to_string(),
            port: 8080,
            data_dir: PathBuf::from("./data"),
            log: "info".to_string(),
            plugins: PluginsConfig::default(),
            auth: AuthConfig::default(),
            network: NetworkConfig::default(),
            sync: SyncConfig::default(),
            cluster: ClusterSection::default(),
            storage: StorageSection::default(),
            shutdown_grace_ms: 5_000,
        }
    }
}

/// A configuration problem: which source, which key, what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// An environment variable has a value of the wrong shape.
    #[error("environment variable {name}={value:?}: expected {expected}")]
    Env {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// A value is out of its allowed range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What was wrong and expected.
        message: String,
    },
}

impl HangarConfig {
    /// Where the host keeps its own state (tombstone epochs, devices):
    /// `<data_dir>/<node_id>/host`.
    #[must_use]
    pub fn host_state_dir(&self) -> PathBuf {
        self.data_dir.join(&self.node_id).join("host")
    }

    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies environment overrides read through `get` (the process
    /// environment in production; a map in tests).
    ///
    /// Variables: `HANGAR_NODE_ID`, `HANGAR_HOST`, `HANGAR_PORT`,
    /// `HANGAR_DATA_DIR`, `HANGAR_LOG`, `HANGAR_PLUGIN_DIR`,
    /// `HANGAR_STORAGE_PLUGIN`, `HANGAR_CLUSTER_PLUGIN`,
    /// `HANGAR_ADVERTISE_HOST`, `JWT_SECRET`, and `HANGAR_NO_AUTH=1` /
    /// `TOPGUN_NO_AUTH=true`, which turn auth off. The plugins' variables
    /// (`STORAGE_BACKEND`, `HANGAR_CLUSTER_PORT`, `HANGAR_SEED_NODES`,
    /// `HANGAR_ZONE`, ...) are the plugins': each declares its own and the
    /// host passes them on when it builds the module
    /// (`hangar_host::plugin::instantiate_storage`, `instantiate_cluster`).
    ///
    /// # Errors
    /// [`ConfigError::Env`] naming the variable and the expected shape.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let env_err = |name: &str, value: &str, expected: &str| ConfigError::Env {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        if let Some(v) = get("HANGAR_NODE_ID") {
            self.node_id = v;
        }
        if let Some(v) = get("HANGAR_HOST") {
            self.host = v;
        }
        if let Some(v) = get("HANGAR_PORT") {
            self.port = v
                .parse()
                .map_err(|_| env_err("HANGAR_PORT", &v, "a port number 0-65535"))?;
        }
        if let Some(v) = get("HANGAR_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("HANGAR_LOG") {
            self.log = v;
        }
        if let Some(v) = get("HANGAR_PLUGIN_DIR") {
            self.plugins.dir = Some(v.into());
        }
        if let Some(v) = get("HANGAR_STORAGE_PLUGIN") {
            self.plugins.storage = v;
        }
        if let Some(v) = get("HANGAR_CLUSTER_PLUGIN") {
            self.plugins.cluster = v;
        }
        if let Some(v) = get("HANGAR_ADVERTISE_HOST") {
            self.cluster.advertise_host = Some(v);
        }
        if let Some(v) = get("JWT_SECRET").filter(|v| !v.is_empty()) {
            self.auth.jwt_secret = Some(v);
        }
        let no_auth = |name: &str| {
            get(name)
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        };
        if no_auth("HANGAR_NO_AUTH") || no_auth("TOPGUN_NO_AUTH") {
            self.auth.jwt_secret = None;
        }
        Ok(())
    }

    /// Checks cross-field rules and fills the module configs' copies of the
    /// node id and data directory.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn finish(&mut self) -> Result<(), ConfigError> {
        hangar_core::hlc::validate_node_id(&self.node_id).map_err(|e| ConfigError::Invalid {
            key: "node_id".into(),
            message: e.to_string(),
        })?;
        for (key, req) in [
            ("plugins.storage_version", &self.plugins.storage_version),
            ("plugins.cluster_version", &self.plugins.cluster_version),
        ] {
            VersionReq::parse(req).map_err(|e| ConfigError::Invalid {
                key: key.into(),
                message: format!("{req:?} is not a semver requirement: {e}"),
            })?;
        }
        for (key, moved) in MOVED_STORAGE_KEYS {
            if self.storage.settings.contains_key(key) {
                return Err(ConfigError::Invalid {
                    key: format!("storage.{key}"),
                    message: format!("no longer set here: {moved}"),
                });
            }
        }
        for (key, moved) in MOVED_CLUSTER_KEYS {
            if self.cluster.settings.contains_key(key) {
                return Err(ConfigError::Invalid {
                    key: format!("cluster.{key}"),
                    message: format!("no longer set here: {moved}"),
                });
            }
        }
        if self.storage.write_ack_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "storage.write_ack_timeout_ms".into(),
                message: "must be positive".into(),
            });
        }
        if self.sync.tombstone_epoch_width == 0 {
            return Err(ConfigError::Invalid {
                key: "sync.tombstone_epoch_width".into(),
                message: "must be at least 1 (new OR tombstones per epoch)".into(),
            });
        }
        if self.sync.prune_interval_ms < 10 {
            return Err(ConfigError::Invalid {
                key: "sync.prune_interval_ms".into(),
                message: format!(
                    "{} ms is too short: expected at least 10",
                    self.sync.prune_interval_ms
                ),
            });
        }
        // State lives under the data directory per node id, so several nodes
        // started from one working directory never share files.
        let own = self.data_dir.join(&self.node_id);
        let n = &self.network;
        for (key, ok) in [
            ("network.auth_timeout_ms", n.auth_timeout_ms > 0),
            ("network.idle_timeout_ms", n.idle_timeout_ms > 0),
            ("network.rate_limit_per_sec", n.rate_limit_per_sec > 0.0),
            ("network.rate_limit_burst", n.rate_limit_burst >= 1.0),
            ("network.max_in_flight", n.max_in_flight > 0),
            (
                "network.max_in_flight_per_connection",
                n.max_in_flight_per_connection > 0,
            ),
            ("network.outbound_queue", n.outbound_queue > 0),
            ("network.outbound_queue_bytes", n.outbound_queue_bytes > 0),
            ("network.max_connections", n.max_connections > 0),
            ("network.request_timeout_ms", n.request_timeout_ms > 0),
            ("network.write_timeout_ms", n.write_timeout_ms > 0),
        ] {
            if !ok {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "must be positive (the burst at least 1)".into(),
                });
            }
        }
        if self.cluster.data_dir.is_none() {
            self.cluster.data_dir = Some(own.join("cluster"));
        }
        Ok(())
    }

    /// The storage module's config: node id, its directory under the data
    /// directory (`<data_dir>/<node_id>/storage`), the write-ack timeout and
    /// the rest of `[storage]` as the plugin's opaque settings (the plugin's
    /// environment variables are added when a plugin is instantiated).
    ///
    /// # Panics
    /// Never for a table read from TOML (every TOML value has a msgpack
    /// form).
    #[must_use]
    pub fn storage_module_config(&self) -> StorageModuleConfig {
        let values = rmpv::ext::to_value(&self.storage.settings)
            .expect("a TOML table converts to a msgpack value");
        StorageModuleConfig {
            node_id: self.node_id.clone(),
            data_dir: self.data_dir.join(&self.node_id).join("storage"),
            write_ack_timeout_ms: self.storage.write_ack_timeout_ms,
            settings: PluginSettings {
                section: "storage".into(),
                values,
                ..PluginSettings::default()
            },
        }
    }

    /// The cluster module's config: node id, its directory, the advertised
    /// host and client endpoint, and the rest of `[cluster]` as the
    /// plugin's opaque settings, with the variables the flags set (the
    /// plugin's environment variables are added when a plugin is
    /// instantiated).
    ///
    /// # Panics
    /// Never for a table read from TOML (every TOML value has a msgpack
    /// form).
    #[must_use]
    pub fn cluster_module_config(&self) -> ClusterModuleConfig {
        let values = rmpv::ext::to_value(&self.cluster.settings)
            .expect("a TOML table converts to a msgpack value");
        ClusterModuleConfig {
            node_id: self.node_id.clone(),
            data_dir: self.cluster.data_dir.clone(),
            client_endpoint: self.cluster.client_endpoint.clone(),
            advertise_host: self.cluster.advertise_host.clone(),
            settings: PluginSettings {
                section: "cluster".into(),
                values,
                env: self.cluster.flags.clone(),
                ..PluginSettings::default()
            },
        }
    }

    /// Parsed version requirement of a slot (validated by [`Self::finish`]).
    #[must_use]
    pub fn version_req(&self, storage: bool) -> VersionReq {
        let s = if storage {
            &self.plugins.storage_version
        } else {
            &self.plugins.cluster_version
        };
        VersionReq::parse(s).unwrap_or(VersionReq::STAR)
    }
}

#[cfg(test)]
mod tests;
