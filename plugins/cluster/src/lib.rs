//! Hangar's default cluster module, built as a plugin (`cdylib`) and as a
//! library (`rlib`) for embedding.
//!
//! # Layout
//!
//! - `module`: [`DefaultCluster`], the `ClusterModule` implementation: wiring
//!   and the trait methods only.
//! - `transport`: node-to-node frames on the cluster port, the handshake
//!   (cluster id), optional mutual TLS, bounded queues.
//! - `membership`: gossip membership and failure detection (chitchat).
//! - `raft`: what is agreed cluster-wide (members, the partition table,
//!   fencing counters), on openraft.
//! - `formation`: forming the cluster; committing and installing tables.
//! - `partition_table`: the 271-partition table, rebalancing, the view.
//! - `routing`: forwarded writes, change events, topic sequencing.
//! - `replication`: shipping changes to backups at a consistency level.
//! - `scatter`: queries, live queries, search and client Merkle sync over
//!   every partition, gathered from every node and merged on the client's
//!   node.
//! - `repair`: anti-entropy repair: owners compare per-partition digests
//!   with their backups and exchange the differing records, both ways.
//! - `wire`: what nodes say to each other on each channel.
//! - `locks`: named locks with TTL leases and fencing tokens, as the Raft
//!   state keeps them; `lock_service`: the lock operations over Raft and
//!   the leader's keeper that frees the locks of dead or restarted nodes.

pub mod formation;
pub mod lock_service;
pub mod locks;
pub mod membership;
pub mod migration;
pub mod module;
pub mod partition_table;
pub mod raft;
pub mod repair;
pub mod replication;
pub mod routing;
pub mod scatter;
pub mod transport;
pub mod wire;

pub use module::{create, DefaultCluster};

hangar_plugin_sdk::export_cluster_plugin!(crate::module::create);
