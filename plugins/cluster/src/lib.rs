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
//! - `strategy`: [`ReplicationStrategy`], the replication extension point
//!   (placement, shipping, acknowledgements) and [`DefaultStrategy`].
//! - `wire`: what nodes say to each other on each channel.
//! - `settings`: [`ClusterSettings`], the plugin's own `[cluster]`
//!   settings (transport, gossip, replication, migration, repair, TLS,
//!   discovery, consistency) and the variables that set them.
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
pub mod settings;
pub mod strategy;
pub mod transport;
pub mod wire;

pub use module::{create, create_with_strategy, DefaultCluster};
pub use settings::ClusterSettings;
pub use strategy::{DefaultStrategy, ReplicationStrategy};

hangar_plugin_sdk::export_cluster_plugin!(crate::module::create, settings: crate::settings::ClusterSettings);

#[doc(hidden)]
pub use hangar_plugin_sdk as __sdk;

/// Exports, from the calling crate, a cluster plugin that is the default
/// cluster module run with the strategy `$strategy` (an expression of type
/// `Arc<dyn ReplicationStrategy>`, evaluated each time the host creates the
/// module). The manifest takes the calling crate's name, version and
/// description, like `hangar_plugin_sdk::export_cluster_plugin!`, and the
/// default module's settings ([`ClusterSettings`]); the crate must be a
/// `cdylib` depending on `hangar-cluster` and `hangar-plugin-sdk`.
///
/// ```ignore
/// hangar_cluster::export_cluster_plugin_with_strategy!(std::sync::Arc::new(MyStrategy));
/// ```
#[macro_export]
macro_rules! export_cluster_plugin_with_strategy {
    ($strategy:expr) => {
        fn __hangar_cluster_with_strategy(
            config: $crate::__sdk::__core::config::ClusterModuleConfig,
            deps: $crate::__sdk::__core::module::cluster::ClusterDeps,
        ) -> $crate::__sdk::__core::ModuleResult<
            ::std::sync::Arc<dyn $crate::__sdk::__core::module::cluster::ClusterModule>,
        > {
            $crate::create_with_strategy(config, deps, $strategy)
        }
        $crate::__sdk::export_cluster_plugin!(
            __hangar_cluster_with_strategy,
            settings: $crate::ClusterSettings
        );
    };
}
