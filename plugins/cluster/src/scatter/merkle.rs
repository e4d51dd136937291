//! Client Merkle sync over every partition of the cluster.
//!
//! A trie node's hash is a wrapping `u32` sum of item hashes
//! (`hangar_core::merkle`), and every key lies in exactly one partition, so
//! the cluster-wide node is a sum of shares: the coordinator makes a read
//! plan from its partition table (`replicas`: at EVENTUAL each partition's
//! serving replica is this node if it holds it, else the replica with the
//! lowest round trip; at QUORUM and STRONG its owner), asks each serving
//! node for its share restricted to the partitions it SERVES in that plan
//! (`StorageAccessor::merkle_node_in`; this node's own share is read from
//! its storage without a hop), adds the shares child by child (wrapping)
//! for an inner node, and unites the records for a leaf (the sets are
//! disjoint, so no key comes twice).
//!
//! # Exactness
//!
//! An answer is never partial. The gather is repeated, with a short
//! growing backoff, while a serving node says it does not hold one of its
//! partitions in memory (it is loading it, or its table moved on), while a
//! serving node does not answer (it died: at EVENTUAL the next gather
//! leaves it out and asks the next replica; at STRONG the table moves its
//! partitions to their backups), or when the coordinator's table version
//! changed during the gather. Past [`MERKLE_DEADLINE`] the request fails
//! with `UNAVAILABLE`, naming the node and the reason. A node that serves
//! every partition (a node alone, or at EVENTUAL a node holding a copy of
//! everything) answers from its storage with no hop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RString, RVec, Tuple2};
use hangar_core::merkle::{TriePath, MERKLE_DEPTH};
use hangar_core::module::partition::PartitionSet;
use hangar_core::module::storage_types::{MerkleNode, MerkleRequest, MerkleResponse};
use hangar_core::{ErrorKind, ModuleError, ModuleResult};

use super::{remote_error, Scatter, GATHER_TIMEOUT};
use crate::membership::PeerHealth;
use crate::transport::{Channel, TransportError};
use crate::wire::{self, MerkleShare, QueryCall, WireMerkle};

/// How long a client's Merkle request may take, retries included, before
/// it fails rather than answer without some partitions.
pub const MERKLE_DEADLINE: Duration = Duration::from_secs(10);

/// First wait between two gathers; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Why one member's share is missing from a gather.
enum Miss {
    /// Worth another gather: not held yet, no answer, unknown address.
    Retry(String),
    /// The request itself is wrong (a bad path): fail at once.
    Fatal(ModuleError),
}

fn share_of(r: MerkleResponse) -> MerkleShare {
    match r.node {
        MerkleNode::Buckets(b) => MerkleShare::Buckets(b.into_iter().map(|t| (t.0, t.1)).collect()),
        MerkleNode::Leaf(records) => MerkleShare::Leaf {
            records: records.into_vec(),
            tombstones: r.tombstones.into_iter().map(RString::into_string).collect(),
        },
    }
}

/// The sum of the shares (see the module docs); `leaf` says which node
/// kind the path names.
fn merge(leaf: bool, shares: Vec<MerkleShare>) -> MerkleResponse {
    if leaf {
        let mut records = Vec::new();
        let mut tombstones = BTreeSet::new();
        for s in shares {
            if let MerkleShare::Leaf {
                records: r,
                tombstones: t,
            } = s
            {
                records.extend(r);
                tombstones.extend(t);
            }
        }
        records.sort_by(|a, b| a.key.cmp(&b.key));
        return MerkleResponse {
            node: MerkleNode::Leaf(records.into()),
            tombstones: tombstones.into_iter().map(RString::from).collect(),
        };
    }
    let mut sums: BTreeMap<u8, u32> = BTreeMap::new();
    for s in shares {
        if let MerkleShare::Buckets(b) = s {
            for (c, h) in b {
                let e = sums.entry(c).or_insert(0);
                *e = e.wrapping_add(h);
            }
        }
    }
    MerkleResponse {
        node: MerkleNode::Buckets(sums.into_iter().map(|(c, h)| Tuple2(c, h)).collect()),
        tombstones: RVec::new(),
    }
}

impl Scatter {
    /// One node of a map's Merkle tree over every partition of the cluster
    /// (see the module docs).
    ///
    /// # Errors
    /// `INVALID_INPUT` for a path that is not a trie path (or another
    /// refusal of the request by a node's storage); `UNAVAILABLE` when no
    /// replica allowed at the read's consistency could give the share of
    /// some partitions within [`MERKLE_DEADLINE`].
    pub async fn merkle_node(&self, request: MerkleRequest) -> ModuleResult<MerkleResponse> {
        let Some(path) = TriePath::parse(&request.path) else {
            return Err(ModuleError::invalid(format!(
                "Merkle path {:?} of map {:?} is not a trie path; expected at most \
                 {MERKLE_DEPTH} lowercase hex digits",
                request.path, request.map
            )));
        };
        let leaf = path.depth == MERKLE_DEPTH;
        let start = Instant::now();
        let deadline = start + MERKLE_DEADLINE;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        let level = self.level(&request.map, request.consistency);
        // Nodes that did not give their share in an earlier gather.
        let mut excluded: BTreeSet<String> = BTreeSet::new();
        loop {
            attempts += 1;
            let table = self.table.current();
            let plan = self.plan(&table, level, &excluded);
            if plan.unserved() > 0 {
                let why = format!(
                    "no live replica may serve {} partitions at {level:?} (left out after \
                     failing: {excluded:?})",
                    plan.unserved()
                );
                // Left-out nodes may have recovered (a partition being
                // loaded); the next gather may ask them again.
                excluded.clear();
                self.wait(&mut backoff, deadline, attempts, start, &why)
                    .await?;
                continue;
            }
            let owners = plan.sets;
            if owners.len() == 1 && owners.contains_key(&self.node_id) {
                // This node serves everything: its storage's own tree.
                self.count_read(&table, &self.node_id, &PartitionSet::ALL);
                match self
                    .storage
                    .merkle_node_in(request.clone(), PartitionSet::ALL)
                    .await
                {
                    Ok(r) => return Ok(r),
                    Err(e) if e.kind != ErrorKind::UNAVAILABLE => return Err(e),
                    Err(e) => {
                        let why = format!("this node: {}", e.message);
                        self.wait(&mut backoff, deadline, attempts, start, &why)
                            .await?;
                        continue;
                    }
                }
            }
            let gathered = futures::future::join_all(owners.iter().map(|(node, set)| {
                self.count_read(&table, node, set);
                self.share(node, *set, &request, deadline)
            }))
            .await;
            let mut shares = Vec::with_capacity(gathered.len());
            let mut retry = None;
            for (node, g) in owners.keys().zip(gathered) {
                match g {
                    Ok(s) => shares.push(s),
                    Err(Miss::Fatal(e)) => return Err(e),
                    Err(Miss::Retry(why)) => {
                        if super::replicas::backups_may_serve(level) {
                            excluded.insert(node.clone());
                        }
                        retry = Some(why);
                    }
                }
            }
            let moved = self.table.current().version != table.version;
            if retry.is_none() && !moved {
                return Ok(merge(leaf, shares));
            }
            let why = retry.unwrap_or_else(|| {
                format!(
                    "the partition table moved from version {} during the gather",
                    table.version
                )
            });
            self.wait(&mut backoff, deadline, attempts, start, &why)
                .await?;
        }
    }

    /// Sleeps before the next gather; fails when the deadline would pass.
    async fn wait(
        &self,
        backoff: &mut Duration,
        deadline: Instant,
        attempts: u32,
        start: Instant,
        why: &str,
    ) -> ModuleResult<()> {
        if Instant::now() + *backoff >= deadline {
            return Err(ModuleError::new(
                ErrorKind::UNAVAILABLE,
                format!(
                    "the Merkle tree over the whole cluster could not be gathered: {attempts} \
                     attempts in {} ms; last: {why}; expected a replica of every partition to \
                     answer for it within {} s",
                    start.elapsed().as_millis(),
                    MERKLE_DEADLINE.as_secs()
                ),
            ));
        }
        tracing::debug!(attempts, why, "Merkle gather retried");
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }

    /// `node`'s share of the requested node for `partitions`.
    async fn share(
        &self,
        node: &str,
        partitions: PartitionSet,
        request: &MerkleRequest,
        deadline: Instant,
    ) -> Result<MerkleShare, Miss> {
        if node == self.node_id {
            return match self
                .storage
                .merkle_node_in(request.clone(), partitions)
                .await
            {
                Ok(r) => Ok(share_of(r)),
                Err(e) if e.kind == ErrorKind::UNAVAILABLE => {
                    Err(Miss::Retry(format!("this node ({node}): {}", e.message)))
                }
                Err(e) => Err(Miss::Fatal(e)),
            };
        }
        let Some(peer) = self.membership.peers().get(node).cloned() else {
            return Err(Miss::Retry(format!(
                "node {node} serves {} partitions but is not a known member",
                partitions.len()
            )));
        };
        if peer.health == PeerHealth::Failed {
            return Err(Miss::Retry(format!(
                "node {node} serves {} partitions but failed; waiting for the table to move them",
                partitions.len()
            )));
        }
        let call = QueryCall::Merkle(WireMerkle {
            map: request.map.to_string(),
            kind: request.kind,
            path: request.path.to_string(),
            partitions: partitions.words,
        });
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(GATHER_TIMEOUT)
            .max(Duration::from_millis(1));
        match self
            .transport
            .request(peer.addr, Channel::Query, wire::encode(&call), left)
            .await
        {
            Ok(body) => match wire::decode::<MerkleShare>(&body, "Merkle share") {
                Ok(MerkleShare::NotHeld(why)) => Err(Miss::Retry(format!("node {node}: {why}"))),
                Ok(s) => Ok(s),
                Err(e) => Err(Miss::Fatal(ModuleError::internal(format!(
                    "node {node}: {e}"
                )))),
            },
            Err(e @ TransportError::Remote(_)) => Err(Miss::Fatal(remote_error(node, &e))),
            Err(e) => Err(Miss::Retry(format!(
                "node {node} did not answer for its {} partitions: {e}",
                partitions.len()
            ))),
        }
    }

    /// Serves a coordinator's [`WireMerkle`]: this node's share, or
    /// [`MerkleShare::NotHeld`] when storage does not hold a partition.
    pub(crate) async fn on_merkle(&self, m: WireMerkle) -> Result<MerkleShare, String> {
        let request = MerkleRequest {
            map: m.map.into(),
            kind: m.kind,
            path: m.path.into(),
            consistency: abi_stable::std_types::ROption::RNone,
        };
        match self
            .storage
            .merkle_node_in(request, PartitionSet::from_words(m.partitions))
            .await
        {
            Ok(r) => Ok(share_of(r)),
            Err(e) if e.kind == ErrorKind::UNAVAILABLE => {
                Ok(MerkleShare::NotHeld(e.message.into_string()))
            }
            Err(e) => Err(e.message.into_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::module::storage_types::{KeyRecord, RecordState};

    #[test]
    fn t10_shares_add_up_child_by_child_and_leaves_unite() {
        let a = MerkleShare::Buckets(vec![(b'1', 5), (b'4', u32::MAX)]);
        let b = MerkleShare::Buckets(vec![(b'4', 2), (b'9', 0)]);
        let r = merge(false, vec![a, b]);
        assert_eq!(
            r.node,
            MerkleNode::Buckets(vec![Tuple2(b'1', 5), Tuple2(b'4', 1), Tuple2(b'9', 0)].into())
        );
        let rec = |k: &str| KeyRecord {
            key: k.into(),
            state: RecordState::Missing,
        };
        let x = MerkleShare::Leaf {
            records: vec![rec("b")],
            tombstones: vec!["t2".into(), "t1".into()],
        };
        let y = MerkleShare::Leaf {
            records: vec![rec("a")],
            tombstones: vec!["t1".into()],
        };
        let r = merge(true, vec![x, y]);
        assert_eq!(r.node, MerkleNode::Leaf(vec![rec("a"), rec("b")].into()));
        assert_eq!(
            r.tombstones,
            RVec::from(vec![RString::from("t1"), RString::from("t2")])
        );
    }
}
