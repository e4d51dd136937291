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
//!
//! # Invariants
//!
//! | id | statement | enforced by |
//! |---|---|---|
//! | HG-PER-001 | A write whose durability future resolved `Ok` survives SIGKILL of the process. | `tests/crash_kill9.rs` `t10_acked_writes_survive_sigkill` |
//! | HG-PER-002 | The crash checker catches a committer that acks before committing. | `tests/crash_kill9.rs` `t11_negative_control_ack_before_commit_is_caught` |
//! | HG-PER-003 | No ack before the group's commit returned. | `group_commit::tests::t47_ack_waits_for_the_commit_to_return` |
//! | HG-PER-004 | A failed commit fails its whole group and stops the committer (fail-stop); nothing acked is lost. | `group_commit::failure_tests::t50..t52` |
//! | HG-PER-005 | Coalescing a group gives the same stored state as committing each request alone. | `group_commit::failure_tests::t60_prop_grouped_commits_equal_one_by_one` |
//! | HG-PER-006 | A batch is atomic: a rejected batch writes nothing. | suite `t22_rejected_batch_writes_nothing` |
//! | HG-PER-007 | `ttl_ms` and LWW tombstones round-trip. | suite `t11`, `codec::tests::t20` |
//! | HG-PER-008 | Stored bytes of an unknown format version are refused, never misread. | `codec::tests::t12` |
//! | HG-PER-009 | A batch is atomic across a crash. | NAKED: relies on redb's commit; no torn-write test |
//! | HG-PER-012 | A store file that exists but cannot be read (empty, truncated, corrupt page, marker without file) is refused at open, never taken for an empty store; `reset_damaged` moves it aside unchanged. | `redb_open::tests` `t10`-`t17` |
//! | HG-PER-013 | Damage met at run time fails the redb backend for good: no engine panic escapes a call, every later call answers `Damaged`. | `redb_open::tests::t14`, module tests `damage::t72` |

mod backend;
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
