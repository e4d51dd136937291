//! [`RedbBackend`]: the embedded default backend, one redb file in the
//! node's data directory.
//!
//! # Layout
//!
//! Three tables, each keyed so that one map is a contiguous key range; the
//! value bytes are described in [`super::codec`].
//!
//! ```text
//! table "hangar_entries_v1"        key (map: &str, key: &str)  -> entry value (version, kind, msgpack)
//! table "hangar_or_tombstones_v1"  key (map: &str, tag: &str)  -> tombstone value (version)
//! table "hangar_maps_v1"           key map: &str               -> catalog value (version, kind)
//! table "hangar_journal_v1"        key sequence: u64           -> journal entry (see super::journal)
//! ```
//!
//! Journal rows are written in the same transaction as the map rows of the
//! batch that carries them, so an entry is durable exactly when its write
//! is.
//!
//! Why one table keyed by `(map, key)` rather than a table per map: a
//! group commit touches many maps, and with one table it opens three tables
//! whatever the number of maps; map names need no escaping into table
//! names; a map is still one range scan; and it is the same model as the
//! PostgreSQL schema (one table, primary key `(map_name, key)`), so the
//! conformance suite describes both. redb compares tuple keys field by
//! field, so map `"a"` never reads rows of map `"ab"`.
//!
//! Tombstones are one row per tag, so adding or pruning a tombstone costs
//! O(log n), not a rewrite of the set.
//!
//! # Durability
//!
//! Every commit runs with [`redb::Durability::Immediate`]: `commit` returns
//! after redb's fsync. redb writes data with checksums and flips between two
//! commit slots, so a crash at any point leaves the last completed commit.
//! After an I/O error redb refuses further writes (`PreviousIo`) until the
//! database is opened again, so a failed fsync is never followed by a
//! commit that only seems durable; the group committer's retries of the
//! failed ops fail too until the node restarts.
//!
//! # Damage
//!
//! A store file that exists but cannot be read is refused at open, never
//! taken for an empty store (rules and files in [`super::redb_open`]). At
//! run time, a redb panic (its reaction to some corrupt pages) or a
//! corruption error fails the backend for good: the call and every later
//! one answer [`PersistenceError::Damaged`] without touching redb again,
//! and [`PersistenceBackend::failure`] says why.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use hangar_core::MapKind;
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::runtime::Handle;

use super::backend::{plan_kinds, PersistResult, PersistenceBackend};
use super::codec;
use super::entry::{LoadedMap, StoreOp, StoredEntry, StoredMap, WriteBatch};
use super::error::PersistenceError;
use super::journal::{decode_journal, encode_journal, JournalRecord};
use super::redb_open::{self, is_damage, panic_text};

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("hangar_entries_v1");
const TOMBSTONES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("hangar_or_tombstones_v1");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("hangar_maps_v1");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("hangar_journal_v1");

/// The file name the backend uses inside its data directory.
pub const DB_FILE_NAME: &str = "hangar.redb";

/// Tuning for [`RedbBackend::open_with`].
#[derive(Clone, Debug, Default)]
pub struct RedbOptions {
    /// redb's page cache in bytes; `None` keeps redb's default.
    pub cache_size_bytes: Option<usize>,
    /// redb's quick repair: every commit also saves the allocator state and
    /// uses two-phase commit (two fsyncs), so that opening after a crash
    /// need not walk the whole file. Off by default: commits are faster and
    /// recovery walks the file once.
    pub quick_repair: bool,
    /// When the store file is damaged, move it aside and start a new,
    /// empty store instead of refusing to open (see [`super::redb_open`]).
    pub reset_damaged: bool,
    /// Check every page's checksum at every open, not only after an
    /// unclean shutdown.
    pub check_integrity: bool,
}

struct Inner {
    /// `None` once closed. Calls hold the read lock for their whole run, so
    /// `close` (write lock) waits for calls in progress.
    db: RwLock<Option<Database>>,
    /// Map kinds as recorded in the catalog; guarded also to serialise
    /// planning and committing (redb has one writer at a time anyway).
    kinds: Mutex<HashMap<String, MapKind>>,
    quick_repair: bool,
    path: PathBuf,
    /// Whether `path` is a file this backend owns (it then keeps the
    /// clean-shutdown marker beside it).
    file_backed: bool,
    /// Set once damage was met at run time; every later call fails with it.
    failed: OnceLock<String>,
}

impl Inner {
    fn damaged(&self, detail: String) -> PersistenceError {
        PersistenceError::Damaged {
            path: self.path.display().to_string(),
            detail,
        }
    }

    /// Fails the backend for good (the first reason is kept).
    fn fail(&self, detail: String) -> PersistenceError {
        if self.failed.set(detail.clone()).is_ok() {
            tracing::error!(
                store = %self.path.display(),
                %detail,
                "the store is damaged; every call now fails until it is restored or reset"
            );
        }
        self.damaged(self.failed.get().cloned().unwrap_or(detail))
    }
}

/// The redb backend. Cheap to share behind an `Arc`; all calls run on the
/// blocking pool of the runtime that was current when it was opened.
pub struct RedbBackend {
    inner: Arc<Inner>,
    runtime: Handle,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Maps a redb error of `op`: damage to [`PersistenceError::Damaged`] (its
/// path filled in by [`RedbBackend::run`]), anything else to
/// [`PersistenceError::Storage`].
fn err<E: Into<redb::Error>>(op: &'static str) -> impl Fn(E) -> PersistenceError {
    move |e| {
        let e = e.into();
        if is_damage(&e) {
            PersistenceError::Damaged {
                path: String::new(),
                detail: format!("{op}: {e}"),
            }
        } else {
            PersistenceError::storage(op, e)
        }
    }
}

impl RedbBackend {
    /// Opens (creating if needed) `dir/hangar.redb` with default options.
    /// Blocks while redb opens the file, which after a crash includes its
    /// repair; call it from a blocking context or at start-up.
    ///
    /// # Errors
    /// [`PersistenceError::Damaged`] when the file exists but cannot be read
    /// (and `reset_damaged` is not set); [`PersistenceError::Storage`] when
    /// the directory or file cannot be created or opened (already open
    /// elsewhere, permissions), or when no tokio runtime is current.
    pub fn open(dir: impl AsRef<Path>) -> PersistResult<Self> {
        Self::open_with(dir, &RedbOptions::default())
    }

    /// As [`Self::open`], with options.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: &RedbOptions) -> PersistResult<Self> {
        let runtime = current_runtime()?;
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            PersistenceError::storage("open", format!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join(DB_FILE_NAME);
        let opened = redb_open::open_store(
            &path,
            options,
            |check| {
                let mut b = builder(options);
                b.set_check_integrity_on_open(check);
                b
            },
            prepare,
        )?;
        Ok(Self::from_parts(
            opened.db,
            opened.kinds,
            path,
            true,
            options,
            runtime,
        ))
    }

    /// Opens a database on a redb storage backend of the caller's, for
    /// example one that injects I/O failures. `label` stands for the path in
    /// logs and [`Self::path`].
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_on_storage(
        storage: impl redb::StorageBackend,
        label: impl Into<PathBuf>,
        options: &RedbOptions,
    ) -> PersistResult<Self> {
        let runtime = current_runtime()?;
        let label = label.into();
        let db = builder(options).create_with_backend(storage).map_err(|e| {
            PersistenceError::storage("open", format!("cannot open {}: {e}", label.display()))
        })?;
        let kinds = prepare(&db)?;
        Ok(Self::from_parts(db, kinds, label, false, options, runtime))
    }

    fn from_parts(
        db: Database,
        kinds: HashMap<String, MapKind>,
        path: PathBuf,
        file_backed: bool,
        options: &RedbOptions,
        runtime: Handle,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                kinds: Mutex::new(kinds),
                quick_repair: options.quick_repair,
                path,
                file_backed,
                failed: OnceLock::new(),
            }),
            runtime,
        }
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with the open database on the blocking pool. A failed
    /// backend answers its damage without calling `f`; a panic in `f` (redb
    /// on a corrupt page) or a damage error fails the backend.
    fn run<T, F>(&self, op: &'static str, f: F) -> BoxFuture<'static, PersistResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &Database) -> PersistResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let task = self.runtime.spawn_blocking(move || {
            if let Some(detail) = inner.failed.get() {
                return Err(inner.damaged(detail.clone()));
            }
            let guard = inner.db.read();
            let db = guard.as_ref().ok_or(PersistenceError::Closed)?;
            match catch_unwind(AssertUnwindSafe(|| f(&inner, db))) {
                Ok(Err(PersistenceError::Damaged { detail, .. })) => Err(inner.fail(detail)),
                Ok(result) => result,
                Err(p) => Err(inner.fail(format!(
                    "{op}: the storage engine panicked reading it ({})",
                    panic_text(p.as_ref())
                ))),
            }
        });
        Box::pin(async move {
            task.await
                .map_err(|e| PersistenceError::storage(op, format!("blocking task failed: {e}")))?
        })
    }
}

fn current_runtime() -> PersistResult<Handle> {
    Handle::try_current().map_err(|e| {
        PersistenceError::storage(
            "open",
            format!("RedbBackend must be opened inside a tokio runtime: {e}"),
        )
    })
}

fn builder(options: &RedbOptions) -> redb::Builder {
    let mut builder = Database::builder();
    if let Some(bytes) = options.cache_size_bytes {
        builder.set_cache_size(bytes);
    }
    builder
}

/// Creates the tables (so that reads never meet a missing table) and reads
/// the catalog's map kinds.
fn prepare(db: &Database) -> PersistResult<HashMap<String, MapKind>> {
    let txn = db.begin_write().map_err(err("open"))?;
    {
        txn.open_table(ENTRIES).map_err(err("open"))?;
        txn.open_table(TOMBSTONES).map_err(err("open"))?;
        txn.open_table(CATALOG).map_err(err("open"))?;
        txn.open_table(JOURNAL).map_err(err("open"))?;
    }
    txn.commit().map_err(err("open"))?;
    Ok(read_catalog(db)?
        .into_iter()
        .map(|m| (m.name, m.kind))
        .collect())
}

fn read_catalog(db: &Database) -> PersistResult<Vec<StoredMap>> {
    let txn = db.begin_read().map_err(err("list_maps"))?;
    let table = txn.open_table(CATALOG).map_err(err("list_maps"))?;
    let mut out = Vec::new();
    for row in table.iter().map_err(err("list_maps"))? {
        let (k, v) = row.map_err(err("list_maps"))?;
        let name = k.value().to_string();
        let kind = codec::decode_catalog(v.value(), &format!("catalog/{name}"))?;
        out.push(StoredMap { name, kind });
    }
    Ok(out)
}

fn commit_batch(inner: &Inner, db: &Database, batch: &WriteBatch) -> PersistResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut kinds = inner.kinds.lock();
    let new_maps = plan_kinds(batch, |m| kinds.get(m).copied())?;
    // Encode before the transaction: an encoding error writes nothing.
    let encoded = batch
        .ops
        .iter()
        .map(|op| match op {
            StoreOp::Put { entry, .. } => codec::encode_entry(entry).map(Some),
            StoreOp::JournalAppend(r) => Ok(Some(encode_journal(r))),
            _ => Ok(None),
        })
        .collect::<PersistResult<Vec<_>>>()?;
    let mut txn = db.begin_write().map_err(err("commit"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| PersistenceError::storage("commit", e))?;
    txn.set_quick_repair(inner.quick_repair);
    {
        let mut entries = txn.open_table(ENTRIES).map_err(err("commit"))?;
        let mut tombs = txn.open_table(TOMBSTONES).map_err(err("commit"))?;
        let mut journal = txn.open_table(JOURNAL).map_err(err("commit"))?;
        let tomb_value = codec::encode_tombstone();
        for (op, bytes) in batch.ops.iter().zip(&encoded) {
            match (op, bytes) {
                (StoreOp::Put { map, key, .. }, Some(bytes)) => {
                    entries
                        .insert((map.as_str(), key.as_str()), bytes.as_slice())
                        .map_err(err("commit"))?;
                }
                (StoreOp::Delete { map, key }, _) => {
                    entries
                        .remove((map.as_str(), key.as_str()))
                        .map_err(err("commit"))?;
                }
                (StoreOp::AddOrTombstone { map, tag }, _) => {
                    tombs
                        .insert((map.as_str(), tag.as_str()), tomb_value.as_slice())
                        .map_err(err("commit"))?;
                }
                (StoreOp::RemoveOrTombstone { map, tag }, _) => {
                    tombs
                        .remove((map.as_str(), tag.as_str()))
                        .map_err(err("commit"))?;
                }
                (StoreOp::JournalAppend(r), Some(bytes)) => {
                    journal
                        .insert(r.seq, bytes.as_slice())
                        .map_err(err("commit"))?;
                }
                (StoreOp::JournalPrune { below }, _) => {
                    journal
                        .retain_in(..*below, |_, _| false)
                        .map_err(err("commit"))?;
                }
                (StoreOp::Put { .. } | StoreOp::JournalAppend(_), None) => {
                    return Err(PersistenceError::storage(
                        "commit",
                        "internal: a put lost its encoding",
                    ))
                }
            }
        }
        if !new_maps.is_empty() {
            let mut catalog = txn.open_table(CATALOG).map_err(err("commit"))?;
            for (name, kind) in &new_maps {
                catalog
                    .insert(name.as_str(), codec::encode_catalog(*kind).as_slice())
                    .map_err(err("commit"))?;
            }
        }
    }
    txn.commit().map_err(err("commit"))?;
    kinds.extend(new_maps);
    Ok(())
}

/// One map read in one read transaction, so kind, entries and tombstones
/// are from the same commit.
fn load_whole_map(db: &Database, map: &str) -> PersistResult<LoadedMap> {
    const OP: &str = "load_map";
    let txn = db.begin_read().map_err(err(OP))?;
    let catalog = txn.open_table(CATALOG).map_err(err(OP))?;
    let kind = match catalog.get(map).map_err(err(OP))? {
        Some(v) => Some(codec::decode_catalog(v.value(), &format!("catalog/{map}"))?),
        None => None,
    };
    let entries_t = txn.open_table(ENTRIES).map_err(err(OP))?;
    let mut entries = Vec::new();
    for row in entries_t.range((map, "")..).map_err(err(OP))? {
        let (k, v) = row.map_err(err(OP))?;
        let (m, key) = k.value();
        if m != map {
            break;
        }
        let entry = codec::decode_entry(v.value(), &format!("{map}/{key}"))?;
        entries.push((key.to_string(), entry));
    }
    let or_tombstones = tombstones_in(&txn, map, OP)?;
    Ok(LoadedMap {
        kind,
        entries,
        or_tombstones,
    })
}

fn tombstones_in(
    txn: &redb::ReadTransaction,
    map: &str,
    op: &'static str,
) -> PersistResult<Vec<String>> {
    let table = txn.open_table(TOMBSTONES).map_err(err(op))?;
    let mut out = Vec::new();
    for row in table.range((map, "")..).map_err(err(op))? {
        let (k, v) = row.map_err(err(op))?;
        let (m, tag) = k.value();
        if m != map {
            break;
        }
        codec::check_tombstone(v.value(), &format!("{map}#{tag}"))?;
        out.push(tag.to_string());
    }
    Ok(out)
}

fn read_journal_rows(db: &Database, from: u64, limit: usize) -> PersistResult<Vec<JournalRecord>> {
    const OP: &str = "read_journal";
    let txn = db.begin_read().map_err(err(OP))?;
    let table = txn.open_table(JOURNAL).map_err(err(OP))?;
    let mut out = Vec::new();
    for row in table.range(from..).map_err(err(OP))? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = row.map_err(err(OP))?;
        out.push(decode_journal(k.value(), v.value())?);
    }
    Ok(out)
}

fn journal_bounds_of(db: &Database) -> PersistResult<Option<(u64, u64)>> {
    const OP: &str = "journal_bounds";
    let txn = db.begin_read().map_err(err(OP))?;
    let table = txn.open_table(JOURNAL).map_err(err(OP))?;
    let first = table.first().map_err(err(OP))?.map(|(k, _)| k.value());
    let last = table.last().map_err(err(OP))?.map(|(k, _)| k.value());
    Ok(first.zip(last))
}

impl PersistenceBackend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn keeps_journal(&self) -> bool {
        true
    }

    fn read_journal(
        &self,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'_, PersistResult<Vec<JournalRecord>>> {
        self.run("read_journal", move |_, db| {
            read_journal_rows(db, from, limit)
        })
    }

    fn journal_bounds(&self) -> BoxFuture<'_, PersistResult<Option<(u64, u64)>>> {
        self.run("journal_bounds", |_, db| journal_bounds_of(db))
    }

    fn failure(&self) -> Option<String> {
        self.inner.failed.get().cloned()
    }

    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        self.run("commit", move |inner, db| commit_batch(inner, db, &batch))
    }

    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        let map = map.to_string();
        self.run("load_map", move |_, db| load_whole_map(db, &map))
    }

    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        let map = map.to_string();
        let keys: BTreeSet<String> = keys.iter().cloned().collect();
        self.run("load_keys", move |_, db| {
            let txn = db.begin_read().map_err(err("load_keys"))?;
            let table = txn.open_table(ENTRIES).map_err(err("load_keys"))?;
            let mut out = Vec::new();
            for key in keys {
                if let Some(v) = table
                    .get((map.as_str(), key.as_str()))
                    .map_err(err("load_keys"))?
                {
                    let entry = codec::decode_entry(v.value(), &format!("{map}/{key}"))?;
                    out.push((key, entry));
                }
            }
            Ok(out)
        })
    }

    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        let map = map.to_string();
        self.run("list_keys", move |_, db| {
            let txn = db.begin_read().map_err(err("list_keys"))?;
            let table = txn.open_table(ENTRIES).map_err(err("list_keys"))?;
            let mut out = Vec::new();
            for row in table
                .range((map.as_str(), "")..)
                .map_err(err("list_keys"))?
            {
                let (k, _) = row.map_err(err("list_keys"))?;
                let (m, key) = k.value();
                if m != map {
                    break;
                }
                out.push(key.to_string());
            }
            Ok(out)
        })
    }

    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        let map = map.to_string();
        self.run("load_or_tombstones", move |_, db| {
            let txn = db.begin_read().map_err(err("load_or_tombstones"))?;
            tombstones_in(&txn, &map, "load_or_tombstones")
        })
    }

    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        self.run("list_maps", |_, db| read_catalog(db))
    }

    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        // Every commit is already fsynced; taking the kinds lock waits for a
        // commit in progress to finish.
        self.run("flush", |inner, _| {
            drop(inner.kinds.lock());
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        let inner = Arc::clone(&self.inner);
        let task = self.runtime.spawn_blocking(move || {
            let db = inner.db.write().take();
            match db {
                Some(db) => {
                    db.close()
                        .map_err(|e| PersistenceError::storage("close", e))?;
                    // Closed cleanly: the next open need not check the file.
                    // A failed store keeps its marker, so that it is checked.
                    if inner.file_backed && inner.failed.get().is_none() {
                        redb_open::remove_marker(&inner.path)?;
                    }
                    Ok(())
                }
                None => Ok(()),
            }
        });
        Box::pin(async move {
            task.await.map_err(|e| {
                PersistenceError::storage("close", format!("blocking task failed: {e}"))
            })?
        })
    }
}

#[cfg(test)]
mod tests;
