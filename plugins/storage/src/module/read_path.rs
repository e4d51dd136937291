//! The read path: reads, map listing, one-shot and live queries, full-text
//! search and Merkle sync. Every call on a map the backend holds waits for
//! the map's load first (writes do not; see `manager`).
//!
//! Reads answer from memory: a key of a partition this node does not hold
//! (never related, or released by an ownership change; see `ownership`)
//! reads as `Missing`, and queries do not see it, although its record may
//! be on disk and on the nodes that hold it.
//!
//! # Query rows
//!
//! Queries see each visible record once: for an LWW map, every key whose
//! record is neither a tombstone nor TTL-expired, with its decoded value;
//! for an OR map, every key with at least one live record, with the array
//! of its live values (the legacy `{value: [values]}` shape, so field
//! predicates do not match OR maps but `isNotNull`-style filters and sorts
//! on the key do). Values that are not valid msgpack are skipped.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec, Tuple2};
use hangar_core::module::storage_types::{
    KeyRecord, MapInfo, MerkleRequest, MerkleResponse, QueryRequest, QueryResponse,
    QuerySink as CoreSink, RecordState, SearchHit, SearchRequest, SubscriptionId,
};
use hangar_core::{MapKind, ModuleError, ModuleResult, RawValue};
use rmpv::Value;

use super::convert::{decode, fields, response, SinkAdapter};
use super::core::Core;
use super::map_slot::{MapData, MapSlot};
use super::merkle_share;
use super::snapshot::{apply_captured, Capture, INLINE_ROWS};
use super::write_path::or_value;
use crate::query::{self, Projection, Query, Row};
use crate::search::SearchOptions;

/// Default number of search hits when a request asks for 0.
pub(crate) const DEFAULT_SEARCH_LIMIT: usize = 10;

/// The visible records of a map with decoded values (see the module docs).
pub(crate) fn decoded_rows(data: &MapData, now_ms: u64) -> Vec<(&str, Value)> {
    match data {
        MapData::Empty => Vec::new(),
        MapData::Lww(m) => m
            .entries(now_ms)
            .filter_map(|(k, bytes)| decode(bytes).map(|v| (k, v)))
            .collect(),
        MapData::Or(m) => m
            .keys()
            .filter_map(|k| or_value(m, k, now_ms).map(|v| (k, v)))
            .collect(),
    }
}

pub(crate) fn parse_request(request: &QueryRequest) -> ModuleResult<(Query, Projection)> {
    let raw = request.query.as_bytes();
    let value = if raw.is_empty() {
        Value::Nil
    } else {
        rmpv::decode::read_value(&mut &raw[..]).map_err(|e| {
            ModuleError::invalid(format!(
                "query on map {:?} is not one msgpack value: {e}",
                request.map
            ))
        })?
    };
    let query = Query::parse(&value).map_err(|e| {
        ModuleError::invalid(format!("invalid query on map {:?}: {e}", request.map))
    })?;
    let projection = match fields(&request.fields) {
        Some(f) if !f.is_empty() => Projection::of(f),
        _ => Projection::all(),
    };
    Ok((query, projection))
}

fn key_record(data: &MapData, key: &RString, now_ms: u64) -> KeyRecord {
    let state = match data {
        MapData::Empty => RecordState::Missing,
        MapData::Lww(m) => m
            .get_record(key)
            .map_or(RecordState::Missing, RecordState::Lww),
        MapData::Or(m) => {
            let recs = m.get_records(key, now_ms);
            if recs.is_empty() {
                RecordState::Missing
            } else {
                RecordState::Or(recs.into())
            }
        }
    };
    KeyRecord {
        key: key.clone(),
        state,
    }
}

impl Core {
    /// The slot of an existing map, loaded; `None` for a map nobody wrote.
    pub(crate) async fn loaded_slot(
        self: &Arc<Self>,
        map: &str,
    ) -> ModuleResult<Option<Arc<MapSlot>>> {
        match self.manager.existing(map) {
            Some(slot) => {
                self.ensure_loaded(&slot).await?;
                Ok(Some(slot))
            }
            None => Ok(None),
        }
    }

    /// Reads keys: the LWW record as stored (tombstones and expired records
    /// included), or the live records of an OR key; `Missing` otherwise.
    pub(crate) async fn read(
        self: &Arc<Self>,
        map: &str,
        keys: &[RString],
    ) -> ModuleResult<RVec<KeyRecord>> {
        let Some(slot) = self.loaded_slot(map).await? else {
            return Ok(missing(keys));
        };
        Ok(self.read_slot(&slot, keys))
    }

    /// [`Self::read`] without waiting, when no load is needed: the map is
    /// unknown (every key `Missing`) or already loaded. `None` means a load
    /// is due and the caller MUST take the async path. Exists so that the
    /// common read answers on the caller's thread, without a hop to the
    /// plugin's runtime.
    pub(crate) fn read_now(&self, map: &str, keys: &[RString]) -> Option<RVec<KeyRecord>> {
        match self.manager.existing(map) {
            None => Some(missing(keys)),
            Some(slot) if slot.is_loaded() => Some(self.read_slot(&slot, keys)),
            Some(_) => None,
        }
    }

    fn read_slot(&self, slot: &MapSlot, keys: &[RString]) -> RVec<KeyRecord> {
        let now = self.deps.clock.wall_millis();
        let st = slot.state.lock();
        keys.iter().map(|k| key_record(&st.data, k, now)).collect()
    }

    /// Every map held or persisted, loaded, with its kind and size.
    pub(crate) async fn list_maps(self: &Arc<Self>) -> ModuleResult<RVec<MapInfo>> {
        let mut out = RVec::new();
        for name in self.manager.names() {
            let Some(slot) = self.loaded_slot(&name).await? else {
                continue;
            };
            let st = slot.state.lock();
            if let Some(kind) = st.data.kind() {
                out.push(MapInfo {
                    name: name.as_str().into(),
                    kind,
                    entries: st.data.entries() as u64,
                });
            }
        }
        Ok(out)
    }

    /// Runs a query once. A large map is read in tasklet slices (see
    /// `snapshot`); the query then runs outside the map's lock.
    pub(crate) async fn query(
        self: &Arc<Self>,
        request: &QueryRequest,
    ) -> ModuleResult<QueryResponse> {
        let (q, projection) = parse_request(request)?;
        let now = self.deps.clock.wall_millis();
        let Some(slot) = self.loaded_slot(&request.map).await? else {
            return Ok(response(query::execute(
                &q,
                &projection,
                std::iter::empty(),
                now,
            )));
        };
        let large = slot.state.lock().data.entries() > INLINE_ROWS;
        if large {
            let rows = self.sliced_snapshot(&slot, now).await?;
            let page = query::execute(
                &q,
                &projection,
                rows.iter().map(|(k, v)| Row::live(k, v)),
                now,
            );
            return Ok(response(page));
        }
        let st = slot.state.lock();
        let rows = decoded_rows(&st.data, now);
        let page = query::execute(
            &q,
            &projection,
            rows.iter().map(|(k, v)| Row::live(k, v)),
            now,
        );
        drop(st);
        Ok(response(page))
    }

    /// Registers a live query under the host's id and returns its first
    /// page. The registration happens under the map's lock together with
    /// the snapshot (or, for a large map read in slices, with the keys that
    /// changed while it was read), so no change is missed or sent twice.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        id: SubscriptionId,
        request: &QueryRequest,
        sink: Arc<dyn CoreSink>,
    ) -> ModuleResult<QueryResponse> {
        let (q, projection) = parse_request(request)?;
        let slot = self.manager.slot(&request.map);
        self.ensure_loaded(&slot).await?;
        let now = self.deps.clock.wall_millis();
        let adapter = Arc::new(SinkAdapter { sink });
        let capture: Capture = {
            let mut st = slot.state.lock();
            if st.data.entries() <= INLINE_ROWS {
                let rows = decoded_rows(&st.data, now);
                let sub = self.registry.subscribe_as(
                    query::RegistryId(id),
                    &request.map,
                    q,
                    projection,
                    adapter,
                    rows.iter().map(|(k, v)| Row::live(k, v)),
                    now,
                );
                return Ok(response(sub.page));
            }
            let c: Capture = Arc::default();
            st.captures.push(c.clone());
            c
        };
        let snapshot = self.sliced_snapshot(&slot, now).await;
        let mut st = slot.state.lock();
        st.captures.retain(|c| !Arc::ptr_eq(c, &capture));
        let mut rows = snapshot?;
        let changed = std::mem::take(&mut *capture.lock());
        apply_captured(&mut rows, changed, &st.data, now);
        let sub = self.registry.subscribe_as(
            query::RegistryId(id),
            &request.map,
            q,
            projection,
            adapter,
            rows.iter().map(|(k, v)| Row::live(k, v)),
            now,
        );
        drop(st);
        Ok(response(sub.page))
    }

    /// Full-text search with read-your-writes: waits until every change
    /// applied before the call is indexed.
    pub(crate) async fn search(
        self: &Arc<Self>,
        request: &SearchRequest,
    ) -> ModuleResult<RVec<SearchHit>> {
        let Some(writer) = self.fts_of(&request.map).cloned() else {
            let configured: Vec<&String> = self.fts.keys().collect();
            return Err(ModuleError::invalid(format!(
                "map {:?} has no full-text search configured (storage.full_text_search); \
                 maps with search: {configured:?}",
                request.map
            )));
        };
        let slot = self.loaded_slot(&request.map).await?;
        writer.wait_current().await;
        let options = SearchOptions {
            limit: Some(if request.limit == 0 {
                DEFAULT_SEARCH_LIMIT
            } else {
                request.limit as usize
            }),
            min_score: Some(request.min_score),
            boost: if request.boost.is_empty() {
                None
            } else {
                Some(
                    request
                        .boost
                        .iter()
                        .map(|Tuple2(f, w)| (f.to_string(), *w))
                        .collect(),
                )
            },
        };
        let results = writer
            .search(&request.query, &options)
            .map_err(|e| ModuleError::invalid(format!("search on map {:?}: {e}", request.map)))?;
        let Some(slot) = slot else {
            return Ok(RVec::new());
        };
        let now = self.deps.clock.wall_millis();
        let st = slot.state.lock();
        let mut out = RVec::new();
        for hit in results.hits {
            let value = match &st.data {
                MapData::Lww(m) => m.get(&hit.key, now).map(RawValue::from_msgpack),
                MapData::Or(m) => or_value(m, &hit.key, now).map(|v| super::convert::encode(&v)),
                MapData::Empty => None,
            };
            if let Some(value) = value {
                out.push(SearchHit {
                    key: hit.key.into(),
                    score: hit.score,
                    matched_terms: hit.matched_terms.into_iter().map(RString::from).collect(),
                    value,
                });
            }
        }
        Ok(out)
    }

    /// The root of a map's tree of `kind` (0 for an empty or unknown map,
    /// or one of the other kind).
    pub(crate) async fn merkle_root(
        self: &Arc<Self>,
        map: &str,
        kind: MapKind,
    ) -> ModuleResult<u32> {
        let Some(slot) = self.loaded_slot(map).await? else {
            return Ok(0);
        };
        let st = slot.state.lock();
        Ok(match (&st.data, kind) {
            (MapData::Lww(m), MapKind::Lww) => m.merkle_root(),
            (MapData::Or(m), MapKind::Or) => m.merkle_root(),
            _ => 0,
        })
    }

    /// One node of a map's tree: the occupied child buckets of an inner
    /// path, or the records of a leaf path (depth 3); for an OR leaf, the
    /// map's tombstones too.
    ///
    /// # Errors
    /// [`hangar_core::ErrorKind::INVALID_INPUT`] for a path that is not up
    /// to three lowercase hex digits.
    pub(crate) async fn merkle_node(
        self: &Arc<Self>,
        request: &MerkleRequest,
    ) -> ModuleResult<MerkleResponse> {
        let parsed = merkle_share::parse_path(request)?;
        let Some(slot) = self.loaded_slot(&request.map).await? else {
            return Ok(merkle_share::empty_node(parsed));
        };
        let st = slot.state.lock();
        Ok(merkle_share::trie_node(
            &st.data,
            request.kind,
            request.path.as_str(),
            parsed,
            None,
        ))
    }

    /// The tombstoned tags of an OR map, sorted (empty for other maps).
    pub(crate) async fn or_tombstones(self: &Arc<Self>, map: &str) -> ModuleResult<RVec<RString>> {
        let Some(slot) = self.loaded_slot(map).await? else {
            return Ok(RVec::new());
        };
        let st = slot.state.lock();
        let MapData::Or(m) = &st.data else {
            return Ok(RVec::new());
        };
        let mut tags: Vec<&str> = m.tombstones().collect();
        tags.sort_unstable();
        Ok(tags.into_iter().map(RString::from).collect())
    }
}

fn missing(keys: &[RString]) -> RVec<KeyRecord> {
    keys.iter()
        .map(|k| KeyRecord {
            key: k.clone(),
            state: RecordState::Missing,
        })
        .collect()
}
