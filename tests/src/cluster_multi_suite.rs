//! The conformance suite of `ClusterModule` on a cluster of three nodes:
//! three real hosts in this process (embedded modules, loopback ports, their
//! own data directories), whose cluster modules come from the builder under
//! test and whose storage is the default module. A cluster module passes
//! when the nodes agree on one table, a write forwarded from any node is
//! applied by its owner, and a change replicated at QUORUM or STRONG is on
//! the backups when `replicate` says so.
//!
//! [`run`] panics naming the first case that fails; a negative control (a
//! module that claims QUORUM without shipping copies) must make it fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::config::ClusterModuleConfig;
use hangar_core::module::cluster::ClusterDeps;
use hangar_core::module::cluster::ClusterModule;
use hangar_core::module::cluster_types::ReplicationRequest;
use hangar_core::module::storage_types::{ApplyBatch, Origin, RecordState, WriteOp};
use hangar_core::{partition_of, ConsistencyLevel, ModuleResult, WriteConcern, PARTITION_COUNT};
use hangar_host::{HangarConfig, Modules, Running};

use crate::cluster_harness::free_port;
use crate::storage_suite::lww;

/// Builds the cluster module of each node (config and deps as the host
/// passes them).
pub type ClusterBuilder = Arc<
    dyn Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>> + Send + Sync,
>;

/// Three hosts forming one cluster.
pub struct Three {
    /// The nodes, `n1`..`n3`.
    pub nodes: Vec<Running>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Three {
    /// Starts three hosts with cluster modules from `build` and waits (at
    /// most 30 s) until they agree on one partition table.
    ///
    /// # Panics
    /// When they do not start or agree in time.
    pub async fn start(build: &ClusterBuilder) -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        let mut starting = Vec::new();
        for i in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut c = HangarConfig {
                node_id: format!("n{}", i + 1),
                host: "127.0.0.1".into(),
                port: 0,
                data_dir: dir.path().to_path_buf(),
                ..HangarConfig::default()
            };
            c.auth.jwt_secret = None;
            c.storage.set("backend", "memory");
            c.cluster.host = "127.0.0.1".into();
            c.cluster.cluster_port = ports[i];
            c.cluster.cluster_id = "suite".into();
            c.cluster.gossip_interval_ms = 100;
            c.cluster.bootstrap_timeout_ms = 3_000;
            c.cluster.seed_nodes = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("127.0.0.1:{}", ports[j]))
                .collect();
            c.finish().expect("valid config");
            let b = build.clone();
            let modules = Modules::embedded(hangar_storage_create, move |cc, d| b(cc, d));
            starting.push(tokio::spawn(hangar_host::start(c, modules)));
            dirs.push(dir);
        }
        for s in starting {
            nodes.push(s.await.expect("join").expect("node starts"));
        }
        let three = Self { nodes, _dirs: dirs };
        three.wait_agreed(Duration::from_secs(30)).await;
        three
    }

    async fn wait_agreed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let st: Vec<_> = self.nodes.iter().map(|n| n.node.cluster.status()).collect();
            let v = st[0].table_version;
            if st
                .iter()
                .all(|s| s.ready && s.table_version == v && s.members_alive == 3)
                && self
                    .nodes
                    .iter()
                    .all(|n| n.node.cluster.partition_map().nodes.len() == 3)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "three nodes did not agree on one table within {timeout:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Index of the node with id `id`.
    fn index(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.node.config.node_id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// A key whose owner is node `i`.
    fn key_owned_by(&self, i: usize, prefix: &str) -> String {
        let view = self.nodes[i].node.cluster.partition_view();
        (0..)
            .map(|k| format!("{prefix}-{k}"))
            .find(|k| view.is_local_owner(partition_of(k)))
            .expect("node owns some partition")
    }

    /// Shuts every node down.
    pub async fn stop(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

fn hangar_storage_create(
    c: hangar_core::config::StorageModuleConfig,
    d: hangar_core::module::storage::StorageDeps,
) -> ModuleResult<Arc<dyn hangar_core::module::storage::StorageModule>> {
    hangar_storage::create(c, d)
}

async fn present(r: &Running, map: &str, key: &str) -> bool {
    let got = r
        .node
        .storage
        .read(map.into(), RVec::from(vec![RString::from(key)]))
        .await
        .expect("read");
    !matches!(got[0].state, RecordState::Missing)
}

/// Runs every case on a fresh three-node cluster built with `build`.
///
/// # Panics
/// On the first failing case, naming it.
pub async fn run(label: &str, build: ClusterBuilder) {
    let three = Three::start(&build).await;

    // m10: one table; every partition has an owner and distinct backups.
    let map = three.nodes[0].node.cluster.partition_map();
    assert_eq!(
        map.partitions.len(),
        PARTITION_COUNT as usize,
        "[{label}] m10"
    );
    for p in map.partitions.iter() {
        assert!(
            !p.backups.contains(&p.owner),
            "[{label}] m10: p{} backs itself up",
            p.partition
        );
        assert_eq!(
            p.backups.len(),
            1,
            "[{label}] m10: p{} has one backup",
            p.partition
        );
    }
    for n in &three.nodes {
        assert_eq!(
            n.node.cluster.partition_map().version,
            map.version,
            "[{label}] m10: same version"
        );
    }
    eprintln!("[{label}] m10 one agreed table: ok");

    // m20: a change replicated at QUORUM / STRONG is on its backup when
    // replicate says the level is met.
    for (level, prefix) in [
        (ConsistencyLevel::Quorum, "q"),
        (ConsistencyLevel::Strong, "s"),
    ] {
        let key = three.key_owned_by(0, prefix);
        let change = lww("m", &key, Some(serde_json::json!({"v": 1})), 100, "suite");
        let out = three.nodes[0]
            .node
            .cluster
            .replicate(ReplicationRequest {
                changes: RVec::from(vec![change]),
                consistency: ROption::RSome(level),
                durable: false,
            })
            .await
            .expect("replicate");
        assert!(out.success, "[{label}] m20 {level:?}: {out:?}");
        let backup = map.partitions[partition_of(&key) as usize].backups[0].to_string();
        let b = three.index(&backup);
        assert!(
            present(&three.nodes[b], "m", &key).await,
            "[{label}] m20 {level:?}: replicate succeeded but backup {backup} does not hold {key}"
        );
    }
    eprintln!("[{label}] m20 QUORUM/STRONG copies on the backup: ok");

    // m30: a write forwarded from another node is applied by the owner and
    // answered with its acknowledgement.
    let key = three.key_owned_by(1, "f");
    let batch = ApplyBatch {
        ops: RVec::from(vec![WriteOp {
            op: lww("m", &key, Some(serde_json::json!({"v": 2})), 200, "suite"),
            concern: WriteConcern::Applied,
            timeout_ms: ROption::RSome(5_000),
        }]),
        origin: Origin::client(1, "n1"),
        consistency: ROption::RNone,
    };
    let owner: RString = three.nodes[1].node.config.node_id.as_str().into();
    let acks = three.nodes[0]
        .node
        .cluster
        .forward(owner, batch)
        .await
        .expect("forward");
    assert!(
        acks.len() == 1 && acks[0].success,
        "[{label}] m30: {acks:?}"
    );
    assert!(
        present(&three.nodes[1], "m", &key).await,
        "[{label}] m30: the owner holds it"
    );
    eprintln!("[{label}] m30 forwarded write applied by its owner: ok");

    three.stop().await;
}
