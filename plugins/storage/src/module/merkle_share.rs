//! A map's Merkle tree restricted to some partitions: the share of a tree
//! node that the keys of those partitions make on this node, which the
//! cluster module sums over the partitions' owners so that a client's
//! Merkle sync covers every partition of the cluster (see
//! `StorageAccessor::merkle_node_in`).
//!
//! # Contract
//!
//! - The answer is computed under the map's lock from the map's memory,
//!   and only when the map's held set (`MapSlot::held`, read under the same
//!   lock) contains every asked partition; otherwise the call fails with
//!   `UNAVAILABLE` naming the missing partitions, because memory would lack
//!   their keys (not held here, or not loaded yet after a table change).
//! - Asked for every partition, it answers from the trie's sums (O(1) per
//!   inner node), exactly as `merkle_node`. Otherwise an inner node visits
//!   every key under its path (O(keys under the path); the root visits the
//!   whole map) and a leaf filters its records, O(keys in the leaf).
//! - A map this node does not know answers an empty node: it has no key in
//!   any partition here.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec, Tuple2};
use hangar_core::merkle::{buckets_of_items, Buckets, TriePath, MERKLE_DEPTH};
use hangar_core::module::partition::PartitionSet as WirePartitions;
use hangar_core::module::storage_types::{
    KeyRecord, MerkleNode, MerkleRequest, MerkleResponse, RecordState,
};
use hangar_core::{partition_of, ErrorKind, MapKind, ModuleError, ModuleResult};

use super::core::Core;
use super::map_slot::MapData;
use super::partition_set::PartitionSet;

fn bucket_node(b: Buckets) -> MerkleNode {
    MerkleNode::Buckets(
        b.into_iter()
            .map(|(c, h)| Tuple2(u8::try_from(c).unwrap_or(b'?'), h))
            .collect(),
    )
}

/// The trie path of a Merkle request.
///
/// # Errors
/// `INVALID_INPUT` for a path that is not up to three lowercase hex digits.
pub(super) fn parse_path(request: &MerkleRequest) -> ModuleResult<TriePath> {
    let path = request.path.as_str();
    TriePath::parse(path).ok_or_else(|| {
        ModuleError::invalid(format!(
            "Merkle path {path:?} of map {:?} is not a trie path; expected at most \
             {MERKLE_DEPTH} lowercase hex digits",
            request.map
        ))
    })
}

/// An empty node at `parsed`: no records for a leaf, no buckets otherwise.
pub(super) fn empty_node(parsed: TriePath) -> MerkleResponse {
    MerkleResponse {
        node: if parsed.depth == MERKLE_DEPTH {
            MerkleNode::Leaf(RVec::new())
        } else {
            MerkleNode::Buckets(RVec::new())
        },
        tombstones: RVec::new(),
    }
}

/// The node at `path` of a map's tree of `kind`, over the keys `pick`
/// selects (`None`: every key, answered from the trie's sums): the
/// occupied child buckets of an inner path, or the records of a leaf path;
/// for an OR leaf, the map's tombstones too. A map of the other kind
/// answers an empty node. Serves `merkle_node` (every key) and
/// `merkle_node_in` (the keys of some partitions).
pub(super) fn trie_node(
    data: &MapData,
    kind: MapKind,
    path: &str,
    parsed: TriePath,
    pick: Option<&dyn Fn(&str) -> bool>,
) -> MerkleResponse {
    let leaf = parsed.depth == MERKLE_DEPTH;
    let keep = |k: &str| pick.is_none_or(|p| p(k));
    match (data, kind) {
        (MapData::Lww(m), MapKind::Lww) if leaf => MerkleResponse {
            node: MerkleNode::Leaf(
                m.records_in_leaf(path)
                    .into_iter()
                    .filter(|(k, _)| keep(k))
                    .map(|(k, r)| KeyRecord {
                        key: k.into(),
                        state: RecordState::Lww(r),
                    })
                    .collect(),
            ),
            tombstones: RVec::new(),
        },
        (MapData::Lww(m), MapKind::Lww) => MerkleResponse {
            node: bucket_node(match pick {
                None => m.merkle_buckets(path),
                Some(p) => buckets_of_items(parsed, m.item_hashes_under(parsed, p)),
            }),
            tombstones: RVec::new(),
        },
        (MapData::Or(m), MapKind::Or) if leaf => {
            let mut tombstones: Vec<&str> = m.tombstones().collect();
            tombstones.sort_unstable();
            MerkleResponse {
                node: MerkleNode::Leaf(
                    m.keys_in_leaf(path)
                        .into_iter()
                        .filter(|k| keep(k))
                        .map(|k| KeyRecord {
                            key: k.into(),
                            state: RecordState::Or(m.records(k).into()),
                        })
                        .collect(),
                ),
                tombstones: tombstones.into_iter().map(RString::from).collect(),
            }
        }
        (MapData::Or(m), MapKind::Or) => MerkleResponse {
            node: bucket_node(match pick {
                None => m.merkle_buckets(path),
                Some(p) => buckets_of_items(parsed, m.entry_hashes_under(parsed, p)),
            }),
            tombstones: RVec::new(),
        },
        _ => empty_node(parsed),
    }
}

impl Core {
    /// See the module docs.
    ///
    /// # Errors
    /// `INVALID_INPUT` for a path that is not a trie path; `UNAVAILABLE`
    /// when a partition of `partitions` is not held in memory.
    pub(crate) async fn merkle_node_in(
        self: &Arc<Self>,
        request: &MerkleRequest,
        partitions: WirePartitions,
    ) -> ModuleResult<MerkleResponse> {
        let parsed = parse_path(request)?;
        let want = PartitionSet::from(partitions);
        let Some(slot) = self.loaded_slot(&request.map).await? else {
            return Ok(empty_node(parsed));
        };
        let st = slot.state.lock();
        let missing = want.minus(&slot.held.get());
        if !missing.is_empty() {
            let first: Vec<u32> = missing.iter().take(8).collect();
            return Err(ModuleError::new(
                ErrorKind::UNAVAILABLE,
                format!(
                    "map {:?}: {} of the {} partitions asked for are not held in this node's \
                     memory (first: {first:?}); expected only partitions this node owns or backs \
                     up and has loaded; retry once the partition table change is applied",
                    request.map,
                    missing.len(),
                    want.len()
                ),
            ));
        }
        // Every partition: the trie's own sums (what `merkle_node` answers).
        let pick = |k: &str| want.contains(partition_of(k));
        let pick: Option<&dyn Fn(&str) -> bool> = if want == PartitionSet::ALL {
            None
        } else {
            Some(&pick)
        };
        Ok(trie_node(
            &st.data,
            request.kind,
            request.path.as_str(),
            parsed,
            pick,
        ))
    }
}
