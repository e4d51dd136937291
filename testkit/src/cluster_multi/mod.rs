//! The contract suite of `ClusterModule` on a cluster of three nodes: three
//! nodes in this process, each a cluster module from the caller's
//! [`ClusterFactory`] and a storage module from a [`StorageFactory`], wired
//! as a host wires them (the storage module sees the cluster's partition
//! view, the cluster module gets the storage accessor, the change feed and
//! a local node that applies forwarded writes), on loopback ports with
//! their own data directories. A cluster module passes when the nodes agree
//! on one table, a write forwarded from any node is applied by its owner,
//! and a change replicated at QUORUM or STRONG is on the backups when
//! `replicate` says so.
//!
//! Each case starts its own cluster. Run it with
//! [`crate::cluster_multi_suite!`] or case by case with [`try_case`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RString, RVec};
use hangar_core::config::{ClusterModuleConfig, StorageModuleConfig};
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::local_node::{LocalNode, TopicPublish};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{AckResult, ApplyBatch, ChangeEvent, ChangeSink};
use hangar_core::module::{boxed, ModuleFuture};
use hangar_core::{partition_of, ModuleResult};

use crate::cluster::ClusterFactory;
use crate::config::{cluster_config, storage_config};
use crate::storage::StorageFactory;
use crate::support::{cluster_deps, free_port};
use crate::Case;

mod cases;

/// One node: its modules.
pub struct Node {
    /// Node id, `n1`..`n3`.
    pub id: String,
    /// Its cluster module (started).
    pub cluster: Arc<dyn ClusterModule>,
    /// Its storage module (started).
    pub storage: Arc<dyn StorageModule>,
}

/// Three nodes forming one cluster: what a case works with.
pub struct Three {
    /// The nodes, `n1`..`n3`.
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// Runs a write forwarded by a peer on this node's storage module and
/// waits for its acknowledgements, as a host's write path does for a lone
/// batch; changes from peers and topics have no subscribers here.
struct SuiteNode {
    storage: Arc<dyn StorageModule>,
}

impl LocalNode for SuiteNode {
    fn write(&self, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        let storage = self.storage.clone();
        boxed(async move {
            let outcomes = storage.apply(batch).await?;
            storage
                .await_acks(outcomes.iter().map(|o| o.ack).collect())
                .await
        })
    }
    fn deliver_change(&self, _event: &ChangeEvent) {}
    fn deliver_topic(&self, _message: &TopicPublish) {}
    fn topology_changed(&self, _version: u64) {}
}

/// The change feed: every change applied by storage goes to the cluster
/// module, as a host's does.
struct Feed(Arc<dyn ClusterModule>);

impl ChangeSink for Feed {
    fn on_change(&self, event: &ChangeEvent) {
        self.0.observe_change(event);
    }
}

/// Builds, wires and starts one node (a host's start-up order: cluster
/// module, storage module with the cluster's view, cross-wiring, storage
/// start, cluster start).
async fn start_node(
    id: String,
    dir: std::path::PathBuf,
    port: u16,
    seeds: Vec<String>,
    cluster: Arc<dyn ClusterFactory>,
    storage: Arc<dyn StorageFactory>,
) -> ModuleResult<Node> {
    let deps = cluster_deps(&id);
    let clock = deps.clock.clone();
    let metrics = deps.metrics.clone();
    let c = cluster.build(
        cluster_config(&id, &dir.join("cluster"), port, &seeds),
        deps,
    )?;
    let s = storage.build(
        storage_config(&id, &dir),
        StorageDeps {
            clock,
            metrics,
            partitions: c.partition_view(),
        },
    )?;
    c.attach_storage(s.accessor())?;
    c.attach_node(Arc::new(SuiteNode { storage: s.clone() }))?;
    s.set_change_sink(Arc::new(Feed(c.clone())));
    s.start().await?;
    if let Err(e) = c.start().await {
        let _ = s.shutdown().await;
        return Err(e);
    }
    Ok(Node {
        id,
        cluster: c,
        storage: s,
    })
}

impl Three {
    /// Starts three nodes and waits (at most 30 s) until they agree on one
    /// partition table.
    ///
    /// # Errors
    /// A node that does not start, or no agreement in time.
    pub async fn start(
        cluster: Arc<dyn ClusterFactory>,
        storage: Arc<dyn StorageFactory>,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut starting = Vec::new();
        for i in 0..3 {
            let seeds = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("127.0.0.1:{}", ports[j]))
                .collect();
            let id = format!("n{}", i + 1);
            starting.push(tokio::spawn(start_node(
                id.clone(),
                dir.path().join(&id),
                ports[i],
                seeds,
                cluster.clone(),
                storage.clone(),
            )));
        }
        let mut nodes = Vec::new();
        let mut failed = Vec::new();
        for (i, s) in starting.into_iter().enumerate() {
            match s.await.map_err(crate::support::join_error_message) {
                Ok(Ok(n)) => nodes.push(n),
                Ok(Err(e)) => failed.push(format!("n{}: {e}", i + 1)),
                Err(e) => failed.push(format!("n{}: {e}", i + 1)),
            }
        }
        let three = Self { nodes, _dir: dir };
        if !failed.is_empty() {
            three.stop().await;
            return Err(format!("nodes did not start: {failed:?}"));
        }
        if let Err(e) = three.wait_agreed(Duration::from_secs(30)).await {
            three.stop().await;
            return Err(e);
        }
        Ok(three)
    }

    async fn wait_agreed(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let st: Vec<_> = self.nodes.iter().map(|n| n.cluster.status()).collect();
            let v = st[0].table_version;
            if st
                .iter()
                .all(|s| s.ready && s.table_version == v && s.members_alive == 3)
                && self
                    .nodes
                    .iter()
                    .all(|n| n.cluster.partition_map().nodes.len() == 3)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "three nodes did not agree on one table within {timeout:?}: {st:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Index of the node with id `id`.
    ///
    /// # Panics
    /// If there is none.
    #[must_use]
    pub fn index(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// A key whose owner is node `i`.
    ///
    /// # Panics
    /// If node `i` owns no partition.
    #[must_use]
    pub fn key_owned_by(&self, i: usize, prefix: &str) -> String {
        let view = self.nodes[i].cluster.partition_view();
        (0..)
            .map(|k| format!("{prefix}-{k}"))
            .find(|k| view.is_local_owner(partition_of(k)))
            .expect("node owns some partition")
    }

    /// Shuts every node down (cluster module first, as a host does).
    pub async fn stop(&self) {
        for n in &self.nodes {
            let _ = n.cluster.shutdown().await;
            let _ = n.storage.shutdown().await;
        }
    }

    /// True when node `i`'s storage holds `map`/`key`.
    ///
    /// # Panics
    /// If the read fails.
    pub async fn holds(&self, i: usize, map: &str, key: &str) -> bool {
        let got = self.nodes[i]
            .storage
            .read(map.into(), RVec::from(vec![RString::from(key)]))
            .await
            .expect("read");
        !matches!(
            got[0].state,
            hangar_core::module::storage_types::RecordState::Missing
        )
    }
}

/// The names of every case, for [`crate::cluster_multi_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __cluster_multi_cases {
    ($($mode:tt)*) => {
        $crate::__expand_cases! { $($mode)*; cluster_multi;
            cases::t10_the_nodes_agree_on_one_table_with_distinct_backups,
            cases::t20_quorum_and_strong_copies_are_on_the_backup_when_replicate_says_so,
            cases::t30_a_forwarded_write_is_applied_by_its_owner,
        }
    };
}

/// Every case.
#[must_use]
pub fn cases() -> Vec<Case<Arc<Three>>> {
    crate::__cluster_multi_cases!((list))
}

/// Runs the case `name` on a fresh cluster of three nodes with cluster
/// modules from `cluster` and storage modules from `storage`, then stops it.
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
    let case = crate::find_case(cases(), name, "three-node cluster");
    let three = Arc::new(
        Three::start(Arc::new(cluster), Arc::new(storage))
            .await
            .map_err(|e| format!("three-node case {name}: {e}"))?,
    );
    let r = crate::run_isolated((case.run)(three.clone())).await;
    three.stop().await;
    r.map_err(|msg| format!("three-node case {name} failed: {msg}"))
}

/// [`try_case`] on a runtime of its own (four worker threads), the
/// factories in a pair; what each test of [`crate::cluster_multi_suite!`] calls.
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
    crate::multi_thread_runtime(4).block_on(async {
        if let Err(msg) = try_case(name, cluster, storage).await {
            panic!("{msg}");
        }
    });
}
