//! Cross-crate test support: multi-process clusters and their checkers,
//! loading this workspace's plugin files. The module contract suites live in
//! `hangar-testkit` (`testkit/`).
//!
//! # Layout
//!
//! - [`cluster_state`]: a cluster's state from `/metrics` and `/health`
//!   (partitions owned and backed up, queues drained) and bounded waits.
//! - [`cluster_harness`]: `hangar` processes on loopback forming clusters,
//!   killed and restarted by multi-process tests, and a WebSocket client.
//! - [`kill_checker`]: writes at QUORUM while nodes are killed, restarted,
//!   join and leave; checks nothing acknowledged is lost and replicas agree
//!   (`tests/t48_cluster_kill_checker.rs`, `scripts/soak-cluster`).
//! - [`lock_checker`]: checks lock histories (tokens only grow, one holder
//!   at a time); `tests/t43_cluster_locks.rs` feeds it real runs.
//! - [`replica_check`]: reads each node's store after a run and compares
//!   the replicas of every partition.
//! - [`merkle_walk`]: a client's Merkle sync walk (root to every leaf),
//!   checking that hashes add up.
//! - [`support`]: deps for tests (clock, metrics, a single-node partition
//!   view), finding plugin files built by this workspace, loading them.
//!
//! `tests/t20_contracts.rs` runs the testkit's suites against the in-process
//! implementations, against the loaded plugins, and with the foreign path
//! forced; `plugin-template` runs them against its own plugins too.

pub mod cluster_harness;
pub mod cluster_state;
pub mod kill_checker;
pub mod lock_checker;
pub mod merkle_walk;
pub mod replica_check;
pub mod support;
