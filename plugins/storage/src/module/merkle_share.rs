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
        let path = request.path.as_str();
        let Some(parsed) = TriePath::parse(path) else {
            return Err(ModuleError::invalid(format!(
                "Merkle path {path:?} of map {:?} is not a trie path; expected at most \
                 {MERKLE_DEPTH} lowercase hex digits",
                request.map
            )));
        };
        let want = PartitionSet::from(partitions);
        let leaf = parsed.depth == MERKLE_DEPTH;
        let Some(slot) = self.loaded_slot(&request.map).await? else {
            return Ok(MerkleResponse {
                node: if leaf {
                    MerkleNode::Leaf(RVec::new())
                } else {
                    MerkleNode::Buckets(RVec::new())
                },
                tombstones: RVec::new(),
            });
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
        let all = want == PartitionSet::ALL;
        let pick = |k: &str| want.contains(partition_of(k));
        Ok(match (&st.data, request.kind) {
            (MapData::Lww(m), MapKind::Lww) if leaf => MerkleResponse {
                node: MerkleNode::Leaf(
                    m.records_in_leaf(path)
                        .into_iter()
                        .filter(|(k, _)| pick(k))
                        .map(|(k, r)| KeyRecord {
                            key: k.into(),
                            state: RecordState::Lww(r),
                        })
                        .collect(),
                ),
                tombstones: RVec::new(),
            },
            (MapData::Lww(m), MapKind::Lww) => MerkleResponse {
                node: bucket_node(if all {
                    m.merkle_buckets(path)
                } else {
                    buckets_of_items(parsed, m.item_hashes_under(parsed, pick))
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
                            .filter(|k| pick(k))
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
                node: bucket_node(if all {
                    m.merkle_buckets(path)
                } else {
                    buckets_of_items(parsed, m.entry_hashes_under(parsed, pick))
                }),
                tombstones: RVec::new(),
            },
            _ => MerkleResponse {
                node: if leaf {
                    MerkleNode::Leaf(RVec::new())
                } else {
                    MerkleNode::Buckets(RVec::new())
                },
                tombstones: RVec::new(),
            },
        })
    }
}
