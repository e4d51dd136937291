//! The CRDT maps that hold a node's data: [`LwwMap`] (last-write-wins) and
//! [`OrMap`] (observed-remove, add-wins).
//!
//! # Contract shared by both maps
//!
//! - They are pure data structures: they never read a clock. The caller folds
//!   every incoming timestamp into the node's HLC *before* merging, and
//!   passes wall-clock time as `now_ms` wherever TTLs matter.
//! - Merges are convergent: applying any multiset of ops in any order, with
//!   any repetition, yields the same state and the same Merkle root (the
//!   property tests in `tests/t10_crdt_laws.rs` check this). Pruning old
//!   tombstones is the one deliberate exception.
//! - Each map keeps its Merkle trie current on every change (O(depth) plus,
//!   for OR maps, the entry hash of the touched key).
//!
//! # Memory layout
//!
//! Records are stored compactly and converted to the core [`LwwRecord`] /
//! [`OrRecord`] only at the API edge: node ids are interned per map (a record
//! holds a `u32`, the TTL's presence folded into its top bit); an LWW record
//! keeps key, value and TTL in a single boxed slice. Records are bucketed by
//! Merkle leaf, so a leaf's keys are listed without a second copy of them.
//!
//! # Layout
//!
//! - `stamp`: the packed timestamp + TTL and the per-map node-id interner.
//! - `leaves`: the leaf-bucketed hash table the OR map stores keys in.
//! - `lww_store`: the 40-byte LWW slot (key, value and TTL in one allocation)
//!   and its leaf-bucketed table.
//! - `lww_map`: [`LwwMap`].
//! - `or_map`: [`OrMap`].
//! - `partition_digest`: [`partition_digest::KeyedTrie`], the trie plus the
//!   per-partition digests anti-entropy repair compares.
//! - `outcome`: what a merge did ([`LwwMergeOutcome`], [`OrApplyOutcome`], ...).
//!
//! [`LwwRecord`]: hangar_core::LwwRecord
//! [`OrRecord`]: hangar_core::OrRecord

mod leaves;
pub mod lww_map;
mod lww_store;
pub mod or_map;
pub mod outcome;
pub mod partition_digest;
mod stamp;

pub use lww_map::LwwMap;
pub use or_map::OrMap;
pub use outcome::{LwwMergeOutcome, OrApplyOutcome, OrMergeKeyOutcome, TombstoneOutcome};
