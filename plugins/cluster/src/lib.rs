//! Hangar's default cluster module, built as a plugin (`cdylib`) and as a
//! library (`rlib`) for embedding.
//!
//! # Layout
//!
//! - `module`: [`DefaultCluster`], the `ClusterModule` implementation.
//! - `partition_table`: the 271-partition table and the partition view.
//! - `locks`: named locks with TTL leases and fencing tokens.
//! - `merkle_manager`: per-partition Merkle roots for anti-entropy.
//! - `raft`: Raft (openraft) for the member list, partition table and fencing.

pub mod locks;
pub mod merkle_manager;
pub mod module;
pub mod partition_table;
pub mod raft;

pub use module::{create, DefaultCluster};

hangar_plugin_sdk::export_cluster_plugin!(crate::module::create);
