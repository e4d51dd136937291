//! Raft adapter tests: several `ClusterRaft` instances in one process, each
//! with its own directory (real redb files), connected by an in-process
//! `RaftRpc` that routes each call to the target's `handle_rpc` and can cut
//! a node off. The real network transport is tested in the node's
//! multi-process tests.

mod harness;

mod t10_commands;
mod t30_recovery;
mod t50_membership;
mod t70_compaction;
mod t80_lifecycle;
