//! [`AppendLogBackend`]: a persistence backend of the template's own, to
//! show how a plugin swaps the store under Hangar's default storage module
//! (`hangar_storage::create_with_backend`).
//!
//! The whole state lives in memory and every commit is appended to one log
//! file, `hangar-template.log` in the data directory, then fsynced before
//! `commit` returns. Opening the directory replays the log. It is simple
//! and slow to open for large data (no compaction): a teaching example that
//! nevertheless keeps the whole backend contract (it passes the persistence
//! conformance suite, `tests/t20_append_log_conformance.rs`).
//!
//! # File format
//!
//! ```text
//! file   := record*
//! record := len: u32 LE | checksum: u64 LE (FNV-1a 64 of payload) | payload: len bytes
//! payload:= msgpack of LogRecord { new_maps: [(map, kind)], ops: [LogOp] }
//! ```
//!
//! A commit is one record, written with one `write_all` and one
//! `sync_data`. On open, a trailing record that is cut short or whose
//! checksum does not match (a crash in the middle of an append) is dropped
//! and the file truncated to the last whole record: a batch is all or
//! nothing. A whole record that does not decode is corruption and fails the
//! open.
//!
//! It keeps no event journal (`keeps_journal` is false, journal ops are
//! refused): a storage module over it runs with the journal off and says
//! so to journal requests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use hangar_core::{LwwRecord, MapKind, OrRecord};
use hangar_storage::persistence::{
    plan_kinds, LoadedMap, PersistResult, PersistenceBackend, PersistenceError, StoreOp,
    StoredEntry, StoredMap, WriteBatch,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "hangar-template.log";

#[derive(Serialize, Deserialize)]
enum LogEntry {
    Lww(LwwRecord),
    Or(Vec<OrRecord>),
}

#[derive(Serialize, Deserialize)]
enum LogOp {
    Put(String, String, LogEntry),
    Delete(String, String),
    AddTombstone(String, String),
    RemoveTombstone(String, String),
}

#[derive(Serialize, Deserialize)]
struct LogRecord {
    new_maps: Vec<(String, MapKind)>,
    ops: Vec<LogOp>,
}

#[derive(Default)]
struct State {
    catalog: BTreeMap<String, MapKind>,
    entries: BTreeMap<(String, String), StoredEntry>,
    tombstones: BTreeSet<(String, String)>,
}

impl State {
    fn apply(&mut self, rec: LogRecord) {
        self.catalog.extend(rec.new_maps);
        for op in rec.ops {
            match op {
                LogOp::Put(m, k, LogEntry::Lww(r)) => {
                    self.entries.insert((m, k), StoredEntry::Lww(r));
                }
                LogOp::Put(m, k, LogEntry::Or(records)) => {
                    self.entries.insert((m, k), StoredEntry::Or { records });
                }
                LogOp::Delete(m, k) => {
                    self.entries.remove(&(m, k));
                }
                LogOp::AddTombstone(m, t) => {
                    self.tombstones.insert((m, t));
                }
                LogOp::RemoveTombstone(m, t) => {
                    self.tombstones.remove(&(m, t));
                }
            }
        }
    }
}

struct Open {
    file: File,
    state: State,
    /// Set when a write or fsync failed: the file's tail is unknown, so
    /// every later commit is refused (the contract asks a backend that
    /// cannot vouch for later commits to refuse them).
    poisoned: bool,
}

/// The append-only log backend. All calls run on the blocking pool of the
/// runtime that was current when it was opened.
pub struct AppendLogBackend {
    inner: Arc<Mutex<Option<Open>>>,
    runtime: Handle,
    path: PathBuf,
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> PersistenceError + 'a {
    move |e| PersistenceError::storage(op, format!("{}: {e}", path.display()))
}

impl AppendLogBackend {
    /// Opens (creating if needed) the log in `dir` and replays it.
    ///
    /// # Errors
    /// [`PersistenceError::Storage`] for I/O errors or when no tokio runtime
    /// is current; [`PersistenceError::Corrupt`] for a whole record that
    /// does not decode.
    pub fn open(dir: impl AsRef<Path>) -> PersistResult<Self> {
        let runtime = Handle::try_current().map_err(|e| {
            PersistenceError::storage("open", format!("needs a tokio runtime: {e}"))
        })?;
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io("open", dir))?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("open", &path))?;
        let mut state = State::default();
        let mut at = 0usize;
        while bytes.len() - at >= 12 {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
            let sum = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap_or_default());
            let Some(payload) = bytes.get(at + 12..at + 12 + len) else {
                break; // cut short by a crash
            };
            if fnv64(payload) != sum {
                break; // torn write
            }
            let rec: LogRecord =
                rmp_serde::from_slice(payload).map_err(|e| PersistenceError::Corrupt {
                    location: format!("{} at byte {at}", path.display()),
                    reason: format!("a whole log record does not decode: {e}"),
                })?;
            state.apply(rec);
            at += 12 + len;
        }
        if at < bytes.len() {
            file.set_len(at as u64).map_err(io("open", &path))?;
            file.sync_all().map_err(io("open", &path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io("open", &path))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Some(Open {
                file,
                state,
                poisoned: false,
            }))),
            runtime,
            path,
        })
    }

    /// Runs `f` on the open state on the blocking pool.
    fn with<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&mut Open, &Path) -> PersistResult<T> + Send + 'static,
    ) -> BoxFuture<'a, PersistResult<T>> {
        let inner = self.inner.clone();
        let path = self.path.clone();
        let task = self.runtime.spawn_blocking(move || {
            let mut guard = inner.lock();
            let open = guard.as_mut().ok_or(PersistenceError::Closed)?;
            f(open, &path)
        });
        Box::pin(async move {
            task.await
                .map_err(|e| PersistenceError::storage("blocking task", e))?
        })
    }
}

fn to_record(batch: &WriteBatch, new_maps: Vec<(String, MapKind)>) -> LogRecord {
    let ops = batch
        .ops
        .iter()
        .filter_map(|op| {
            Some(match op {
                StoreOp::Put { map, key, entry } => LogOp::Put(
                    map.clone(),
                    key.clone(),
                    match entry {
                        StoredEntry::Lww(r) => LogEntry::Lww(r.clone()),
                        StoredEntry::Or { records } => LogEntry::Or(records.clone()),
                    },
                ),
                StoreOp::Delete { map, key } => LogOp::Delete(map.clone(), key.clone()),
                StoreOp::AddOrTombstone { map, tag } => {
                    LogOp::AddTombstone(map.clone(), tag.clone())
                }
                StoreOp::RemoveOrTombstone { map, tag } => {
                    LogOp::RemoveTombstone(map.clone(), tag.clone())
                }
                // Refused by `commit` before this is reached (no journal here).
                StoreOp::JournalAppend(_) | StoreOp::JournalPrune { .. } => return None,
            })
        })
        .collect();
    LogRecord { new_maps, ops }
}

impl PersistenceBackend for AppendLogBackend {
    fn name(&self) -> &'static str {
        "append-log"
    }

    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        self.with(move |open, path| {
            if open.poisoned {
                return Err(PersistenceError::storage(
                    "commit",
                    "an earlier write to the log failed; reopen the store to recover",
                ));
            }
            if batch
                .ops
                .iter()
                .any(|op| matches!(op, StoreOp::JournalAppend(_) | StoreOp::JournalPrune { .. }))
            {
                return Err(PersistenceError::InvalidInput(
                    "the append-log backend keeps no event journal (keeps_journal is false); \
                     journal ops are refused"
                        .into(),
                ));
            }
            let new_maps = plan_kinds(&batch, |m| open.state.catalog.get(m).copied())?;
            if batch.is_empty() {
                return Ok(());
            }
            let rec = to_record(&batch, new_maps);
            let payload = rmp_serde::to_vec(&rec).map_err(|e| {
                PersistenceError::InvalidInput(format!("cannot encode the batch: {e}"))
            })?;
            let len = u32::try_from(payload.len())
                .map_err(|_| PersistenceError::InvalidInput("a batch over 4 GiB".into()))?;
            let mut bytes = Vec::with_capacity(12 + payload.len());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&fnv64(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
            let written = open
                .file
                .write_all(&bytes)
                .and_then(|()| open.file.sync_data());
            if let Err(e) = written {
                open.poisoned = true;
                return Err(io("commit", path)(e));
            }
            open.state.apply(rec);
            Ok(())
        })
    }

    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        let map = map.to_string();
        self.with(move |open, _| {
            let s = &open.state;
            let range = (map.clone(), String::new())..;
            Ok(LoadedMap {
                kind: s.catalog.get(&map).copied(),
                entries: s
                    .entries
                    .range(range.clone())
                    .take_while(|((m, _), _)| *m == map)
                    .map(|((_, k), e)| (k.clone(), e.clone()))
                    .collect(),
                or_tombstones: s
                    .tombstones
                    .range(range)
                    .take_while(|(m, _)| *m == map)
                    .map(|(_, t)| t.clone())
                    .collect(),
            })
        })
    }

    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        let map = map.to_string();
        let keys: BTreeSet<String> = keys.iter().cloned().collect();
        self.with(move |open, _| {
            Ok(keys
                .into_iter()
                .filter_map(|k| {
                    let e = open.state.entries.get(&(map.clone(), k.clone()))?.clone();
                    Some((k, e))
                })
                .collect())
        })
    }

    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        let map = map.to_string();
        self.with(move |open, _| {
            Ok(open
                .state
                .entries
                .range((map.clone(), String::new())..)
                .take_while(|((m, _), _)| *m == map)
                .map(|((_, k), _)| k.clone())
                .collect())
        })
    }

    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        let map = map.to_string();
        self.with(move |open, _| {
            Ok(open
                .state
                .tombstones
                .range((map.clone(), String::new())..)
                .take_while(|(m, _)| *m == map)
                .map(|(_, t)| t.clone())
                .collect())
        })
    }

    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        self.with(|open, _| {
            Ok(open
                .state
                .catalog
                .iter()
                .map(|(name, kind)| StoredMap {
                    name: name.clone(),
                    kind: *kind,
                })
                .collect())
        })
    }

    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        // Every commit is fsynced before it returns.
        self.with(|_, _| Ok(()))
    }

    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        let inner = self.inner.clone();
        let path = self.path.clone();
        let task = self.runtime.spawn_blocking(move || {
            // The lock waits for the call in progress; dropping the file
            // releases it.
            match inner.lock().take() {
                Some(open) => open.file.sync_all().map_err(io("close", &path)),
                None => Ok(()),
            }
        });
        Box::pin(async move {
            task.await
                .map_err(|e| PersistenceError::storage("blocking task", e))?
        })
    }
}
