//! Per-partition digests of the maps a node holds: what anti-entropy repair
//! compares between a partition's owner and its backups (see
//! [`super::accessor::StorageAccessor::partition_digests`]).
//!
//! Four levels, each a refinement of the one before:
//!
//! - [`DigestLevel::Partitions`]: per (map, partition), the wrapping sum of
//!   the item hashes of the map's keys in that partition (LWW: the record's
//!   item hash; OR: the key's entry hash, as the Merkle tries of
//!   [`crate::merkle`] sum them) and how many keys;
//! - [`DigestLevel::Tops`]: per (map, partition), the 16 depth-1 nodes of
//!   the Merkle trie restricted to the partition (`leaf >> 8`);
//! - [`DigestLevel::Mids`]: the depth-2 nodes (`leaf >> 4`, 0..256) of one
//!   (map, partition) under given depth-1 nodes;
//! - [`DigestLevel::Leaves`]: the Merkle leaves (0..4096) of one (map,
//!   partition) under given depth-2 nodes;
//! - [`DigestLevel::Keys`]: per key of given leaves of one (map, partition),
//!   its item hash (and, for LWW, its timestamp, so that the side holding
//!   the newer record is known without moving both).
//!
//! Two nodes that hold the same records of a partition answer the same
//! digests at every level; a differing record changes the sum of its
//! bucket at every level (unless hashes collide).

use abi_stable::std_types::{RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use crate::types::MapKind;

/// Which level of the digests a [`DigestRequest`] asks for.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DigestLevel {
    /// One digest per (map, partition) for every map (`map` is ignored).
    Partitions,
    /// The occupied depth-1 nodes of `map` in each of `partitions` (`under`
    /// is ignored).
    Tops,
    /// The occupied depth-2 nodes of `map` in the single partition of
    /// `partitions`, under the depth-1 nodes listed in `under`.
    Mids,
    /// The occupied leaves of `map` in the single partition of
    /// `partitions`, under the depth-2 nodes listed in `under`.
    Leaves,
    /// The keys of `map` in the single partition of `partitions`, in the
    /// leaves listed in `under`.
    Keys,
}

/// A request for per-partition digests.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRequest {
    /// The level asked for.
    pub level: DigestLevel,
    /// The map (ignored for [`DigestLevel::Partitions`]).
    pub map: RString,
    /// The partitions (exactly one for `Mids`, `Leaves` and `Keys`).
    pub partitions: RVec<u32>,
    /// Depth-1 nodes (`Mids`, each `< 16`), depth-2 nodes (`Leaves`, each
    /// `< 256`) or leaves (`Keys`, each `< 4096`); ignored otherwise.
    pub under: RVec<u16>,
}

/// One digest of a [`DigestRequest`]'s answer.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestItem {
    /// The map.
    pub map: RString,
    /// Its kind.
    pub kind: MapKind,
    /// The partition.
    pub partition: u32,
    /// The bucket: 0 for `Partitions`, the trie node's prefix for `Tops`
    /// (`leaf >> 8`), `Mids` (`leaf >> 4`) and `Leaves` (the leaf), the
    /// key's leaf for `Keys`.
    pub bucket: u16,
    /// The key (`Keys` only; empty otherwise).
    pub key: RString,
    /// Wrapping sum of the item hashes (`Keys`: the key's item hash).
    pub hash: u32,
    /// Number of keys summed (1 for `Keys`).
    pub count: u32,
    /// `Keys` of an LWW map: the record's timestamp as `millis << 16 |
    /// min(counter, 0xffff)`, ordered as the timestamps are except that
    /// equal values may hide a difference (node id, large counters); 0
    /// otherwise.
    pub stamp: u64,
}
