//! `DefaultStorage`: the default `StorageModule`.
//!
//! This first version keeps LWW maps in memory: ops merge under the node's
//! HLC (a remote record wins only when strictly newer), reads, map listing
//! and change events work; writes are acknowledged up to APPLIED at once and
//! REPLICATED when the caller reports it. Persistence, OR maps, live queries,
//! search and Merkle sync arrive with the full storage module.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::StorageModuleConfig;
use hangar_core::module::accessor::{ScanPage, ScanRequest, StorageAccessor};
use hangar_core::module::services::MetricsExt;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{
    AckId, AckResult, ApplyBatch, ChangeEvent, ChangeSink, KeyRecord, MapInfo, MerkleRequest,
    MerkleResponse, OpOutcome, OpStatus, Origin, QueryRequest, QueryResponse, QuerySink,
    RecordState, SearchHit, SearchRequest, SubscriptionId,
};
use hangar_core::module::{ready, ModuleFuture, ModuleInfo};
use hangar_core::types::{KeyedOp, LwwRecord, MapKind, MapOp, WriteConcern};
use hangar_core::{ErrorKind, ModuleError, ModuleResult};
use parking_lot::{Mutex, RwLock};

type LwwMap = HashMap<String, LwwRecord>;

struct Inner {
    config: StorageModuleConfig,
    deps: StorageDeps,
    maps: RwLock<HashMap<String, LwwMap>>,
    /// ack id -> (requested, highest contiguous level reached)
    acks: Mutex<HashMap<AckId, (WriteConcern, WriteConcern)>>,
    next_ack: AtomicU64,
    sink: RwLock<Option<Arc<dyn ChangeSink>>>,
    stopped: AtomicBool,
}

/// The default storage module.
#[derive(Clone)]
pub struct DefaultStorage(Arc<Inner>);

/// Builds the default storage module.
///
/// # Errors
/// [`ErrorKind::CONFIG`] for an invalid node id.
pub fn create(
    config: StorageModuleConfig,
    deps: StorageDeps,
) -> ModuleResult<Arc<dyn StorageModule>> {
    hangar_core::hlc::validate_node_id(&config.node_id)
        .map_err(|e| ModuleError::new(ErrorKind::CONFIG, format!("storage.node_id: {e}")))?;
    Ok(Arc::new(DefaultStorage(Arc::new(Inner {
        config,
        deps,
        maps: RwLock::new(HashMap::new()),
        acks: Mutex::new(HashMap::new()),
        next_ack: AtomicU64::new(1),
        sink: RwLock::new(None),
        stopped: AtomicBool::new(false),
    }))))
}

fn unsupported<T: Send + 'static>(what: &str) -> ModuleFuture<T> {
    ready(Err(ModuleError::unsupported(format!(
        "storage.{what} is not available in this version of {}",
        env!("CARGO_PKG_NAME")
    ))))
}

impl Inner {
    fn check_running(&self, what: &str) -> ModuleResult<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(ModuleError::new(
                ErrorKind::SHUT_DOWN,
                format!("storage.{what}: the storage module has shut down"),
            ));
        }
        Ok(())
    }

    /// Merges one op; returns the effective change when the map changed.
    fn merge(&self, op: &KeyedOp) -> ModuleResult<Option<KeyedOp>> {
        let MapOp::Lww(record) = &op.op else {
            return Err(ModuleError::unsupported(format!(
                "map {}: OR-map ops are not available in this version of {}",
                op.map,
                env!("CARGO_PKG_NAME")
            )));
        };
        self.deps.clock.update(&record.timestamp)?;
        let mut maps = self.maps.write();
        let map = maps.entry(op.map.to_string()).or_default();
        let wins = map
            .get(op.key.as_str())
            .is_none_or(|cur| record.timestamp > cur.timestamp);
        if !wins {
            return Ok(None);
        }
        map.insert(op.key.to_string(), record.clone());
        Ok(Some(op.clone()))
    }

    fn register_ack(&self, concern: WriteConcern) -> AckId {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        self.acks
            .lock()
            .insert(id, (concern, WriteConcern::Applied));
        id
    }

    fn apply_batch(&self, batch: &ApplyBatch) -> ModuleResult<RVec<OpOutcome>> {
        self.check_running("apply")?;
        let mut out = RVec::with_capacity(batch.ops.len());
        for w in &batch.ops {
            match self.merge(&w.op) {
                Ok(change) => {
                    let status = if change.is_some() {
                        OpStatus::Applied
                    } else {
                        OpStatus::Unchanged
                    };
                    if let Some(c) = &change {
                        self.emit(c, &batch.origin);
                    }
                    out.push(OpOutcome {
                        status,
                        ack: self.register_ack(w.concern),
                        change: change.into(),
                        error: ROption::RNone,
                    });
                }
                Err(e) => out.push(OpOutcome {
                    status: OpStatus::Rejected,
                    ack: 0,
                    change: ROption::RNone,
                    error: ROption::RSome(e),
                }),
            }
        }
        self.deps.metrics.counter(
            "hangar_ops_applied_total",
            &[],
            out.iter()
                .filter(|o| o.status != OpStatus::Rejected)
                .count() as f64,
        );
        Ok(out)
    }

    fn emit(&self, op: &KeyedOp, origin: &Origin) {
        if let Some(sink) = self.sink.read().as_ref() {
            sink.on_change(&ChangeEvent {
                op: op.clone(),
                origin: origin.clone(),
            });
        }
    }

    fn read(&self, map: &str, keys: &[RString]) -> RVec<KeyRecord> {
        let maps = self.maps.read();
        let m = maps.get(map);
        keys.iter()
            .map(|k| KeyRecord {
                key: k.clone(),
                state: m
                    .and_then(|m| m.get(k.as_str()))
                    .map_or(RecordState::Missing, |r| RecordState::Lww(r.clone())),
            })
            .collect()
    }

    fn list(&self) -> RVec<MapInfo> {
        let maps = self.maps.read();
        let mut v: Vec<MapInfo> = maps
            .iter()
            .map(|(name, m)| MapInfo {
                name: name.as_str().into(),
                kind: MapKind::Lww,
                entries: m.len() as u64,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.into()
    }
}

impl StorageModule for DefaultStorage {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            "in-memory LWW maps",
        )
    }

    fn start(&self) -> ModuleFuture<()> {
        tracing::info!(node = %self.0.config.node_id, "storage module started (in memory)");
        ready(Ok(()))
    }

    fn shutdown(&self) -> ModuleFuture<()> {
        if !self.0.stopped.swap(true, Ordering::AcqRel) {
            tracing::info!("storage module stopped");
        }
        ready(Ok(()))
    }

    fn apply(&self, batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        ready(self.0.apply_batch(&batch))
    }

    fn notify_acks(&self, acks: RVec<AckId>, level: WriteConcern) {
        let mut t = self.0.acks.lock();
        for a in acks {
            if let Some(e) = t.get_mut(&a) {
                // REPLICATED follows APPLIED directly; PERSISTED needs a
                // durable commit this in-memory version never makes.
                if level == WriteConcern::Replicated {
                    e.1 = e.1.max(level);
                }
            }
        }
    }

    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        let mut t = self.0.acks.lock();
        let out = acks
            .iter()
            .map(|a| match t.remove(a) {
                Some((target, achieved)) => {
                    let success = achieved >= target;
                    AckResult {
                        ack: *a,
                        success,
                        achieved: achieved.min(target.max(WriteConcern::Applied)),
                        error: if success {
                            ROption::RNone
                        } else {
                            ROption::RSome(
                                format!("Unreachable: achieved {achieved}, requested {target} (nothing is persisted in memory)")
                                    .into(),
                            )
                        },
                    }
                }
                None => AckResult {
                    ack: *a,
                    success: false,
                    achieved: WriteConcern::FireAndForget,
                    error: ROption::RSome("unknown ack id".into()),
                },
            })
            .collect();
        ready(Ok(out))
    }

    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        ready(Ok(self.0.read(&map, &keys)))
    }

    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        ready(Ok(self.0.list()))
    }

    fn query(&self, _request: QueryRequest) -> ModuleFuture<QueryResponse> {
        unsupported("query")
    }

    fn subscribe(
        &self,
        _id: SubscriptionId,
        _request: QueryRequest,
        _sink: Arc<dyn QuerySink>,
    ) -> ModuleFuture<QueryResponse> {
        unsupported("subscribe")
    }

    fn unsubscribe(&self, _id: SubscriptionId) -> bool {
        false
    }

    fn search(&self, _request: SearchRequest) -> ModuleFuture<RVec<SearchHit>> {
        unsupported("search")
    }

    fn merkle_root(&self, _map: RString, _kind: MapKind) -> ModuleFuture<u32> {
        unsupported("merkle_root")
    }

    fn merkle_node(&self, _request: MerkleRequest) -> ModuleFuture<MerkleResponse> {
        unsupported("merkle_node")
    }

    fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) {
        *self.0.sink.write() = Some(sink);
    }

    fn accessor(&self) -> Arc<dyn StorageAccessor> {
        Arc::new(self.clone())
    }
}

impl StorageAccessor for DefaultStorage {
    fn apply_replicated(
        &self,
        changes: RVec<KeyedOp>,
        origin: Origin,
    ) -> ModuleFuture<RVec<OpStatus>> {
        let mut out = RVec::new();
        for c in &changes {
            out.push(match self.0.merge(c) {
                Ok(Some(eff)) => {
                    self.0.emit(&eff, &origin);
                    OpStatus::Applied
                }
                Ok(None) => OpStatus::Unchanged,
                Err(_) => OpStatus::Rejected,
            });
        }
        ready(Ok(out))
    }

    fn read(&self, map: RString, keys: RVec<RString>) -> ModuleFuture<RVec<KeyRecord>> {
        ready(Ok(self.0.read(&map, &keys)))
    }

    fn scan_partition(&self, request: ScanRequest) -> ModuleFuture<ScanPage> {
        use hangar_core::module::accessor::{ScanCursor, ScanItem};
        let maps = self.0.maps.read();
        let mut items: Vec<(String, String, LwwRecord)> = maps
            .iter()
            .flat_map(|(m, map)| {
                map.iter()
                    .filter(|(k, _)| hangar_core::partition_of(k) == request.partition)
                    .map(move |(k, r)| (m.clone(), k.clone(), r.clone()))
            })
            .collect();
        items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let after = request.after.into_option();
        let mut page: Vec<ScanItem> = items
            .into_iter()
            .filter(|(m, k, _)| {
                after
                    .as_ref()
                    .is_none_or(|c| (m.as_str(), k.as_str()) > (c.map.as_str(), c.key.as_str()))
            })
            .take(request.limit.max(1) as usize + 1)
            .map(|(m, k, r)| ScanItem {
                map: m.into(),
                kind: MapKind::Lww,
                record: KeyRecord {
                    key: k.into(),
                    state: RecordState::Lww(r),
                },
            })
            .collect();
        let next = if page.len() > request.limit.max(1) as usize {
            page.truncate(request.limit.max(1) as usize);
            page.last().map(|i| ScanCursor {
                map: i.map.clone(),
                key: i.record.key.clone(),
            })
        } else {
            None
        };
        ready(Ok(ScanPage {
            items: page.into(),
            next: next.into(),
        }))
    }

    fn list_maps(&self) -> ModuleFuture<RVec<MapInfo>> {
        ready(Ok(self.0.list()))
    }

    fn or_tombstones(&self, _map: RString) -> ModuleFuture<RVec<RString>> {
        ready(Ok(RVec::new()))
    }
}
