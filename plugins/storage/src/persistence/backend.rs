//! [`PersistenceBackend`]: the trait that every store of Hangar's maps
//! implements (redb by default, memory for tests, PostgreSQL later), and its
//! written contract.

use std::collections::HashMap;

use futures::future::BoxFuture;
use hangar_core::MapKind;

use super::entry::{LoadedMap, StoreOp, StoredEntry, StoredMap, WriteBatch};
use super::error::PersistenceError;
use super::journal::JournalRecord;

/// Result of a backend call.
pub type PersistResult<T> = Result<T, PersistenceError>;

/// Where the storage module keeps its maps across restarts.
///
/// One backend serves every map of a node. It stores, per map, one
/// [`StoredEntry`] per key, the OR tombstone set (one row per tag) and the
/// map's kind. It knows nothing of CRDT merging: callers store the winning
/// state, and the backend keeps exactly what it was given.
///
/// The methods return boxed futures so that the trait is object safe
/// (`Arc<dyn PersistenceBackend>`: the backend is chosen by configuration).
/// No engine type (redb, sqlx) appears in this trait.
///
/// # Contract
///
/// Every implementation passes the persistence-backend contract suite of
/// `hangar-testkit` (`testkit/src/persistence/`, feature `persistence`); the
/// suite checks the statements below.
///
/// ## Commits: `commit` (and `store`, `delete`, built on it)
///
/// - When `commit` returns `Ok`, the whole batch MUST be durable: it MUST
///   survive the process being killed (SIGKILL) and, as far as the operating
///   system's fsync guarantees, a power loss. Asynchronous or "batched"
///   fsync MUST NOT be used to return `Ok` early; batching belongs to the
///   caller (see [`crate::persistence::group_commit`]).
/// - A batch MUST be atomic: after a crash, either every op of it is
///   visible or none is. Concurrent readers MUST NOT observe part of it.
/// - Ops MUST apply in order: for ops on the same slot (`(map, key)` for
///   entries, `(map, tag)` for tombstones) the last one decides.
/// - A commit that returns `Err` with [`PersistenceError::InvalidInput`] or
///   [`PersistenceError::KindConflict`] MUST have written nothing. After an
///   `Err` of any other kind, the batch MAY or MAY NOT be durable; the
///   caller MUST NOT report it as persisted. The caller commits the same
///   ops again later (the group committer does, before anything later), so
///   committing a batch again MUST give the same state as committing it
///   once. A backend that cannot vouch for later commits after a failure
///   (an fsync that failed once may "succeed" on retry without the data
///   being on disk) MUST refuse them itself (redb does after an I/O
///   error); one whose failure passes (a lost connection) accepts them.
/// - A map's kind MUST be recorded by the first op that needs one (a `Put`,
///   or any tombstone op, which needs an OR map) and MUST NOT change: an op
///   that needs the other kind MUST fail the whole batch with
///   [`PersistenceError::KindConflict`]. `Delete` needs no kind and MUST NOT
///   record a map.
/// - Names MUST be validated with [`validate_op`]: an empty map name, or a
///   NUL character in a map name, key or tag, MUST fail the whole batch with
///   [`PersistenceError::InvalidInput`]. (NUL is refused so that every
///   backend, PostgreSQL `TEXT` included, can hold every name.)
/// - `ttl_ms` and tombstone records (`value == None`) MUST be kept exactly,
///   as every other field.
/// - An empty batch MUST succeed and change nothing.
/// - Concurrent `commit` calls MUST be safe; the backend MAY serialise them.
///
/// ## Reads
///
/// - Reads MUST see every batch whose commit returned `Ok` before the read
///   was called, and MUST NOT see part of a batch.
/// - `load_map` and `list_keys` MUST return keys in ascending byte order,
///   each once; `load_or_tombstones` likewise for tags.
/// - `load_keys` MUST omit keys that have no entry, MUST return each present
///   key once (even when asked twice), in ascending byte order.
/// - A map the backend has never recorded MUST read as empty (`kind: None`),
///   not as an error.
/// - `list_maps` MUST return every recorded map once with its kind, in
///   ascending byte order of name, including maps whose entries were all
///   deleted (a map stays recorded).
/// - Reading MUST NOT return data of another map, including maps whose
///   name is a prefix of this one's.
/// - Stored bytes that cannot be decoded MUST fail the read with
///   [`PersistenceError::Corrupt`], never be skipped or misread.
///
/// ## Flush and close
///
/// - `flush` MUST return only once every commit that returned before
///   `flush` was called is durable (with per-commit durability, as above,
///   this is a barrier that waits for commits in progress).
/// - `close` MUST wait for calls in progress, leave every committed batch
///   durable and release the store (file locks, connections), so that the
///   same store can be opened again in the same process. After `close`,
///   every call MUST fail with [`PersistenceError::Closed`]; a second
///   `close` MUST succeed and do nothing.
/// - Closing MUST NOT discard data: opening the same store again MUST show
///   everything committed (for the in-memory backend: within the process).
///
/// ## Runtime
///
/// - The futures MAY be polled by any executor: a backend that needs a
///   runtime (for `spawn_blocking`) MUST capture it when it is opened, not
///   rely on the caller's thread-local runtime context.
/// - Blocking I/O MUST NOT run on the polling thread; use a blocking pool.
pub trait PersistenceBackend: Send + Sync + 'static {
    /// A short name for logs and errors (`"redb"`, `"memory"`).
    fn name(&self) -> &'static str;

    /// Why the store is failed for good, if it is: damage met at run time
    /// (see [`PersistenceError::Damaged`]). Once `Some`, it stays `Some`
    /// and every call fails with that error. The module reports it (metric
    /// `hangar_storage_failed`, shown by the host's `/health`).
    fn failure(&self) -> Option<String> {
        None
    }

    /// Commits `batch` atomically and durably.
    ///
    /// # Errors
    /// [`PersistenceError::InvalidInput`] or [`PersistenceError::KindConflict`]
    /// (nothing written); [`PersistenceError::Storage`] (fate unknown);
    /// [`PersistenceError::Closed`].
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>>;

    /// Every entry and tombstone of `map`, with its kind.
    ///
    /// # Errors
    /// [`PersistenceError::Corrupt`], [`PersistenceError::Storage`],
    /// [`PersistenceError::Closed`].
    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>>;

    /// The entries of the given keys of `map`; keys without an entry are
    /// omitted.
    ///
    /// # Errors
    /// As [`Self::load_map`].
    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>>;

    /// The keys of `map` that have an entry.
    ///
    /// # Errors
    /// As [`Self::load_map`].
    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>>;

    /// The OR tombstone set of `map` (empty for LWW and unknown maps).
    /// Callers that filter keys by partition still load all tombstones.
    ///
    /// # Errors
    /// As [`Self::load_map`].
    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>>;

    /// Every recorded map with its kind.
    ///
    /// # Errors
    /// As [`Self::load_map`].
    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>>;

    /// Waits until every commit that returned before this call is durable.
    ///
    /// # Errors
    /// [`PersistenceError::Storage`], [`PersistenceError::Closed`].
    fn flush(&self) -> BoxFuture<'_, PersistResult<()>>;

    /// Releases the store; see the contract. Idempotent.
    ///
    /// # Errors
    /// [`PersistenceError::Storage`] when the engine reports a failure while
    /// closing (the backend is closed all the same).
    fn close(&self) -> BoxFuture<'_, PersistResult<()>>;

    /// Whether this backend keeps the event journal ([`StoreOp::JournalAppend`],
    /// [`StoreOp::JournalPrune`], [`Self::read_journal`],
    /// [`Self::journal_bounds`]). A backend that does not MUST refuse
    /// journal ops with [`PersistenceError::InvalidInput`] (writing nothing)
    /// and keep the defaults of the journal reads; the storage module then
    /// runs without a journal and answers journal requests with an error
    /// saying the backend keeps none.
    ///
    /// A backend that does MUST commit journal rows atomically with the
    /// batch's other ops (so an entry exists exactly when its write is
    /// durable), keep them across close and open, and read them in
    /// ascending sequence order.
    fn keeps_journal(&self) -> bool {
        false
    }

    /// Up to `limit` journal entries with `seq >= from`, in ascending order.
    ///
    /// # Errors
    /// [`PersistenceError::InvalidInput`] when the backend keeps no
    /// journal; otherwise as [`Self::load_map`].
    fn read_journal(
        &self,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'_, PersistResult<Vec<JournalRecord>>> {
        let _ = (from, limit);
        let name = self.name();
        Box::pin(std::future::ready(Err(PersistenceError::InvalidInput(
            format!("the {name} backend keeps no event journal"),
        ))))
    }

    /// The first and last sequence numbers of the journal's entries, `None`
    /// when it holds none (also for a backend that keeps no journal).
    ///
    /// # Errors
    /// As [`Self::load_map`].
    fn journal_bounds(&self) -> BoxFuture<'_, PersistResult<Option<(u64, u64)>>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Stores `entries` into `map` in one commit (see [`Self::commit`]).
    ///
    /// # Errors
    /// As [`Self::commit`].
    fn store<'a>(
        &'a self,
        map: &'a str,
        entries: Vec<(String, StoredEntry)>,
    ) -> BoxFuture<'a, PersistResult<()>> {
        let ops = entries
            .into_iter()
            .map(|(key, entry)| StoreOp::Put {
                map: map.to_string(),
                key,
                entry,
            })
            .collect::<Vec<_>>();
        self.commit(WriteBatch::from(ops))
    }

    /// Deletes `keys` of `map` in one commit (see [`Self::commit`]).
    ///
    /// # Errors
    /// As [`Self::commit`].
    fn delete<'a>(&'a self, map: &'a str, keys: &'a [String]) -> BoxFuture<'a, PersistResult<()>> {
        let ops = keys
            .iter()
            .map(|key| StoreOp::Delete {
                map: map.to_string(),
                key: key.clone(),
            })
            .collect::<Vec<_>>();
        self.commit(WriteBatch::from(ops))
    }
}

fn check_name(what: &str, name: &str) -> PersistResult<()> {
    if name.contains('\0') {
        return Err(PersistenceError::InvalidInput(format!(
            "{what} {name:?} contains a NUL character, which no backend may store"
        )));
    }
    Ok(())
}

/// Checks the names in one op against the contract (non-empty map name, no
/// NUL anywhere). Backends call it for every op before writing anything; the
/// group committer calls it at enqueue so that bad input never reaches a
/// commit.
///
/// # Errors
/// [`PersistenceError::InvalidInput`] naming the bad field.
pub fn validate_op(op: &StoreOp) -> PersistResult<()> {
    let map = match op {
        StoreOp::JournalAppend(r) => {
            if r.seq == 0 {
                return Err(PersistenceError::InvalidInput(
                    "journal entry without a sequence number; entries are numbered from 1 by \
                     the group committer"
                        .into(),
                ));
            }
            check_name("journal map name", &r.map)?;
            return check_name("journal key", &r.key);
        }
        StoreOp::JournalPrune { .. } => return Ok(()),
        _ => op.map().unwrap_or_default(),
    };
    if map.is_empty() {
        return Err(PersistenceError::InvalidInput(
            "empty map name, expected at least one character".into(),
        ));
    }
    check_name("map name", map)?;
    match op {
        StoreOp::Put { key, entry, .. } => {
            check_name("key", key)?;
            if let StoredEntry::Or { records } = entry {
                for r in records {
                    check_name("OR record tag", r.tag.as_str())?;
                }
            }
            Ok(())
        }
        StoreOp::Delete { key, .. } => check_name("key", key),
        StoreOp::AddOrTombstone { tag, .. } | StoreOp::RemoveOrTombstone { tag, .. } => {
            check_name("tag", tag)
        }
        StoreOp::JournalAppend(_) | StoreOp::JournalPrune { .. } => Ok(()),
    }
}

/// Checks a whole batch before any write: names ([`validate_op`]) and
/// kinds. `recorded` looks up the kind a map already has; the returned list
/// holds the maps this batch records for the first time, with their kinds,
/// so the backend can write them to its catalog in the same commit.
///
/// # Errors
/// [`PersistenceError::InvalidInput`] or [`PersistenceError::KindConflict`].
pub fn plan_kinds(
    batch: &WriteBatch,
    mut recorded: impl FnMut(&str) -> Option<MapKind>,
) -> PersistResult<Vec<(String, MapKind)>> {
    let mut new_maps: Vec<(String, MapKind)> = Vec::new();
    let mut new_index: HashMap<&str, MapKind> = HashMap::new();
    for op in &batch.ops {
        validate_op(op)?;
        let (Some(requested), Some(map)) = (op.required_kind(), op.map()) else {
            continue;
        };
        let known = new_index.get(map).copied().or_else(|| recorded(map));
        match known {
            Some(k) if k == requested => {}
            Some(k) => {
                return Err(PersistenceError::KindConflict {
                    map: map.to_string(),
                    recorded: k,
                    requested,
                })
            }
            None => {
                new_index.insert(map, requested);
                new_maps.push((map.to_string(), requested));
            }
        }
    }
    Ok(new_maps)
}
