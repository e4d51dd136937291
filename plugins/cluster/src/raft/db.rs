//! The one redb file that holds a node's Raft state, shared by the log store
//! and the state machine.
//!
//! # On-disk layout (`<dir>/raft.redb`)
//!
//! Every value is msgpack with named fields (`rmp_serde::to_vec_named`), so
//! fields can be added later without breaking old files.
//!
//! | table          | key              | value                                        |
//! |----------------|------------------|----------------------------------------------|
//! | `raft_log_v1`  | log index (u64)  | the openraft `Entry` (log id + payload)      |
//! | `raft_meta_v1` | `"vote"`         | the last saved `Vote`                        |
//! | `raft_meta_v1` | `"committed"`    | the last saved committed `LogId`             |
//! | `raft_meta_v1` | `"purged"`       | the last purged `LogId` (logs `..=` it gone) |
//! | `raft_meta_v1` | `"snapshot"`     | [`StoredSnapshot`]: meta + `ClusterState`    |
//!
//! Writes that Raft needs durable before it acknowledges (vote, appended
//! entries, truncation, purge, snapshot) commit with
//! [`Durability::Immediate`] (fsync). The committed log id commits with
//! [`Durability::None`]: losing its last value in a crash is safe (openraft
//! then re-learns the commit index from the leader); it reaches disk with the
//! next durable commit, and [`RaftDb::close`] makes it durable on shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::{SnapshotMeta, StorageError};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log_v1");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta_v1");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "purged";
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";

/// The file name inside the Raft directory.
pub(crate) const FILE_NAME: &str = "raft.redb";

/// How long `open` waits for a previous instance in this process to let go
/// of the file (its last background task may still hold it briefly).
const OPEN_WAIT: Duration = Duration::from_secs(3);

/// The persisted snapshot: its openraft metadata and the msgpack-encoded
/// `ClusterState` exactly as sent to followers.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

/// The shared redb handle. `close` drops the database even while clones of
/// this handle live on in openraft's tasks; their later calls fail with an
/// error naming the file.
pub(crate) struct RaftDb {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl RaftDb {
    /// Opens (creating) `dir/raft.redb` and its tables.
    pub(crate) async fn open(dir: &Path) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create Raft directory {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let p = path.clone();
        let db = tokio::task::spawn_blocking(move || open_file(&p))
            .await
            .map_err(|e| format!("{}: open task failed: {e}", path.display()))??;
        Ok(Arc::new(Self {
            path,
            db: RwLock::new(Some(Arc::new(db))),
        }))
    }

    /// The file, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a blocking thread against the open database. Errors name
    /// the file and `op`.
    pub(crate) async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, String> + Send + 'static,
    {
        let db =
            self.db.read().clone().ok_or_else(|| {
                format!("{}: {op}: the Raft store is closed", self.path.display())
            })?;
        let res = tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| format!("task failed: {e}"))
            .and_then(|r| r);
        res.map_err(|e| format!("{}: {op}: {e}", self.path.display()))
    }

    /// Reads one meta value.
    pub(crate) async fn get_meta<T>(&self, key: &'static str) -> Result<Option<T>, String>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.run("read", move |db| {
            let txn = db.begin_read().map_err(text)?;
            let table = txn.open_table(META).map_err(text)?;
            match table.get(key).map_err(text)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Writes one meta value with the given durability.
    pub(crate) async fn put_meta<T>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), String>
    where
        T: Serialize,
    {
        let bytes = encode(value)?;
        self.run("write", move |db| {
            let mut txn = db.begin_write().map_err(text)?;
            txn.set_durability(durability).map_err(text)?;
            txn.open_table(META)
                .map_err(text)?
                .insert(key, bytes.as_slice())
                .map_err(text)?;
            txn.commit().map_err(text)
        })
        .await
    }

    /// Makes every earlier commit durable, then lets go of the file.
    pub(crate) async fn close(&self) {
        let flushed = self
            .run("close", |db| {
                let mut txn = db.begin_write().map_err(text)?;
                txn.set_durability(Durability::Immediate).map_err(text)?;
                txn.commit().map_err(text)
            })
            .await;
        if let Err(e) = flushed {
            tracing::warn!("closing the Raft store: {e}");
        }
        self.db.write().take();
    }
}

fn open_file(path: &Path) -> Result<Database, String> {
    let started = Instant::now();
    let db = loop {
        match Database::create(path) {
            Ok(db) => break db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < OPEN_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        }
    };
    let init = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|e| format!("cannot create tables in {}: {e}", path.display()))?;
    Ok(db)
}

/// Error text of any redb error.
pub(crate) fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Encodes a value for the file (msgpack, named fields).
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(v).map_err(|e| format!("cannot encode: {e}"))
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("cannot decode a stored value: {e}"))
}

/// An openraft storage error carrying `msg` (which names the file).
pub(crate) fn io_error(
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
    msg: String,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(msg)).into()
}
