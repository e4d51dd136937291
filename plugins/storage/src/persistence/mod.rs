//! Persistence of the storage module's maps.
//!
//! # Layout
//!
//! - `backend`: [`PersistenceBackend`], the trait every store implements, and
//!   its written contract (what MUST hold when a call returns).
//! - `entry`: what is stored: [`StoredEntry`] per key, [`StoreOp`] /
//!   [`WriteBatch`], [`LoadedMap`], [`StoredMap`].
//! - `codec`: the versioned byte layout of stored values (msgpack bodies).
//! - `redb_backend`: [`RedbBackend`], the embedded default (one redb file).
//! - `redb_open`: opening its file so that damage is refused, never taken
//!   for an empty store; the clean-shutdown marker.
//! - `memory`: [`MemoryBackend`], a real in-memory backend for tests.
//! - `group_commit`: [`GroupCommitter`], many writers into few durable
//!   commits, with a durability future per write (PERSISTED acks hang on it).
//! - `journal`: [`JournalRecord`], the event journal's rows.
//! - `error`: [`PersistenceError`].
//! - `testing`: the conformance suite and a fault-injecting wrapper.
//! - `bench` (feature `bench`): the PERSISTED-write benchmark driver every
//!   backend's bench shares.
//!
//! # Invariants
//!
//! What persistence promises is listed, with the tests that enforce each
//! promise, in `INVARIANTS.md` (I4, I22, I26 to I29);
//! `tests/tests/t01_repository.rs` fails when a cited test is gone.

mod backend;
#[cfg(feature = "bench")]
pub mod bench;
mod codec;
mod entry;
mod error;
pub mod group_commit;
pub mod journal;
mod memory;
mod redb_backend;
mod redb_open;
pub mod testing;

pub use backend::{plan_kinds, validate_op, PersistResult, PersistenceBackend};
pub use codec::FORMAT_VERSION;
pub use entry::{LoadedMap, Slot, StoreOp, StoredEntry, StoredMap, WriteBatch};
pub use error::PersistenceError;
pub use group_commit::{
    AckMode, CommitError, CommitObserver, CommitStats, Durable, GroupCommitConfig, GroupCommitter,
    Receipt,
};
pub use journal::JournalRecord;
pub use memory::{MemoryBackend, MemoryStore};
pub use redb_backend::{RedbBackend, RedbOptions, DB_FILE_NAME};
