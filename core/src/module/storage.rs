//! The storage-module trait: maps, persistence, live queries, search, write
//! acks, Merkle sync.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};

use super::accessor::StorageAccessor;
use super::journal::{JournalFilter, JournalPage, JournalReadRequest, JournalSink};
use super::partition::PartitionView;
use super::services::{ClockService, MetricsSink};
use super::storage_types::{
    AckId, AckResult, ApplyBatch, ChangeSink, KeyRecord, MapInfo, MerkleRequest, MerkleResponse,
    OpOutcome, QueryRequest, QueryResponse, QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use super::{ModuleFuture, ModuleInfo};
use crate::types::{MapKind, WriteConcern};

/// What the storage module is built with (step 3 of start-up).
#[derive(Clone)]
pub struct StorageDeps {
    /// The node's clock.
    pub clock: Arc<dyn ClockService>,
    /// Where to report metrics.
    pub metrics: Arc<dyn MetricsSink>,
    /// The cluster module's partition view: only related keys are loaded.
    pub partitions: Arc<dyn PartitionView>,
}

/// The storage module.
///
/// # Contract
///
/// Lifecycle: `start` opens persistence and MUST complete before any other
/// async call is made; `shutdown` drains in-flight writes, flushes and closes;
/// after it every call fails with [`crate::ErrorKind::SHUT_DOWN`].
///
/// Writes: `apply` merges each op with CRDT rules under the node's HLC (a
/// stale op MUST NOT overwrite newer data, in memory or on disk), fans the
/// applied changes out to live queries and the change sink, registers an
/// acknowledgement per non-rejected op, and resolves once every op is merged
/// (so MEMORY and APPLIED are reached when it returns). PERSISTED MUST NOT be
/// reached before the op's commit is durable. REPLICATED is reported by the
/// caller through `notify_acks` (the cluster module decides it).
/// `await_acks` resolves each ack when its requested level is reached or its
/// timeout passes (then `success == false`, with the highest level reached).
/// Every ack id returned by `apply` MUST be awaited once; an ack that is never
/// awaited is forgotten some time after its timeout.
///
/// Maps load lazily on first use; concurrent first uses wait for one load;
/// writes made during a load are not lost; a failed load surfaces as an error
/// and is retried on the next use.
pub trait StorageModule: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Who this module is.
    fn info(&self) -> ModuleInfo;
    /// Opens persistence and starts background work.
    fn start(&self) -> ModuleFuture<()>;
    /// Drains, flushes and closes. Idempotent.
    fn shutdown(&self) -> ModuleFuture<()>;

    /// Applies a batch of writes; one outcome per op, in order.
    fn apply(&self, batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>>;
    /// Reports that the writes behind `acks` reached `level` (REPLICATED).
    /// Unknown ids are ignored; repeated notifications are harmless.
    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern);
    /// Waits for the acknowledgements; one result per id, in order.
    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>>;

    /// Reads keys of a map; missing keys come back as `Missing`.
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>>;
    /// The maps held (loaded or persisted).
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>>;

    /// Runs a query once.
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse>;
    /// Registers a live query under `id` and returns its first page; from the
    /// moment the snapshot is taken, every change that affects the result
    /// reaches `sink`. Subscribing an id twice replaces the first.
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse>;
    /// Stops a live query; true if it existed. No update for it is delivered
    /// after this returns.
    fn unsubscribe(&self, id: SubscriptionId) -> bool;

    /// Full-text search on a map with search configured.
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>>;

    /// Root hash of a map's Merkle tree (0 for an empty or unknown map).
    fn merkle_root(&self, map: RString, kind: MapKind) -> ModuleFuture<u32>;
    /// One node of a map's Merkle tree.
    fn merkle_node(&self, request: MerkleRequest) -> ModuleFuture<MerkleResponse>;

    /// Installs the sink that receives every applied change (replaces any
    /// previous one).
    fn set_change_sink(&self, sink: Arc<dyn ChangeSink>);
    /// The accessor handed to the cluster module.
    fn accessor(&self) -> Arc<dyn StorageAccessor>;

    /// Reads the node's event journal (see [`super::journal`]): matching
    /// entries with `sequence >= from_sequence`, in order, at most `limit`.
    /// Only durable entries are read.
    ///
    /// # Errors
    /// [`crate::ErrorKind::NOT_FOUND`] when `from_sequence` (other than 0)
    /// is older than the oldest entry kept (retention pruned it), naming the
    /// oldest available sequence; [`crate::ErrorKind::UNSUPPORTED`] when the
    /// journal is off (configured so, or a backend that keeps none).
    fn journal_read(&self, request: JournalReadRequest) -> ModuleFuture<JournalPage>;
    /// Follows the journal under `id`: with `from_sequence` (not 0), the
    /// entries from there that are already durable reach `sink` first (the
    /// replay, before the future resolves), then every later matching entry
    /// as its commit becomes durable, each once, in sequence order; without
    /// it, only later entries. Resolves with the newest durable sequence at
    /// registration. Subscribing an id twice replaces the first.
    ///
    /// # Errors
    /// As [`Self::journal_read`] (then nothing is registered).
    fn journal_subscribe(
        &self,
        id: SubscriptionId,
        from_sequence: ROption<u64>,
        filter: JournalFilter,
        sink: Arc<dyn JournalSink>,
    ) -> ModuleFuture<u64>;
    /// Stops a journal subscription; true if it existed. Nothing reaches its
    /// sink after this returns.
    fn journal_unsubscribe(&self, id: SubscriptionId) -> bool;

    /// Drops the named tombstoned tags of OR map `map`, in memory and in
    /// the store; resolves with how many were dropped (tags that are not
    /// tombstoned, or a map this node does not hold, count 0).
    ///
    /// The host calls it once every device it remembers confirmed the data
    /// that carried these tombstones (its tombstone epochs, see
    /// `host/src/server/epochs/mod.rs`), so a tag dropped here can no
    /// longer come back from a stale client. A pruned tag is no longer refused by later adds:
    /// the caller answers for that. The default (a module that keeps its
    /// tombstones until its own age rule) refuses with
    /// [`crate::ErrorKind::UNSUPPORTED`].
    fn prune_or_tombstones(&self, map: RString, tags: RVec<RString>) -> ModuleFuture<u64> {
        let _ = (map, tags);
        super::ready(Err(crate::ModuleError::unsupported(
            "this storage module does not prune OR tombstones on request",
        )))
    }
}
