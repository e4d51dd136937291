//! The target's side of a partition transfer (`hangar_cluster::migration::Ingest`)
//! over a real storage module on the embedded (redb) backend, watched by a
//! wrapper that counts the records applied and the records a completed
//! durable barrier covers:
//! - every chunk is answered once everything it carried is durable (not
//!   only the last chunk): the source sends the next chunk after the
//!   answer, so the target's disk paces the stream;
//! - with `commit_budget_factor`, chunks are committed in slices, one at a
//!   time for the whole node, small while client-write commits are fast
//!   against the slices' commits, as large as a chunk when no client write
//!   is there to protect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_cluster::migration::pacing::MIN_SLICE;
use hangar_cluster::migration::Ingest;
use hangar_cluster::settings::MigrationConfig;
use hangar_core::module::accessor::{ScanPage, ScanRequest, StorageAccessor};
use hangar_core::module::digest::{DigestItem, DigestRequest};
use hangar_core::module::partition::PartitionSet;
use hangar_core::module::storage_types::{
    KeyRecord, MapInfo, MerkleRequest, MerkleResponse, OpStatus, Origin, QueryRequest,
    QueryResponse, QuerySink, SearchHit, SearchRequest, SubscriptionId,
};
use hangar_core::module::ModuleFuture;
use hangar_core::{KeyedOp, LwwRecord, MapOp, ModuleResult, RawValue, Timestamp};
use hangar_tests::support::{embedded_storage_config, storage_deps};

/// Delegates to a real storage accessor and counts: records applied, and
/// the records applied before the start of the last durable barrier that
/// completed (those are durable).
struct Watch {
    inner: Arc<dyn StorageAccessor>,
    applied: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    /// The most records ever applied and not yet covered by a barrier.
    backlog: Arc<AtomicU64>,
}

impl StorageAccessor for Watch {
    fn apply_replicated(
        &self,
        changes: RVec<KeyedOp>,
        origin: Origin,
    ) -> ModuleFuture<RVec<OpStatus>> {
        let n = changes.len() as u64;
        let fut = self.inner.apply_replicated(changes, origin);
        let (applied, durable, backlog) = (
            self.applied.clone(),
            self.durable.clone(),
            self.backlog.clone(),
        );
        Box::pin(async move {
            let r = fut.await;
            let now = applied.fetch_add(n, Ordering::SeqCst) + n;
            backlog.fetch_max(now - durable.load(Ordering::SeqCst), Ordering::SeqCst);
            r
        })
    }
    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        self.inner.read(map, keys)
    }
    fn scan_partition(&self, request: ScanRequest) -> ModuleFuture<ScanPage> {
        self.inner.scan_partition(request)
    }
    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        self.inner.list_maps()
    }
    fn or_tombstones(&self, map: RString) -> ModuleFuture<RVec<RString>> {
        self.inner.or_tombstones(map)
    }
    fn durable_barrier(&self) -> ModuleFuture<()> {
        let covers = self.applied.load(Ordering::SeqCst);
        let fut = self.inner.durable_barrier();
        let durable = self.durable.clone();
        Box::pin(async move {
            fut.await?;
            durable.fetch_max(covers, Ordering::SeqCst);
            Ok(())
        })
    }
    fn partitions_changed(&self, version: u64) {
        self.inner.partitions_changed(version);
    }
    fn query(&self, request: QueryRequest) -> ModuleFuture<QueryResponse> {
        self.inner.query(request)
    }
    fn subscribe(
        &self,
        id: SubscriptionId,
        request: QueryRequest,
        sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        self.inner.subscribe(id, request, sink)
    }
    fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.unsubscribe(id)
    }
    fn search(&self, request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        self.inner.search(request)
    }
    fn merge_pages(
        &self,
        request: QueryRequest,
        pages: RVec<QueryResponse>,
    ) -> ModuleResult<QueryResponse> {
        self.inner.merge_pages(request, pages)
    }
    fn merkle_node_in(
        &self,
        request: MerkleRequest,
        partitions: PartitionSet,
    ) -> ModuleFuture<MerkleResponse> {
        self.inner.merkle_node_in(request, partitions)
    }
    fn partition_digests(&self, request: DigestRequest) -> ModuleFuture<RVec<DigestItem>> {
        self.inner.partition_digests(request)
    }
}

struct Target {
    ingest: Ingest,
    applied: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    backlog: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

async fn target(factor: u32) -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = hangar_storage::create(
        embedded_storage_config("target", dir.path()),
        storage_deps("target"),
    )
    .expect("storage");
    m.start().await.expect("start");
    let (applied, durable, backlog) = (Arc::default(), Arc::default(), Arc::default());
    let watch = Watch {
        inner: m.accessor(),
        applied: Arc::clone(&applied),
        durable: Arc::clone(&durable),
        backlog: Arc::clone(&backlog),
    };
    let config = MigrationConfig {
        commit_budget_factor: factor,
        chunk_records: 200,
        ..MigrationConfig::default()
    };
    Target {
        ingest: Ingest::new(Arc::new(watch), &config),
        applied,
        durable,
        backlog,
        _dir: dir,
    }
}

/// `n` records of map `m` with keys `{prefix}{i}`, 200-byte values.
fn chunk(prefix: &str, n: usize) -> Vec<KeyedOp> {
    let value = RawValue::encode(&"v".repeat(200)).expect("encodes");
    (0..n)
        .map(|i| KeyedOp {
            map: "m".into(),
            key: format!("{prefix}{i}").into(),
            op: MapOp::Lww(LwwRecord {
                value: ROption::RSome(value.clone()),
                timestamp: Timestamp::new(1_000 + i as u64, 0, "source"),
                ttl_ms: ROption::RNone,
            }),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_chunk_is_answered_once_its_records_are_durable() {
    for factor in [0, 2] {
        let t = target(factor).await;
        for c in 0..4 {
            let reply = t
                .ingest
                .receive("source", 7, chunk(&format!("c{c}-"), 150))
                .await
                .expect("chunk ingested");
            assert!(reply.durable && reply.applied == 150);
            let (applied, durable) = (
                t.applied.load(Ordering::SeqCst),
                t.durable.load(Ordering::SeqCst),
            );
            assert_eq!(
                (applied, durable),
                (150 * (c + 1), 150 * (c + 1)),
                "commit_budget_factor {factor}: chunk {c} was answered with {} of its \
                 records applied but not yet durable",
                applied - durable
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_slices_are_one_at_a_time_and_sized_by_client_commit_latency() {
    // Client commits of 1 µs: every slice's disk commit takes longer, so
    // slices stay at the floor, also for two transfers at once.
    let t = target(2).await;
    for round in 0..3 {
        t.ingest.client_commit(Duration::from_micros(1));
        let (a, b) = tokio::join!(
            t.ingest.receive("s1", 1, chunk(&format!("a{round}-"), 100)),
            t.ingest.receive("s2", 2, chunk(&format!("b{round}-"), 100)),
        );
        a.expect("first transfer's chunk");
        b.expect("second transfer's chunk");
    }
    assert_eq!(
        t.backlog.load(Ordering::SeqCst),
        MIN_SLICE as u64,
        "at most one slice of the floor size is ever waiting for a commit"
    );
    // No client commit to protect: slices grow to a whole chunk.
    let t = target(2).await;
    for c in 0..8 {
        t.ingest
            .receive("s1", 1, chunk(&format!("c{c}-"), 200))
            .await
            .expect("chunk ingested");
    }
    assert_eq!(t.backlog.load(Ordering::SeqCst), 200);
}
