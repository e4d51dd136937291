//! The storage accessor handed to the cluster module (start-up step 4):
//! replicated and repair writes through the same write path as clients
//! (same CRDT rules, same fan-out to live queries and the change sink, with
//! the caller's origin), reads, partition scans, map listing and OR
//! tombstones; this node's queries, live queries and search for the
//! cluster module to scatter, the merge of the pages it gathers, and this
//! node's share of a Merkle tree node for given partitions.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec};
use hangar_core::module::accessor::{ScanCursor, ScanItem, ScanPage, ScanRequest, StorageAccessor};
use hangar_core::module::digest::{DigestItem, DigestRequest};
use hangar_core::module::partition::PartitionSet;
use hangar_core::module::storage_types::{
    KeyRecord, MapInfo, MerkleRequest, MerkleResponse, OpStatus, Origin, QueryRequest,
    QueryResponse, QuerySink, RecordState, SearchHit, SearchRequest, SubscriptionId,
};
use hangar_core::module::ModuleFuture;
use hangar_core::{KeyedOp, ModuleResult};

use super::core::Core;
use super::map_slot::MapData;

/// The accessor: a handle on the module's core.
pub(crate) struct Accessor(pub(crate) Arc<Core>);

impl Core {
    /// One page of the records of `request.partition`, ordered by (map,
    /// key), every map loaded first. Each key appears once across pages if
    /// nothing changes meanwhile: a page resumes strictly after its cursor.
    pub(crate) async fn scan_partition(
        self: &Arc<Self>,
        request: &ScanRequest,
    ) -> ModuleResult<ScanPage> {
        let limit = request.limit.max(1) as usize;
        let after = request.after.as_ref().into_option();
        let mut items: Vec<ScanItem> = Vec::new();
        let mut more = false;
        for name in self.manager.names() {
            if after.is_some_and(|c| name.as_str() < c.map.as_str()) {
                continue;
            }
            let Some(slot) = self.loaded_slot(&name).await? else {
                continue;
            };
            let st = slot.state.lock();
            let Some(kind) = st.data.kind() else {
                continue;
            };
            let resume = after
                .filter(|c| c.map.as_str() == name)
                .map(|c| c.key.as_str());
            let mut keys: Vec<&str> = match &st.data {
                MapData::Lww(m) => m.partition_keys(request.partition),
                MapData::Or(m) => m.partition_keys(request.partition),
                MapData::Empty => Vec::new(),
            };
            keys.retain(|k| resume.is_none_or(|r| *k > r));
            keys.sort_unstable();
            for k in keys {
                if items.len() == limit {
                    more = true;
                    break;
                }
                let state = match &st.data {
                    MapData::Lww(m) => m
                        .get_record(k)
                        .map_or(RecordState::Missing, RecordState::Lww),
                    MapData::Or(m) => RecordState::Or(m.records(k).into()),
                    MapData::Empty => RecordState::Missing,
                };
                items.push(ScanItem {
                    map: name.as_str().into(),
                    kind,
                    record: KeyRecord {
                        key: k.into(),
                        state,
                    },
                });
            }
            if more {
                break;
            }
        }
        let next = if more {
            items.last().map(|i| ScanCursor {
                map: i.map.clone(),
                key: i.record.key.clone(),
            })
        } else {
            None
        };
        Ok(ScanPage {
            items: items.into(),
            next: next.into(),
        })
    }
}

impl StorageAccessor for Accessor {
    fn apply_replicated(
        &self,
        changes: RVec<KeyedOp>,
        origin: Origin,
    ) -> ModuleFuture<RVec<OpStatus>> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.apply_replicated", async move {
                let _g = core.enter("apply_replicated")?;
                Ok(core
                    .apply_replicated(changes.into_vec(), origin)
                    .await?
                    .into())
            })
    }

    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.read", async move {
                let _g = core.enter("read")?;
                core.read(&map, &keys).await
            })
    }

    fn scan_partition(&self, request: ScanRequest) -> ModuleFuture<ScanPage> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.scan_partition", async move {
                let _g = core.enter("scan_partition")?;
                core.scan_partition(&request).await
            })
    }

    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.list_maps", async move {
                let _g = core.enter("list_maps")?;
                core.list_maps().await
            })
    }

    fn or_tombstones(&self, map: RString) -> ModuleFuture<RVec<RString>> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.or_tombstones", async move {
                let _g = core.enter("or_tombstones")?;
                core.or_tombstones(&map).await
            })
    }

    fn durable_barrier(&self) -> ModuleFuture<()> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.durable_barrier", async move {
                let _g = core.enter("durable_barrier")?;
                core.persist()?
                    .committer
                    .flush()
                    .await
                    .map_err(|e| hangar_core::ModuleError::storage(e.to_string()))
            })
    }

    fn partitions_changed(&self, version: u64) {
        self.0.partitions_changed(version);
    }

    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.query", async move {
                let _g = core.enter("query")?;
                core.query(&request).await
            })
    }

    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.subscribe", async move {
                let _g = core.enter("subscribe")?;
                core.subscribe(id, &request, sink).await
            })
    }

    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.0.registry.unsubscribe(crate::query::RegistryId(id))
    }

    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.search", async move {
                let _g = core.enter("search")?;
                core.search(&request).await
            })
    }

    fn merge_pages(
        &self,
        request: QueryRequest,
        pages: RVec<QueryResponse>,
    ) -> ModuleResult<QueryResponse> {
        super::merge::merge_pages(&request, &pages, self.0.deps.clock.wall_millis())
    }

    fn merkle_node_in(
        &self,
        request: MerkleRequest,
        partitions: PartitionSet,
    ) -> ModuleFuture<MerkleResponse> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.merkle_node_in", async move {
                let _g = core.enter("merkle_node_in")?;
                core.merkle_node_in(&request, partitions).await
            })
    }

    fn partition_digests(&self, request: DigestRequest) -> ModuleFuture<RVec<DigestItem>> {
        let core = self.0.clone();
        self.0
            .runtime
            .spawn_call("storage.accessor.partition_digests", async move {
                let _g = core.enter("partition_digests")?;
                core.partition_digests(&request).await
            })
    }
}
