//! The default storage plugin's own settings: the `[storage]` section of
//! the node's TOML (less `write_ack_timeout_ms`, which the host reads) and
//! the environment variables below, decoded and validated here, not by the
//! host (see `hangar_core::settings`).
//!
//! ```toml
//! [storage]
//! backend = "memory"
//! tasklet_budget_ms = 5
//! [storage.full_text_search.articles]
//! fields = ["title", "body"]
//! ```

use std::collections::BTreeMap;

use hangar_core::settings::Settings;
use serde::{Deserialize, Serialize};

/// Which persistence backend the storage module uses.
///
/// Read case-insensitively: `embedded` (or `redb`), `memory` (or `null`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum StorageBackendKind {
    /// The embedded store: one redb file in the data directory (default).
    #[default]
    Embedded,
    /// Nothing is persisted; for tests and caches.
    Memory,
}

impl TryFrom<String> for StorageBackendKind {
    type Error = String;

    fn try_from(v: String) -> Result<Self, String> {
        match v.to_ascii_lowercase().as_str() {
            "embedded" | "redb" => Ok(Self::Embedded),
            "memory" | "null" => Ok(Self::Memory),
            _ => Err(format!(
                "unknown backend {v:?}, expected one of embedded, redb, memory, null"
            )),
        }
    }
}

/// BM25 parameters of one map's full-text index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bm25Settings {
    /// Term-frequency saturation (1.2).
    pub k1: f64,
    /// Length normalisation, 0..=1 (0.75).
    pub b: f64,
}

impl Default for Bm25Settings {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

/// Tokenizer of one map's full-text index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerSettings {
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

impl Default for TokenizerSettings {
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

/// Full-text search on one map (`[storage.full_text_search.<map>]`);
/// checked by `crate::search::FullTextIndexConfig::validate` when the
/// module is built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FullTextSettings {
    /// Fields of the record value to index; MUST be non-empty.
    pub fields: Vec<String>,
    /// Tokenizer settings.
    pub tokenizer: TokenizerSettings,
    /// Scoring settings.
    pub bm25: Bm25Settings,
}

/// The default storage plugin's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Persistence backend (embedded).
    pub backend: StorageBackendKind,
    /// Full-text search per map name (none).
    pub full_text_search: BTreeMap<String, FullTextSettings>,
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
    /// operator who chose to lose what it held.
    pub reset_damaged_store: bool,
    /// Check the embedded store's integrity (every page checksum) at every
    /// start, not only after an unclean shutdown (false). Reads the whole
    /// file.
    pub check_integrity_on_start: bool,
    /// Most event-journal entries kept (10 000): past it the oldest are
    /// pruned, in the commit that adds the new ones. 0 turns the journal
    /// off.
    pub journal_capacity: u64,
    /// Most live journal entries held for one subscription while it
    /// replays (65 536, at least 1): past it they are dropped and the
    /// replay reads them from the store instead, so a long replay under
    /// heavy writes does not grow memory without bound.
    pub journal_replay_buffer: usize,
}

/// The default of [`StorageSettings::journal_capacity`].
pub const DEFAULT_JOURNAL_CAPACITY: u64 = 10_000;

/// The default of [`StorageSettings::journal_replay_buffer`].
pub const DEFAULT_JOURNAL_REPLAY_BUFFER: usize = 65_536;

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            backend: StorageBackendKind::Embedded,
            full_text_search: BTreeMap::new(),
            tasklet_budget_ms: 5,
            tasklet_max_concurrent: 20,
            event_pool_max: 4_096,
            event_pool_initial: 128,
            worker_threads: 2,
            reset_damaged_store: false,
            check_integrity_on_start: false,
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
            journal_replay_buffer: DEFAULT_JOURNAL_REPLAY_BUFFER,
        }
    }
}

impl StorageSettings {
    /// The defaults over the memory backend (tests, caches).
    #[must_use]
    pub fn memory() -> Self {
        Self {
            backend: StorageBackendKind::Memory,
            ..Self::default()
        }
    }
}

impl Settings for StorageSettings {
    fn keys() -> &'static [(&'static str, &'static str)] {
        &[
            ("backend", "persistence backend: embedded (redb file in the data directory; also `redb`) or memory (nothing persisted; also `null`)"),
            ("full_text_search", "full-text index per map: [storage.full_text_search.<map>] fields = [...], optional tokenizer {lowercase, stopwords, stemmer, min_length, max_length} and bm25 {k1, b}"),
            ("tasklet_budget_ms", "time budget of one tasklet slice, in ms"),
            ("tasklet_max_concurrent", "most tasklets running at once"),
            ("event_pool_max", "event payload pool: most buffers kept"),
            ("event_pool_initial", "event payload pool: buffers made up front"),
            ("worker_threads", "worker threads of the module's own runtime"),
            ("reset_damaged_store", "start with a new, empty store when the store file is damaged, moving it aside (hangar.redb.damaged-<unix ms>); false refuses the start"),
            ("check_integrity_on_start", "check every page checksum of the store at every start, not only after an unclean shutdown"),
            ("journal_capacity", "most event-journal entries kept; the oldest past it are pruned in the commit that adds new ones; 0 turns the journal off"),
            ("journal_replay_buffer", "most live journal entries held for one subscription while it replays (at least 1); past it the replay reads them from the store instead"),
        ]
    }

    fn env() -> &'static [(&'static str, &'static str)] {
        &[
            ("STORAGE_BACKEND", "backend"),
            ("HANGAR_STORAGE_BACKEND", "backend"),
            ("HANGAR_STORAGE_TASKLET_BUDGET_MS", "tasklet_budget_ms"),
            (
                "HANGAR_STORAGE_TASKLET_MAX_CONCURRENT",
                "tasklet_max_concurrent",
            ),
            ("HANGAR_STORAGE_EVENT_POOL_MAX", "event_pool_max"),
            ("HANGAR_STORAGE_EVENT_POOL_INITIAL", "event_pool_initial"),
            ("HANGAR_STORAGE_WORKER_THREADS", "worker_threads"),
            ("HANGAR_STORAGE_RESET_DAMAGED_STORE", "reset_damaged_store"),
            (
                "HANGAR_STORAGE_CHECK_INTEGRITY_ON_START",
                "check_integrity_on_start",
            ),
            ("HANGAR_STORAGE_JOURNAL_CAPACITY", "journal_capacity"),
            (
                "HANGAR_STORAGE_JOURNAL_REPLAY_BUFFER",
                "journal_replay_buffer",
            ),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        if self.worker_threads == 0 {
            return Err("worker_threads = 0: expected at least 1".into());
        }
        if self.journal_replay_buffer == 0 {
            return Err("journal_replay_buffer = 0: expected at least 1 entry".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::settings::{PluginSettings, SettingsDescription};

    fn section() -> PluginSettings {
        PluginSettings {
            plugin: "hangar-storage".into(),
            section: "storage".into(),
            ..PluginSettings::default()
        }
    }

    #[test]
    fn t10_every_default_key_is_documented_and_every_variable_sets_a_key() {
        let d = SettingsDescription::of::<StorageSettings>().unwrap();
        let rmpv::Value::Map(defaults) = &d.defaults else {
            panic!("defaults are a map")
        };
        let keys: Vec<&str> = defaults.iter().filter_map(|(k, _)| k.as_str()).collect();
        let documented: Vec<&str> = d.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, documented);
        for v in &d.env {
            assert!(documented.contains(&v.key.as_str()), "{v:?}");
        }
    }

    #[test]
    fn t11_storage_backend_reads_every_spelling_and_overrides_the_section() {
        for (raw, kind) in [
            ("embedded", StorageBackendKind::Embedded),
            ("REDB", StorageBackendKind::Embedded),
            ("memory", StorageBackendKind::Memory),
            ("null", StorageBackendKind::Memory),
        ] {
            let mut s = section().with("backend", "embedded");
            s.env.insert("STORAGE_BACKEND".into(), raw.into());
            assert_eq!(
                s.decode::<StorageSettings>().unwrap().backend,
                kind,
                "{raw}"
            );
        }
        let mut s = section();
        s.env.insert("STORAGE_BACKEND".into(), "floppy".into());
        let m = s
            .decode::<StorageSettings>()
            .unwrap_err()
            .message
            .to_string();
        assert!(
            m.contains("plugin hangar-storage: setting storage.backend (set by STORAGE_BACKEND)")
                && m.contains("expected one of embedded, redb, memory, null"),
            "{m}"
        );
    }

    #[test]
    fn t12_unknown_keys_and_wrong_types_are_refused_by_name() {
        let m = section()
            .with("tasklet_budget", 5)
            .decode::<StorageSettings>()
            .unwrap_err()
            .message
            .to_string();
        assert!(
            m.contains("setting storage.tasklet_budget: unknown field `tasklet_budget`"),
            "{m}"
        );
        let m = section()
            .with("worker_threads", "two")
            .decode::<StorageSettings>()
            .unwrap_err()
            .message
            .to_string();
        assert!(
            m.contains("setting storage.worker_threads: invalid type: string \"two\""),
            "{m}"
        );
        let m = section()
            .with("worker_threads", 0)
            .decode::<StorageSettings>()
            .unwrap_err()
            .message
            .to_string();
        assert!(m.contains("worker_threads = 0: expected at least 1"), "{m}");
    }
}
