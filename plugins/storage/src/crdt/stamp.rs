//! Compact timestamps: a record stores its HLC timestamp in 16 bytes by
//! interning the node id per map.

use std::cmp::Ordering;

use hangar_core::Timestamp;
use hashbrown::HashMap;

/// Node ids seen by one map, each stored once; records refer to them by
/// index. Never shrinks: a map meets few distinct node ids (one per writer
/// node), so the table stays small.
#[derive(Debug, Default, Clone)]
pub(crate) struct NodeInterner {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl NodeInterner {
    /// The index of `name`, adding it when new.
    ///
    /// # Panics
    /// When a map has met 2^31 distinct node ids (the index shares its `u32`
    /// with the TTL flag).
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len())
            .ok()
            .filter(|id| *id < TTL_FLAG)
            .expect("a map met more than 2^31 distinct node ids");
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// The node id behind an index handed out by `intern`.
    pub(crate) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

const TTL_FLAG: u32 = 1 << 31;

/// A timestamp with its node id interned, in 16 bytes. The top bit of the
/// node index says whether the record has a TTL; the TTL itself is stored
/// by the owner (inline for OR records, in the key/value allocation for LWW
/// records, which mostly have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) millis: u64,
    pub(crate) counter: u32,
    node_flags: u32,
}

impl Stamp {
    /// Packs `ts`, interning the node id, and whether a TTL is present.
    pub(crate) fn pack(ts: &Timestamp, has_ttl: bool, nodes: &mut NodeInterner) -> Self {
        let node = nodes.intern(ts.node_id.as_str());
        Self {
            millis: ts.millis,
            counter: ts.counter,
            node_flags: node | if has_ttl { TTL_FLAG } else { 0 },
        }
    }

    pub(crate) fn node(self) -> u32 {
        self.node_flags & !TTL_FLAG
    }

    pub(crate) fn has_ttl(self) -> bool {
        self.node_flags & TTL_FLAG != 0
    }

    /// The full timestamp (allocates the node id).
    pub(crate) fn timestamp(self, nodes: &NodeInterner) -> Timestamp {
        Timestamp::new(self.millis, self.counter, nodes.name(self.node()))
    }

    /// Orders this stamp's timestamp against `ts` (millis, counter, node id
    /// bytes), without allocating.
    pub(crate) fn cmp_ts(self, ts: &Timestamp, nodes: &NodeInterner) -> Ordering {
        self.millis
            .cmp(&ts.millis)
            .then(self.counter.cmp(&ts.counter))
            .then_with(|| {
                nodes
                    .name(self.node())
                    .as_bytes()
                    .cmp(ts.node_id.as_bytes())
            })
    }

    /// True when `ttl` is set and ran out strictly before `now_ms`.
    pub(crate) fn is_expired(self, ttl: Option<u64>, now_ms: u64) -> bool {
        ttl.is_some_and(|ttl| self.millis.saturating_add(ttl) < now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_pack_round_trips_the_timestamp() {
        let mut nodes = NodeInterner::default();
        let ts = Timestamp::new(1_700_000_000_000, 9, "node-b");
        let s = Stamp::pack(&ts, true, &mut nodes);
        assert_eq!(s.timestamp(&nodes), ts);
        assert!(s.has_ttl());
        let s2 = Stamp::pack(&ts, false, &mut nodes);
        assert!(!s2.has_ttl());
        assert_eq!(s.node(), s2.node(), "node ids are interned once");
        assert_eq!(std::mem::size_of::<Stamp>(), 16);
    }

    #[test]
    fn t11_compare_matches_timestamp_order() {
        let mut nodes = NodeInterner::default();
        let a = Timestamp::new(5, 1, "b");
        let s = Stamp::pack(&a, false, &mut nodes);
        for other in [
            Timestamp::new(5, 1, "a"),
            Timestamp::new(5, 1, "b"),
            Timestamp::new(5, 1, "c"),
            Timestamp::new(4, 9, "z"),
            Timestamp::new(5, 2, "a"),
        ] {
            assert_eq!(s.cmp_ts(&other, &nodes), a.cmp(&other), "{other}");
        }
    }

    #[test]
    fn t12_expiry_is_strict() {
        let mut nodes = NodeInterner::default();
        let s = Stamp::pack(&Timestamp::new(1000, 0, "n"), true, &mut nodes);
        assert!(!s.is_expired(Some(100), 1100));
        assert!(s.is_expired(Some(100), 1101));
        assert!(!s.is_expired(None, u64::MAX));
    }
}
