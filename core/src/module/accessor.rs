//! The storage accessor: what the storage module lends the cluster module
//! (cross-wiring, step 4 of start-up) so that replication, reassignment and
//! repair can apply replicated changes, read records and scan partitions.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::digest::{DigestItem, DigestRequest};
use super::partition::PartitionSet;
use super::storage_types::{
    KeyRecord, MapInfo, MerkleRequest, MerkleResponse, OpStatus, Origin, QueryRequest,
    QueryResponse, QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use super::ModuleFuture;
use crate::error::ModuleResult;
use crate::types::{KeyedOp, MapKind};

/// Position in a partition scan.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCursor {
    /// Map of the last item returned.
    pub map: RString,
    /// Key of the last item returned.
    pub key: RString,
}

/// A request for one page of the records of a partition.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    /// The partition.
    pub partition: u32,
    /// Continue after this item; `None` starts at the beginning.
    pub after: ROption<ScanCursor>,
    /// Most items in the page (at least 1).
    pub limit: u32,
}

/// One record found by a scan.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanItem {
    /// Map name.
    pub map: RString,
    /// Kind of the map.
    pub kind: MapKind,
    /// The key and its state.
    pub record: KeyRecord,
}

/// A page of a partition scan.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    /// Items ordered by (map, key).
    pub items: RVec<ScanItem>,
    /// Where the next page starts; `None` when the scan is complete.
    pub next: ROption<ScanCursor>,
}

/// Storage operations the cluster module may call.
///
/// # Contract
/// - `apply_replicated` MUST merge with the same CRDT rules as client writes
///   (a stale change never overwrites newer data) and MUST notify local
///   live queries and change sinks, with the given origin.
/// - `scan_partition` MUST return every key of every map whose partition is
///   `partition`, each exactly once across pages, if nothing changes
///   meanwhile; concurrent writes may or may not be seen.
/// - `query`, `subscribe`, `unsubscribe` and `search` run on this node's
///   storage alone, with the storage module's own semantics (the cluster
///   module scatters them and gathers the answers); they see every copy
///   held here, owned or backup: the caller filters.
/// - `merge_pages` MUST order and cut rows exactly as `query` would have had
///   all rows been local: the same sort (ties by key) and the same `limit`;
///   it MUST NOT return a key twice (the first page's row wins).
/// - `merkle_node_in` MUST answer exactly the share of the map's Merkle
///   tree that the keys of the given partitions make (see the method), or
///   fail with [`crate::ErrorKind::UNAVAILABLE`] when this node's memory
///   does not reflect every one of those partitions; it MUST NOT answer a
///   share that silently lacks keys.
/// - None of these calls may call back into the cluster module synchronously.
pub trait StorageAccessor: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Applies changes that a peer replicated or repair found missing.
    fn apply_replicated(
        &self,
        changes: RVec<KeyedOp>,
        origin: Origin,
    ) -> ModuleFuture<RVec<OpStatus>>;
    /// Reads keys of a map.
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>>;
    /// One page of a partition's records.
    fn scan_partition(&self, request: ScanRequest) -> ModuleFuture<ScanPage>;
    /// The maps held.
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>>;
    /// The tombstoned tags of an OR map.
    fn or_tombstones(&self, map: RString) -> ModuleFuture<RVec<RString>>;
    /// Resolves once every change applied before the call is durable (a
    /// backup acknowledges PERSISTED replication after it). Resolves at once
    /// when nothing is persisted (a memory backend).
    ///
    /// # Errors
    /// When persistence failed.
    fn durable_barrier(&self) -> ModuleFuture<()>;
    /// The partition table changed (now at `version`): the storage module
    /// loads, in the background, what it now holds (owner or backup) from
    /// persistence into the maps it has loaded, and releases from memory what
    /// it no longer holds (the persisted copy stays). MUST NOT block.
    fn partitions_changed(&self, version: u64);

    /// Runs a query once on this node's storage (see
    /// [`super::storage::StorageModule::query`]).
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse>;
    /// Registers a live query on this node's storage (see
    /// [`super::storage::StorageModule::subscribe`]); `id` MUST NOT collide
    /// with the host's ids (the cluster module uses ids with the top bit set).
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse>;
    /// Stops a live query registered with [`Self::subscribe`]; true if it
    /// existed.
    fn unsubscribe(&self, id: SubscriptionId) -> bool;
    /// Full-text search on this node's storage.
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>>;
    /// Merges result pages from several nodes into the page `request` would
    /// give over all their rows: sorted by the query's `sort` (ties by key,
    /// unsorted queries by key), cut at its `limit`, without duplicate keys.
    ///
    /// # Errors
    /// When `request.query` is not a valid query (the same error `query`
    /// gives).
    fn merge_pages(
        &self,
        request: QueryRequest,
        pages: RVec<QueryResponse>,
    ) -> ModuleResult<QueryResponse>;

    /// One node of a map's Merkle tree restricted to the keys whose
    /// partition ([`crate::partition_of`]) is in `partitions`: what the
    /// cluster module sums over the nodes that own those partitions so that
    /// a client's Merkle sync covers the whole cluster.
    ///
    /// For an inner path (the root is `""`), the children that hold at
    /// least one such key, each with the wrapping sum of those keys' item
    /// hashes (LWW: the record's item hash; OR: the key's entry hash), so
    /// that the answers for disjoint sets add up to the answer for their
    /// union, and the answer for every partition is the unrestricted
    /// [`super::storage::StorageModule::merkle_node`]. For a leaf path, the
    /// records of those keys in that leaf, sorted by key (for an OR map,
    /// with the map's tombstones, as `merkle_node`). A map this node does
    /// not know answers an empty node.
    ///
    /// Cost: a restricted inner node visits every key under its path
    /// (O(keys under the path); the root visits the whole map); a request
    /// for every partition is answered from the trie's sums, O(1).
    ///
    /// # Errors
    /// - [`crate::ErrorKind::INVALID_INPUT`] for a path that is not up to
    ///   three lowercase hex digits;
    /// - [`crate::ErrorKind::UNAVAILABLE`] when the map's memory does not
    ///   reflect one of `partitions` (not held by this node, or still being
    ///   loaded after a table change): the answer would lack keys; the
    ///   caller retries or asks the partition's current owner.
    fn merkle_node_in(
        &self,
        request: MerkleRequest,
        partitions: PartitionSet,
    ) -> ModuleFuture<MerkleResponse>;

    /// Per-partition digests of this node's maps at one level (see
    /// [`super::digest`]): what anti-entropy repair compares between a
    /// partition's owner and its backups, walking down only the buckets
    /// that differ.
    ///
    /// Cost: kept current by storage on every change (client and
    /// replicated writes, TTL expiry and GC, releases, loads), so a
    /// partition's digest is O(1), its mid buckets O(256), the leaves under
    /// a mid bucket O(16); only `Keys` visits keys (those of the asked
    /// leaves). Answers are sorted by (map, partition, bucket, key) and list
    /// only buckets that hold keys; a map this node does not know answers
    /// nothing.
    ///
    /// # Errors
    /// - [`crate::ErrorKind::INVALID_INPUT`] for a partition `>=`
    ///   [`crate::PARTITION_COUNT`], a bucket out of range, or not exactly
    ///   one partition for `Leaves` / `Keys`;
    /// - [`crate::ErrorKind::UNAVAILABLE`] when this node's memory does not
    ///   reflect one of the partitions (not held here, or still loading
    ///   after a table change): the digests would lack keys.
    fn partition_digests(&self, request: DigestRequest) -> ModuleFuture<RVec<DigestItem>>;
}
