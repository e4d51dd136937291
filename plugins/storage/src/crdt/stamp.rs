//! Compact timestamps: a record stores its HLC timestamp and TTL in 24 bytes
//! by interning the node id per map.

use std::cmp::Ordering;

use abi_stable::std_types::ROption;
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

/// A timestamp (node id interned) and optional TTL, packed in 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) millis: u64,
    ttl: u64,
    pub(crate) counter: u32,
    /// Node index; the top bit says whether `ttl` is set.
    node_flags: u32,
}

impl Stamp {
    /// Packs `ts` and `ttl`, interning the node id.
    pub(crate) fn pack(ts: &Timestamp, ttl: ROption<u64>, nodes: &mut NodeInterner) -> Self {
        let node = nodes.intern(ts.node_id.as_str());
        let (ttl, flag) = match ttl {
            ROption::RSome(t) => (t, TTL_FLAG),
            ROption::RNone => (0, 0),
        };
        Self {
            millis: ts.millis,
            ttl,
            counter: ts.counter,
            node_flags: node | flag,
        }
    }

    pub(crate) fn node(self) -> u32 {
        self.node_flags & !TTL_FLAG
    }

    pub(crate) fn ttl(self) -> Option<u64> {
        (self.node_flags & TTL_FLAG != 0).then_some(self.ttl)
    }

    pub(crate) fn ttl_r(self) -> ROption<u64> {
        self.ttl().into()
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

    /// True when it has a TTL that ran out strictly before `now_ms`.
    pub(crate) fn is_expired(self, now_ms: u64) -> bool {
        self.ttl()
            .is_some_and(|ttl| self.millis.saturating_add(ttl) < now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_pack_round_trips_timestamp_and_ttl() {
        let mut nodes = NodeInterner::default();
        let ts = Timestamp::new(1_700_000_000_000, 9, "node-b");
        let s = Stamp::pack(&ts, ROption::RSome(0), &mut nodes);
        assert_eq!(s.timestamp(&nodes), ts);
        assert_eq!(s.ttl(), Some(0), "a zero TTL is kept, not read as none");
        let s2 = Stamp::pack(&ts, ROption::RNone, &mut nodes);
        assert_eq!(s2.ttl(), None);
        assert_eq!(s.node(), s2.node(), "node ids are interned once");
        assert_eq!(std::mem::size_of::<Stamp>(), 24);
    }

    #[test]
    fn t11_compare_matches_timestamp_order() {
        let mut nodes = NodeInterner::default();
        let a = Timestamp::new(5, 1, "b");
        let s = Stamp::pack(&a, ROption::RNone, &mut nodes);
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
        let s = Stamp::pack(
            &Timestamp::new(1000, 0, "n"),
            ROption::RSome(100),
            &mut nodes,
        );
        assert!(!s.is_expired(1100));
        assert!(s.is_expired(1101));
        let forever = Stamp::pack(&Timestamp::new(1000, 0, "n"), ROption::RNone, &mut nodes);
        assert!(!forever.is_expired(u64::MAX));
    }
}
