//! The licence's messages (msgpack on [`super::TOPIC`]) and round numbers.

use serde::{Deserialize, Serialize};

use crate::server::epochs::item_name;

/// A licence message (msgpack on [`super::TOPIC`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LicenceMessage {
    /// `node` asks for the newest round every member knows.
    Hello {
        /// The asking node.
        node: String,
    },
    /// The newest round `node` applied or learned of.
    State {
        /// The answering node.
        node: String,
        /// Its newest round.
        committed: u64,
    },
    /// `proposer` asks every member of `members` to accept `items`.
    Propose {
        /// The round: above every round the proposer knew.
        round: u64,
        /// The proposing node.
        proposer: String,
        /// Every member it sees, itself included.
        members: Vec<String>,
        /// The proposer's newest round.
        committed: u64,
        /// Tombstones ([`item_of`]).
        items: Vec<u64>,
    },
    /// `node` accepts `items` of `proposer`'s round.
    Accept {
        /// The round.
        round: u64,
        /// Who proposed it.
        proposer: String,
        /// The accepting node.
        node: String,
        /// What it accepts (a subset of the proposal).
        items: Vec<u64>,
    },
    /// `proposer`'s `round` ends without a prune (a member accepted
    /// nothing in common, or not every member answered in time).
    Abort {
        /// The round.
        round: u64,
        /// Who proposed it.
        proposer: String,
    },
    /// Every listed member accepted `items`: prune them.
    Commit {
        /// The round.
        round: u64,
        /// Who proposed it.
        proposer: String,
        /// The members that accepted.
        members: Vec<String>,
        /// The items all of them accepted.
        items: Vec<u64>,
    },
}

/// A round number above `highest`, made unique per proposer by its low 16
/// bits (two nodes that knew the same highest round never share one).
pub fn next_round(highest: u64, node_id: &str) -> u64 {
    let salt = item_name("", "", node_id) & 0xffff;
    ((highest >> 16) + 1) << 16 | salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_round_numbers_rise_above_what_was_known_and_differ_per_proposer() {
        for highest in [0, 1, 0xffff, 0x1_0000, 0x1234_5678] {
            let a = next_round(highest, "n1");
            let b = next_round(highest, "n2");
            assert!(a > highest && b > highest, "{highest}: {a} {b}");
            assert_ne!(a, b, "two proposers that knew {highest}");
            assert!(next_round(a.max(b), "n1") > a.max(b));
        }
    }

    #[test]
    fn t11_messages_round_trip_as_tagged_msgpack_maps() {
        let m = LicenceMessage::Propose {
            round: 7,
            proposer: "n1".into(),
            members: vec!["n1".into(), "n2".into()],
            committed: 3,
            items: vec![1, u64::MAX],
        };
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        let v: rmpv::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(v["type"].as_str(), Some("PROPOSE"));
        assert_eq!(rmp_serde::from_slice::<LicenceMessage>(&bytes).unwrap(), m);
        let bad = rmp_serde::to_vec_named(&serde_json::json!({"type": "PROPOSE"})).unwrap();
        assert!(rmp_serde::from_slice::<LicenceMessage>(&bad).is_err());
    }
}
