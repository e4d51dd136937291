//! Which keys a benchmark writes: any key, or only keys whose partition a
//! given node owns (or does not own), so that writes sent straight to a
//! partition's owner can be compared with writes the connected node has to
//! forward.
//!
//! The owners come from the server's `PARTITION_MAP` (fetched once before
//! the run, see [`super::client::fetch_partition_map`]); a key's partition is
//! [`hangar_core::partition_of`], the function every client and node agrees
//! on.

use std::fmt;

use hangar_core::{partition_of, PARTITION_COUNT};

use crate::protocol::messages::PartitionMap;

/// Which keys to write (`--keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeySelection {
    /// Any key (`all`): spread over every partition.
    #[default]
    All,
    /// Only keys whose partition node `.0` owns (`owned-by:<nodeId>`).
    OwnedBy(String),
    /// Only keys whose partition another node owns (`not-owned-by:<nodeId>`).
    NotOwnedBy(String),
}

impl KeySelection {
    /// Parses `all`, `owned-by:<nodeId>` or `not-owned-by:<nodeId>`.
    ///
    /// # Errors
    /// A message naming what was given and the accepted forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let node = |rest: &str| {
            if rest.is_empty() {
                Err(format!("--keys {s:?}: the node id after ':' is empty"))
            } else {
                Ok(rest.to_string())
            }
        };
        if s.eq_ignore_ascii_case("all") {
            Ok(Self::All)
        } else if let Some(rest) = s.strip_prefix("owned-by:") {
            Ok(Self::OwnedBy(node(rest)?))
        } else if let Some(rest) = s.strip_prefix("not-owned-by:") {
            Ok(Self::NotOwnedBy(node(rest)?))
        } else {
            Err(format!(
                "--keys {s:?}: expected all, owned-by:<nodeId> or not-owned-by:<nodeId>"
            ))
        }
    }

    /// Whether keys must be chosen by owner (so the partition map is needed).
    #[must_use]
    pub fn needs_partition_map(&self) -> bool {
        !matches!(self, Self::All)
    }
}

impl fmt::Display for KeySelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::OwnedBy(n) => write!(f, "owned-by:{n}"),
            Self::NotOwnedBy(n) => write!(f, "not-owned-by:{n}"),
        }
    }
}

/// The partitions a run may write to; every generated key falls in one.
///
/// Invariant: at least one partition is allowed (construction fails
/// otherwise), so [`KeyFilter::next_key`] always terminates.
#[derive(Debug, Clone)]
pub struct KeyFilter {
    allowed: Vec<bool>,
    count: usize,
}

impl KeyFilter {
    /// Every partition.
    #[must_use]
    pub fn all() -> Self {
        Self {
            allowed: vec![true; PARTITION_COUNT as usize],
            count: PARTITION_COUNT as usize,
        }
    }

    /// The partitions `selection` picks out of `map`.
    ///
    /// # Errors
    /// When the node named by `selection` is not a member of `map` (a typo
    /// would otherwise silently select every or no partition), or when no
    /// partition matches (e.g. `not-owned-by` the only node).
    pub fn from_map(selection: &KeySelection, map: &PartitionMap) -> Result<Self, String> {
        let (node, owned) = match selection {
            KeySelection::All => return Ok(Self::all()),
            KeySelection::OwnedBy(n) => (n, true),
            KeySelection::NotOwnedBy(n) => (n, false),
        };
        if !map.nodes.iter().any(|m| &m.node_id == node) {
            let members: Vec<&str> = map.nodes.iter().map(|m| m.node_id.as_str()).collect();
            return Err(format!(
                "--keys {selection}: node {node:?} is not in the partition map (version {}); members are {members:?}",
                map.version
            ));
        }
        let mut allowed = vec![false; PARTITION_COUNT as usize];
        for p in &map.partitions {
            if let Some(slot) = allowed.get_mut(p.partition_id as usize) {
                *slot = (&p.owner_node_id == node) == owned;
            }
        }
        let count = allowed.iter().filter(|a| **a).count();
        if count == 0 {
            return Err(format!(
                "--keys {selection}: no partition matches in the partition map (version {}, {} partitions listed)",
                map.version,
                map.partitions.len()
            ));
        }
        Ok(Self { allowed, count })
    }

    /// How many of the 271 partitions are allowed (at least 1).
    #[must_use]
    pub fn partitions(&self) -> usize {
        self.count
    }

    /// Whether `key` falls in an allowed partition.
    #[must_use]
    pub fn allows(&self, key: &str) -> bool {
        self.allowed[partition_of(key) as usize]
    }

    /// Writes into `key` the next key `k<conn>-<seq>` (advancing `seq`) that
    /// falls in an allowed partition. Keys stay unique per connection.
    pub fn next_key(&self, conn: usize, seq: &mut u64, key: &mut String) {
        loop {
            *seq += 1;
            key.clear();
            let _ = std::fmt::Write::write_fmt(key, format_args!("k{conn}-{seq}"));
            if self.allows(key) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{NodeEndpoints, NodeInfo, NodeStatus, PartitionInfo};

    /// Three members; partition p is owned by n{p % 3 + 1}.
    fn map() -> PartitionMap {
        let node = |id: &str| NodeInfo {
            node_id: id.into(),
            endpoints: NodeEndpoints {
                websocket: format!("ws://{id}/ws"),
                http: None,
            },
            status: NodeStatus::Active,
        };
        PartitionMap {
            version: 7,
            partition_count: PARTITION_COUNT,
            nodes: vec![node("n1"), node("n2"), node("n3")],
            partitions: (0..PARTITION_COUNT)
                .map(|p| PartitionInfo {
                    partition_id: p,
                    owner_node_id: format!("n{}", p % 3 + 1),
                    backup_node_ids: vec![format!("n{}", (p + 1) % 3 + 1)],
                })
                .collect(),
            generated_at: 0,
        }
    }

    #[test]
    fn t10_parse_accepts_the_three_forms_and_explains_the_rest() {
        assert_eq!(KeySelection::parse("all"), Ok(KeySelection::All));
        assert_eq!(
            KeySelection::parse("owned-by:n2"),
            Ok(KeySelection::OwnedBy("n2".into()))
        );
        assert_eq!(
            KeySelection::parse("not-owned-by:node-1"),
            Ok(KeySelection::NotOwnedBy("node-1".into()))
        );
        let e = KeySelection::parse("owner:n1").unwrap_err();
        assert!(e.contains("owned-by:<nodeId>"), "{e}");
        assert!(KeySelection::parse("owned-by:").is_err());
        for s in ["all", "owned-by:n2", "not-owned-by:n3"] {
            assert_eq!(KeySelection::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn t20_owned_by_generates_only_keys_the_node_owns() {
        let m = map();
        let f = KeyFilter::from_map(&KeySelection::OwnedBy("n2".into()), &m).unwrap();
        assert_eq!(
            f.partitions(),
            (0..PARTITION_COUNT).filter(|p| p % 3 == 1).count()
        );
        let (mut seq, mut key) = (0, String::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            f.next_key(4, &mut seq, &mut key);
            assert_eq!(partition_of(&key) % 3, 1, "{key} is not owned by n2");
            assert!(seen.insert(key.clone()), "{key} generated twice");
        }
        // Spread over the node's partitions, not stuck on one.
        let parts: std::collections::HashSet<u32> = seen.iter().map(|k| partition_of(k)).collect();
        assert!(parts.len() > 80, "only {} partitions used", parts.len());
    }

    #[test]
    fn t30_not_owned_by_generates_only_keys_other_nodes_own() {
        let f = KeyFilter::from_map(&KeySelection::NotOwnedBy("n1".into()), &map()).unwrap();
        let (mut seq, mut key) = (0, String::new());
        for _ in 0..2_000 {
            f.next_key(0, &mut seq, &mut key);
            assert_ne!(partition_of(&key) % 3, 0, "{key} is owned by n1");
        }
        let all = KeyFilter::from_map(&KeySelection::All, &map()).unwrap();
        assert_eq!(all.partitions(), PARTITION_COUNT as usize);
    }

    #[test]
    fn t40_unknown_node_or_empty_selection_is_an_error() {
        let e = KeyFilter::from_map(&KeySelection::OwnedBy("n9".into()), &map()).unwrap_err();
        assert!(e.contains("\"n9\" is not in the partition map"), "{e}");
        assert!(e.contains("n1"), "lists the members: {e}");
        let mut lone = map();
        lone.nodes.truncate(1);
        for p in &mut lone.partitions {
            p.owner_node_id = "n1".into();
        }
        let e = KeyFilter::from_map(&KeySelection::NotOwnedBy("n1".into()), &lone).unwrap_err();
        assert!(e.contains("no partition matches"), "{e}");
    }
}
