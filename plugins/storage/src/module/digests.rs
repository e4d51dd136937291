//! The per-partition digests the cluster module's repair compares (see
//! `StorageAccessor::partition_digests` and `crdt/partition_digest.rs`).
//!
//! # Contract
//!
//! - Answered under each map's lock from the digests its CRDT map keeps
//!   current, and only when the map's held set (`MapSlot::held`, read under
//!   the same lock) contains every asked partition; otherwise `UNAVAILABLE`
//!   (memory would lack those partitions' keys).
//! - Only buckets holding keys are listed, sorted by (map, partition,
//!   bucket, key).

use std::sync::Arc;

use abi_stable::std_types::RVec;
use hangar_core::merkle::LEAF_COUNT;
use hangar_core::module::digest::{DigestItem, DigestLevel, DigestRequest};
use hangar_core::{ErrorKind, MapKind, ModuleError, ModuleResult, PARTITION_COUNT};

use super::core::Core;
use super::map_slot::MapData;
use crate::crdt::partition_digest::{KeyedTrie, MID_BUCKETS};

/// Checks the request's shape; the error names what was wrong.
fn validate(request: &DigestRequest) -> ModuleResult<()> {
    if let Some(p) = request.partitions.iter().find(|p| **p >= PARTITION_COUNT) {
        return Err(ModuleError::invalid(format!(
            "partition_digests: partition {p} is out of range; expected 0..{PARTITION_COUNT}"
        )));
    }
    let (limit, what) = match request.level {
        DigestLevel::Mids => (16, "depth-1 node"),
        DigestLevel::Leaves => (MID_BUCKETS, "depth-2 node"),
        DigestLevel::Keys => (LEAF_COUNT, "leaf"),
        DigestLevel::Partitions | DigestLevel::Tops => return Ok(()),
    };
    if request.partitions.len() != 1 {
        return Err(ModuleError::invalid(format!(
            "partition_digests: level {:?} takes exactly one partition, got {}",
            request.level,
            request.partitions.len()
        )));
    }
    if let Some(b) = request.under.iter().find(|b| usize::from(**b) >= limit) {
        return Err(ModuleError::invalid(format!(
            "partition_digests: {what} {b} is out of range; expected 0..{limit}"
        )));
    }
    Ok(())
}

/// One key of a leaf: (key, item hash, stamp).
type KeyItem = (String, u32, u64);

/// The digests of one map at `request.level`, appended to `out`.
fn map_digests(
    name: &str,
    kind: MapKind,
    trie: &KeyedTrie,
    keys: impl Fn(u32, u16) -> Vec<KeyItem>,
    request: &DigestRequest,
    out: &mut Vec<DigestItem>,
) {
    let item =
        |partition: u32, bucket: u16, key: &str, hash: u32, count: u32, stamp: u64| DigestItem {
            map: name.into(),
            kind,
            partition,
            bucket,
            key: key.into(),
            hash,
            count,
            stamp,
        };
    let mut partitions: Vec<u32> = request.partitions.to_vec();
    partitions.sort_unstable();
    partitions.dedup();
    let mut under: Vec<u16> = request.under.to_vec();
    under.sort_unstable();
    under.dedup();
    for p in partitions {
        let Some(d) = trie.partition(p) else { continue };
        match request.level {
            DigestLevel::Partitions => out.push(item(p, 0, "", d.root.hash, d.root.count, 0)),
            DigestLevel::Tops => {
                out.extend(d.tops().map(|(t, s)| item(p, t, "", s.hash, s.count, 0)));
            }
            DigestLevel::Mids => {
                for &t in &under {
                    out.extend(
                        d.mids_under(t)
                            .map(|(m, s)| item(p, m, "", s.hash, s.count, 0)),
                    );
                }
            }
            DigestLevel::Leaves => {
                for &m in &under {
                    out.extend(
                        d.leaves_under(m)
                            .map(|(l, s)| item(p, l, "", s.hash, s.count, 0)),
                    );
                }
            }
            DigestLevel::Keys => {
                for &l in &under {
                    if d.leaf(l).count == 0 {
                        continue;
                    }
                    out.extend(
                        keys(p, l)
                            .into_iter()
                            .map(|(k, h, st)| item(p, l, &k, h, 1, st)),
                    );
                }
            }
        }
    }
}

impl Core {
    /// See the module docs.
    ///
    /// # Errors
    /// `INVALID_INPUT` for a malformed request; `UNAVAILABLE` when a
    /// partition asked for is not held in memory.
    pub(crate) async fn partition_digests(
        self: &Arc<Self>,
        request: &DigestRequest,
    ) -> ModuleResult<RVec<DigestItem>> {
        validate(request)?;
        let mut names: Vec<String> = if request.level == DigestLevel::Partitions {
            self.manager.names()
        } else {
            vec![request.map.to_string()]
        };
        names.sort_unstable();
        let mut out = Vec::new();
        for name in names {
            let Some(slot) = self.loaded_slot(&name).await? else {
                continue;
            };
            let st = slot.state.lock();
            let held = slot.held.get();
            if let Some(p) = request.partitions.iter().find(|p| !held.contains(**p)) {
                return Err(ModuleError::new(
                    ErrorKind::UNAVAILABLE,
                    format!(
                        "map {name:?}: partition {p} is not held in this node's memory; \
                         expected only partitions this node owns or backs up and has loaded; \
                         retry once the partition table change is applied"
                    ),
                ));
            }
            match &st.data {
                MapData::Lww(m) => map_digests(
                    &name,
                    MapKind::Lww,
                    m.digests(),
                    |p, l| {
                        m.partition_items_in_leaf(p, l)
                            .into_iter()
                            .map(|(k, h, st)| (k.to_string(), h, st))
                            .collect()
                    },
                    request,
                    &mut out,
                ),
                MapData::Or(m) => map_digests(
                    &name,
                    MapKind::Or,
                    m.digests(),
                    |p, l| {
                        m.partition_items_in_leaf(p, l)
                            .into_iter()
                            .map(|(k, h)| (k.to_string(), h, 0))
                            .collect()
                    },
                    request,
                    &mut out,
                ),
                MapData::Empty => {}
            }
        }
        Ok(out.into())
    }
}
