//! One repair exchange between this node (the initiator, a partition's
//! owner) and one peer (a backup): compare the per-partition digests level
//! by level (partition, mid bucket, leaf, key; see
//! `hangar_core::module::digest`), descending only into what differs, then
//! exchange only the differing records, both ways, merged by the storage
//! module's CRDT rules (`StorageAccessor::apply_replicated`, origin
//! `Repair`).
//!
//! Messages go through a [`RepairLink`] (the cluster transport's `Repair`
//! channel in a node; a direct call in the benchmark) as msgpack bodies of
//! [`RepairMessage`] / [`RepairReply`]; [`serve`] answers them on the
//! peer. Every byte sent and received is counted in [`WalkStats::bytes`].
//!
//! Cost, per partition whose digests differ: 16 depth-1 sums, 16 depth-2
//! sums per differing depth-1 node, 16 leaf sums per differing depth-2
//! node (6 bytes each, only occupied buckets), the `(key, hash, stamp)`
//! triples of the differing leaves, then the differing records: one way
//! for an LWW key when the stamps tell which side is newer. Partitions
//! that agree cost one sum each.
//!
//! OR maps: tags removed on one side are tombstones map-wide, not per key;
//! when an OR map has differing keys, the two tombstone sets are exchanged
//! (each side gets the tags it lacks) before the records, so a removed tag
//! is not brought back. This is O(tombstones of the map), paid only by OR
//! maps that differ.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use abi_stable::std_types::RString;
use bytes::Bytes;
use futures::future::BoxFuture;
use hangar_core::module::accessor::{ScanItem, StorageAccessor};
use hangar_core::module::digest::{DigestItem, DigestLevel, DigestRequest};
use hangar_core::module::storage_types::{KeyRecord, Origin, OriginKind, RecordState};
use hangar_core::{KeyedOp, MapKind, MapOp};
use serde::{Deserialize, Serialize};

use crate::migration::item_changes;
use crate::wire;

/// A request on the `Repair` channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RepairMessage {
    /// Digests at one level each; answered by [`RepairReply::Digests`],
    /// one answer per request, in order.
    Digests(Vec<WireDigestRequest>),
    /// The records of some keys of one map.
    Read {
        /// The map.
        map: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// Changes to merge (records the peer lacks, or tombstones).
    Apply(Vec<KeyedOp>),
    /// The tombstoned tags of an OR map.
    Tombstones(String),
}

/// A [`DigestRequest`] on the wire: a tuple (level, map, partitions,
/// under), without field names.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireDigestRequest(pub DigestLevel, pub String, pub Vec<u32>, pub Vec<u16>);

impl From<&DigestRequest> for WireDigestRequest {
    fn from(r: &DigestRequest) -> Self {
        Self(
            r.level,
            r.map.to_string(),
            r.partitions.to_vec(),
            r.under.to_vec(),
        )
    }
}

impl From<WireDigestRequest> for DigestRequest {
    fn from(w: WireDigestRequest) -> Self {
        Self {
            level: w.0,
            map: w.1.into(),
            partitions: w.2.into(),
            under: w.3.into(),
        }
    }
}

/// A digest answer in compact form (tuples, packed bucket sums, no
/// repeated map names).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Compact {
    /// `(map, kind, partition, hash, count)` per map and partition.
    Partitions(Vec<(String, MapKind, u32, u32, u32)>),
    /// Per partition of one map, its occupied buckets packed as 6 bytes
    /// each: the bucket (u16) and its hash (u32), big-endian.
    Buckets(Vec<(u32, serde_bytes::ByteBuf)>),
    /// `(key, hash, stamp)` for one map and partition.
    Keys(Vec<(String, u32, u64)>),
}

/// The answer to a [`RepairMessage`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RepairReply {
    /// Answers [`RepairMessage::Digests`].
    Digests(Vec<Compact>),
    /// Answers [`RepairMessage::Read`], one record per key asked.
    Records(Vec<KeyRecord>),
    /// Answers [`RepairMessage::Apply`]: how many changes were merged.
    Applied(u32),
    /// Answers [`RepairMessage::Tombstones`].
    Tombstones(Vec<String>),
}

/// Carries one request body to the peer and brings back its answer.
pub trait RepairLink: Send + Sync {
    /// Who the peer is (for errors and origins).
    fn peer(&self) -> &str;
    /// Sends `body`; resolves with the peer's answer body or what failed.
    fn request(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>>;
}

/// A link to a storage in the same process: each request is answered by
/// [`serve`] on `storage` as if `from` had sent it over the transport
/// (bodies are encoded all the same). For embedders that run two storage
/// modules side by side, and for tests and benchmarks of the exchange.
pub struct LocalLink {
    /// The peer's name.
    pub peer: String,
    /// The name the peer sees requests come from.
    pub from: String,
    /// The peer's storage.
    pub storage: Arc<dyn StorageAccessor>,
}

impl RepairLink for LocalLink {
    fn peer(&self) -> &str {
        &self.peer
    }
    fn request(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let (s, from) = (self.storage.clone(), self.from.clone());
        Box::pin(async move { serve(&s, &from, &body).await })
    }
}

/// What one or more exchanges did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// (partition, peer) pairs compared.
    pub partitions_compared: u64,
    /// Of those, pairs whose digests differed.
    pub partitions_differing: u64,
    /// Records fetched from the peer and merged here.
    pub records_pulled: u64,
    /// Records sent to the peer.
    pub records_pushed: u64,
    /// Tombstones exchanged (OR maps).
    pub tombstones_exchanged: u64,
    /// Bytes of request and answer bodies, both ways.
    pub bytes: u64,
}

impl WalkStats {
    /// Adds `o` to these.
    pub fn add(&mut self, o: &WalkStats) {
        self.partitions_compared += o.partitions_compared;
        self.partitions_differing += o.partitions_differing;
        self.records_pulled += o.records_pulled;
        self.records_pushed += o.records_pushed;
        self.tombstones_exchanged += o.tombstones_exchanged;
        self.bytes += o.bytes;
    }
}

fn compact(level: DigestLevel, items: Vec<DigestItem>) -> Compact {
    match level {
        DigestLevel::Partitions => Compact::Partitions(
            items
                .into_iter()
                .map(|i| (i.map.into(), i.kind, i.partition, i.hash, i.count))
                .collect(),
        ),
        DigestLevel::Tops | DigestLevel::Mids | DigestLevel::Leaves => {
            let mut out: Vec<(u32, serde_bytes::ByteBuf)> = Vec::new();
            for i in items {
                if out.last().is_none_or(|(p, _)| *p != i.partition) {
                    out.push((i.partition, serde_bytes::ByteBuf::new()));
                }
                if let Some((_, b)) = out.last_mut() {
                    b.extend_from_slice(&i.bucket.to_be_bytes());
                    b.extend_from_slice(&i.hash.to_be_bytes());
                }
            }
            Compact::Buckets(out)
        }
        DigestLevel::Keys => Compact::Keys(
            items
                .into_iter()
                .map(|i| (i.key.into(), i.hash, i.stamp))
                .collect(),
        ),
    }
}

/// A digest's identity: (map, partition, bucket, key).
type Slot = (String, u32, u16, String);
/// A digest's value: (kind, hash, count or stamp).
type Value = (MapKind, u32, u64);

fn expand(
    req: &DigestRequest,
    kind: MapKind,
    c: Compact,
    out: &mut BTreeMap<Slot, Value>,
) -> Result<(), String> {
    let map = req.map.to_string();
    let first = req.partitions.first().copied().unwrap_or(0);
    match c {
        Compact::Partitions(v) => {
            for (m, k, p, h, n) in v {
                out.insert((m, p, 0, String::new()), (k, h, u64::from(n)));
            }
        }
        Compact::Buckets(v) => {
            for (p, packed) in v {
                if packed.len() % 6 != 0 {
                    return Err(format!(
                        "packed buckets of partition {p} are {} bytes; expected a multiple of 6",
                        packed.len()
                    ));
                }
                for e in packed.chunks_exact(6) {
                    let b = u16::from_be_bytes([e[0], e[1]]);
                    let h = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    out.insert((map.clone(), p, b, String::new()), (kind, h, 0));
                }
            }
        }
        Compact::Keys(v) => {
            for (key, h, stamp) in v {
                out.insert((map.clone(), first, 0, key), (kind, h, stamp));
            }
        }
    }
    Ok(())
}

/// Answers one repair request from `peer` on this node's storage.
///
/// # Errors
/// An undecodable body, or what storage reported.
pub async fn serve(
    storage: &Arc<dyn StorageAccessor>,
    peer: &str,
    body: &[u8],
) -> Result<Bytes, String> {
    let reply = match wire::decode(body, "repair message")? {
        RepairMessage::Digests(reqs) => {
            let mut out = Vec::with_capacity(reqs.len());
            for r in reqs {
                let r = DigestRequest::from(r);
                let level = r.level;
                let items = storage
                    .partition_digests(r)
                    .await
                    .map_err(|e| format!("digests: {e}"))?;
                out.push(compact(level, items.into_vec()));
            }
            RepairReply::Digests(out)
        }
        RepairMessage::Read { map, keys } => {
            let keys = keys.into_iter().map(RString::from).collect();
            let recs = storage
                .read(map.as_str().into(), keys)
                .await
                .map_err(|e| format!("reading map {map:?}: {e}"))?;
            RepairReply::Records(recs.into_vec())
        }
        RepairMessage::Apply(changes) => {
            let n = u32::try_from(changes.len()).unwrap_or(u32::MAX);
            if !changes.is_empty() {
                storage
                    .apply_replicated(changes.into(), repair_origin(peer))
                    .await
                    .map_err(|e| format!("merging repaired records: {e}"))?;
            }
            RepairReply::Applied(n)
        }
        RepairMessage::Tombstones(map) => RepairReply::Tombstones(
            storage
                .or_tombstones(map.as_str().into())
                .await
                .map_err(|e| format!("tombstones of map {map:?}: {e}"))?
                .into_iter()
                .map(String::from)
                .collect(),
        ),
    };
    Ok(wire::encode(&reply))
}

fn repair_origin(peer: &str) -> Origin {
    Origin {
        kind: OriginKind::Repair,
        connection: 0,
        node: peer.into(),
    }
}

/// One side of the exchange as this node sees it: local storage, the link
/// to the peer, and the counters.
pub struct Walk<'a> {
    /// This node's storage.
    pub local: &'a Arc<dyn StorageAccessor>,
    /// The peer.
    pub link: &'a dyn RepairLink,
    /// Records per read / apply message.
    pub chunk: usize,
    /// What was done.
    pub stats: WalkStats,
}

impl Walk<'_> {
    async fn call(&mut self, msg: &RepairMessage) -> Result<RepairReply, String> {
        let body = wire::encode(msg);
        self.stats.bytes += body.len() as u64;
        let reply = self
            .link
            .request(body)
            .await
            .map_err(|e| format!("repair with {}: {e}", self.link.peer()))?;
        self.stats.bytes += reply.len() as u64;
        wire::decode(&reply, "repair reply")
    }

    /// Local and remote digests for `reqs`, each keyed by slot.
    async fn digests(
        &mut self,
        reqs: Vec<DigestRequest>,
        kind: MapKind,
    ) -> Result<(BTreeMap<Slot, Value>, BTreeMap<Slot, Value>), String> {
        let mut mine = BTreeMap::new();
        let mut theirs = BTreeMap::new();
        if reqs.is_empty() {
            return Ok((mine, theirs));
        }
        for r in &reqs {
            let items = self
                .local
                .partition_digests(r.clone())
                .await
                .map_err(|e| format!("local digests: {e}"))?;
            expand(r, kind, compact(r.level, items.into_vec()), &mut mine)?;
        }
        let wire_reqs = reqs.iter().map(WireDigestRequest::from).collect();
        let RepairReply::Digests(answers) = self.call(&RepairMessage::Digests(wire_reqs)).await?
        else {
            return Err(format!("{}: unexpected reply to digests", self.link.peer()));
        };
        if answers.len() != reqs.len() {
            return Err(format!(
                "{}: {} digest answers for {} requests",
                self.link.peer(),
                answers.len(),
                reqs.len()
            ));
        }
        for (r, a) in reqs.iter().zip(answers) {
            expand(r, kind, a, &mut theirs).map_err(|e| format!("{}: {e}", self.link.peer()))?;
        }
        Ok((mine, theirs))
    }

    /// Compares and repairs `partitions` with the peer.
    ///
    /// # Errors
    /// What failed (unreachable peer, a partition not loaded on one side);
    /// the records merged before the failure stay merged.
    pub async fn run(&mut self, partitions: &[u32]) -> Result<(), String> {
        if partitions.is_empty() {
            return Ok(());
        }
        let root = DigestRequest {
            level: DigestLevel::Partitions,
            map: RString::new(),
            partitions: partitions.to_vec().into(),
            under: Vec::new().into(),
        };
        let (mine, theirs) = self.digests(vec![root], MapKind::Lww).await?;
        self.stats.partitions_compared += partitions.len() as u64;
        // map -> (kind, differing partitions)
        let mut maps: BTreeMap<String, (MapKind, BTreeSet<u32>)> = BTreeMap::new();
        let mut differing: BTreeSet<u32> = BTreeSet::new();
        for (slot, v) in mine.iter().chain(theirs.iter()) {
            let (a, b) = (mine.get(slot), theirs.get(slot));
            if a.map(|x| (x.1, x.2)) != b.map(|x| (x.1, x.2)) {
                maps.entry(slot.0.clone())
                    .or_insert((v.0, BTreeSet::new()))
                    .1
                    .insert(slot.1);
                differing.insert(slot.1);
            }
        }
        self.stats.partitions_differing += differing.len() as u64;
        for (map, (kind, parts)) in maps {
            self.repair_map(&map, kind, &parts).await?;
        }
        Ok(())
    }

    async fn repair_map(
        &mut self,
        map: &str,
        kind: MapKind,
        parts: &BTreeSet<u32>,
    ) -> Result<(), String> {
        let req = |level, partitions: Vec<u32>, under: Vec<u16>| DigestRequest {
            level,
            map: map.into(),
            partitions: partitions.into(),
            under: under.into(),
        };
        // Depth-1 nodes of every differing partition, in one exchange,
        // then down one level at a time under what differs.
        let (mine, theirs) = self
            .digests(
                vec![req(
                    DigestLevel::Tops,
                    parts.iter().copied().collect(),
                    vec![],
                )],
                kind,
            )
            .await?;
        let mut under = differing_buckets(&mine, &theirs);
        for level in [DigestLevel::Mids, DigestLevel::Leaves] {
            let reqs = under
                .into_iter()
                .map(|(p, b)| req(level, vec![p], b))
                .collect();
            let (mine, theirs) = self.digests(reqs, kind).await?;
            under = differing_buckets(&mine, &theirs);
        }
        let reqs = under
            .into_iter()
            .map(|(p, b)| req(DigestLevel::Keys, vec![p], b))
            .collect();
        let (mine, theirs) = self.digests(reqs, kind).await?;
        // A key both sides hold with different hashes moves one way when
        // the LWW stamps tell which side is newer, both ways otherwise
        // (OR maps, equal stamps).
        let mut pull = Vec::new();
        let mut push = Vec::new();
        for (slot, v) in &theirs {
            match mine.get(slot) {
                None => pull.push(slot.3.clone()),
                Some(m) if m.1 == v.1 => {}
                Some(m) if kind == MapKind::Lww && m.2 > v.2 => push.push(slot.3.clone()),
                Some(m) if kind == MapKind::Lww && m.2 < v.2 => pull.push(slot.3.clone()),
                Some(_) => {
                    pull.push(slot.3.clone());
                    push.push(slot.3.clone());
                }
            }
        }
        for slot in mine.keys() {
            if !theirs.contains_key(slot) {
                push.push(slot.3.clone());
            }
        }
        pull.sort_unstable();
        pull.dedup();
        push.sort_unstable();
        push.dedup();
        if pull.is_empty() && push.is_empty() {
            return Ok(());
        }
        if kind == MapKind::Or {
            let anchor = pull.first().or(push.first()).cloned().unwrap_or_default();
            self.exchange_tombstones(map, &anchor).await?;
        }
        // Pull first: what the peer sent and now equals our merged record
        // need not go back.
        let mut theirs_now: BTreeMap<String, RecordState> = BTreeMap::new();
        for keys in pull.chunks(self.chunk.max(1)) {
            let RepairReply::Records(recs) = self
                .call(&RepairMessage::Read {
                    map: map.to_string(),
                    keys: keys.to_vec(),
                })
                .await?
            else {
                return Err(format!("{}: unexpected reply to read", self.link.peer()));
            };
            let mut changes = Vec::new();
            for r in recs {
                if matches!(r.state, RecordState::Missing) {
                    continue;
                }
                theirs_now.insert(r.key.to_string(), r.state.clone());
                self.stats.records_pulled += 1;
                changes.extend(item_changes(ScanItem {
                    map: map.into(),
                    kind,
                    record: r,
                }));
            }
            if !changes.is_empty() {
                self.local
                    .apply_replicated(changes.into(), repair_origin(self.link.peer()))
                    .await
                    .map_err(|e| {
                        format!("merging records pulled from {}: {e}", self.link.peer())
                    })?;
            }
        }
        for keys in push.chunks(self.chunk.max(1)) {
            let recs = self
                .local
                .read(
                    map.into(),
                    keys.iter().map(|k| RString::from(k.as_str())).collect(),
                )
                .await
                .map_err(|e| format!("reading map {map:?}: {e}"))?;
            let mut changes = Vec::new();
            for r in recs {
                if matches!(r.state, RecordState::Missing)
                    || theirs_now.get(r.key.as_str()) == Some(&r.state)
                {
                    continue;
                }
                self.stats.records_pushed += 1;
                changes.extend(item_changes(ScanItem {
                    map: map.into(),
                    kind,
                    record: r,
                }));
            }
            if !changes.is_empty() {
                self.call(&RepairMessage::Apply(changes)).await?;
            }
        }
        Ok(())
    }

    /// Gives each side the OR tombstones of `map` it lacks (as removes
    /// keyed by `anchor`, a key of the map's differing partition).
    async fn exchange_tombstones(&mut self, map: &str, anchor: &str) -> Result<(), String> {
        let mine: BTreeSet<String> = self
            .local
            .or_tombstones(map.into())
            .await
            .map_err(|e| format!("tombstones of map {map:?}: {e}"))?
            .into_iter()
            .map(String::from)
            .collect();
        let RepairReply::Tombstones(theirs) = self
            .call(&RepairMessage::Tombstones(map.to_string()))
            .await?
        else {
            return Err(format!(
                "{}: unexpected reply to tombstones",
                self.link.peer()
            ));
        };
        let theirs: BTreeSet<String> = theirs.into_iter().collect();
        let remove = |tags: Vec<&String>| -> Vec<KeyedOp> {
            tags.into_iter()
                .map(|t| KeyedOp {
                    map: map.into(),
                    key: anchor.into(),
                    op: MapOp::OrRemove(t.as_str().into()),
                })
                .collect()
        };
        let to_them = remove(mine.difference(&theirs).collect());
        let to_me = remove(theirs.difference(&mine).collect());
        self.stats.tombstones_exchanged += (to_them.len() + to_me.len()) as u64;
        if !to_me.is_empty() {
            self.local
                .apply_replicated(to_me.into(), repair_origin(self.link.peer()))
                .await
                .map_err(|e| format!("merging tombstones of map {map:?}: {e}"))?;
        }
        for chunk in to_them.chunks(self.chunk.max(1)) {
            self.call(&RepairMessage::Apply(chunk.to_vec())).await?;
        }
        Ok(())
    }
}

/// Buckets whose sums differ, grouped by partition.
fn differing_buckets(
    mine: &BTreeMap<Slot, Value>,
    theirs: &BTreeMap<Slot, Value>,
) -> BTreeMap<u32, Vec<u16>> {
    let mut out: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
    let slots: BTreeSet<&Slot> = mine.keys().chain(theirs.keys()).collect();
    for s in slots {
        let (a, b) = (mine.get(s), theirs.get(s));
        if a.map(|x| (x.1, x.2)) != b.map(|x| (x.1, x.2)) {
            out.entry(s.1).or_default().push(s.2);
        }
    }
    out
}
