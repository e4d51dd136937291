//! The contract suite of `ClusterModule` for a node that is alone (no
//! peers): every implementation must pass it. Each case gets a fresh module
//! from the caller's [`ClusterFactory`], with the accessor of a storage
//! module from a [`StorageFactory`] attached (the storage module is not
//! started: cases that need it start it), and started.
//!
//! Run it with [`crate::cluster_suite!`] (one `#[test]` per case) or case by
//! case with [`try_case`].

use std::sync::Arc;

use hangar_core::config::{ClusterModuleConfig, StorageModuleConfig};
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::ModuleResult;

use crate::config::{cluster_config, storage_config};
use crate::storage::StorageFactory;
use crate::support::{cluster_deps, storage_deps};
use crate::Case;

mod cases;

/// Builds a cluster module (not yet started) from the config and deps the
/// suite passes, as a host would. Any
/// `Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>`
/// is one, e.g. a plugin's own `create`.
pub trait ClusterFactory: Send + Sync + 'static {
    /// A fresh module.
    ///
    /// # Errors
    /// What the module's constructor refuses.
    fn build(
        &self,
        config: ClusterModuleConfig,
        deps: ClusterDeps,
    ) -> ModuleResult<Arc<dyn ClusterModule>>;
}

impl<F> ClusterFactory for F
where
    F: Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>
        + Send
        + Sync
        + 'static,
{
    fn build(
        &self,
        config: ClusterModuleConfig,
        deps: ClusterDeps,
    ) -> ModuleResult<Arc<dyn ClusterModule>> {
        self(config, deps)
    }
}

/// The node id of the lone node.
pub const NODE: &str = "n1";

/// What a case works with.
pub struct Ctx {
    /// The started cluster module.
    pub m: Arc<dyn ClusterModule>,
    /// The storage module whose accessor `m` was given (not started).
    pub storage: Arc<dyn StorageModule>,
}

/// The names of every case, for [`crate::cluster_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __cluster_cases {
    ($($mode:tt)*) => {
        $crate::__expand_cases! { $($mode)*; cluster;
            cases::t10_a_lone_node_owns_every_partition,
            cases::t11_attaching_storage_twice_is_refused,
            cases::t20_replication_without_backups_succeeds_at_every_level,
            cases::t30_locks_grant_refuse_and_release,
            cases::t31_a_holder_that_disconnects_loses_its_locks,
            cases::t35_a_lone_nodes_reads_are_its_storages,
            cases::t36_a_lone_nodes_merkle_tree_is_its_storages,
            cases::t40_shutdown_is_idempotent,
        }
    };
}

/// Every case.
#[must_use]
pub fn cases() -> Vec<Case<Ctx>> {
    crate::__cluster_cases!((list))
}

/// Runs the case `name` against a fresh cluster module from `cluster`,
/// wired to a storage module from `storage`, then shuts it down.
///
/// # Errors
/// What failed, as one line naming the case.
///
/// # Panics
/// If `name` is not a case of this suite.
pub async fn try_case<C, S>(name: &str, cluster: C, storage: S) -> Result<(), String>
where
    C: Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>
        + Send
        + Sync
        + 'static,
    S: Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
        + Send
        + Sync
        + 'static,
{
    let case = crate::find_case(cases(), name, "cluster");
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("cluster case {name}: {what}: {e}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let m = cluster
        .build(
            cluster_config(NODE, &dir.path().join("cluster"), 0, &[]),
            cluster_deps(NODE),
        )
        .map_err(|e| fail("the cluster factory refused", &e))?;
    let s = storage
        .build(storage_config(NODE, dir.path()), storage_deps(NODE))
        .map_err(|e| fail("the storage factory refused", &e))?;
    m.attach_storage(s.accessor())
        .map_err(|e| fail("attach_storage failed", &e))?;
    m.start().await.map_err(|e| fail("start failed", &e))?;
    let r = crate::run_isolated((case.run)(Ctx {
        m: m.clone(),
        storage: s.clone(),
    }))
    .await;
    let _ = m.shutdown().await;
    let _ = s.shutdown().await;
    r.map_err(|msg| format!("cluster case {name} failed: {msg}"))
}

/// [`try_case`] on a runtime of its own, the factories in a pair; what
/// each test of
/// [`crate::cluster_suite!`] calls.
///
/// # Panics
/// When the case fails, with [`try_case`]'s message.
pub fn run_one<C, S>(name: &str, (cluster, storage): (C, S))
where
    C: Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>
        + Send
        + Sync
        + 'static,
    S: Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
        + Send
        + Sync
        + 'static,
{
    crate::current_thread_runtime().block_on(async {
        if let Err(msg) = try_case(name, cluster, storage).await {
            panic!("{msg}");
        }
    });
}
