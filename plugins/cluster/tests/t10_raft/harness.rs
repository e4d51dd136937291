//! The in-process network and cluster the Raft tests share.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hangar_cluster::raft::{
    rpc_kind, ClusterRaft, ClusterState, Command, CommandResponse, NodeAddr, RaftRpc, RaftTiming,
    Table,
};
use parking_lot::Mutex;
use tempfile::TempDir;

/// The in-process network: cluster address -> instance, plus cut nodes.
#[derive(Default)]
pub(crate) struct Net {
    pub(crate) nodes: Mutex<HashMap<String, Arc<ClusterRaft>>>,
    pub(crate) cut: Mutex<HashSet<String>>,
    /// Calls delivered, by request kind.
    kinds: Mutex<HashMap<&'static str, usize>>,
}

impl Net {
    pub(crate) fn delivered(&self, kind: &str) -> usize {
        self.kinds.lock().get(kind).copied().unwrap_or(0)
    }
}

/// One node's view of the network: calls from `from`.
pub(crate) struct Rpc {
    pub(crate) net: Arc<Net>,
    pub(crate) from: String,
}

impl RaftRpc for Rpc {
    fn call(
        &self,
        cluster_addr: &str,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<bytes::Bytes, String>> {
        let target = {
            let cut = self.net.cut.lock();
            if cut.contains(&self.from) || cut.contains(cluster_addr) {
                None
            } else {
                self.net.nodes.lock().get(cluster_addr).cloned()
            }
        };
        if target.is_some() {
            if let Some(k) = rpc_kind(&body) {
                *self.net.kinds.lock().entry(k).or_default() += 1;
            }
        }
        let addr = cluster_addr.to_string();
        Box::pin(async move {
            let node = target.ok_or_else(|| format!("{addr} is unreachable"))?;
            tokio::time::timeout(timeout, node.handle_rpc(body))
                .await
                .map_err(|_| format!("{addr} timed out"))?
        })
    }
}

pub(crate) fn test_timing(snapshot_every: u64) -> RaftTiming {
    RaftTiming {
        heartbeat_ms: 50,
        election_min_ms: 200,
        election_max_ms: 400,
        snapshot_every,
    }
}

pub(crate) fn addr(i: usize) -> NodeAddr {
    NodeAddr {
        node_id: format!("n{i}"),
        cluster_addr: format!("127.0.0.1:{}", 7100 + i),
        client_endpoint: format!("127.0.0.1:{}", 8100 + i),
        zone: format!("z{}", i % 2),
    }
}

pub(crate) fn table(version: u64, owner: &str) -> Table {
    Table {
        version,
        owners: vec![owner.to_string(); 271],
        backups: vec![vec![]; 271],
        pending: Vec::new(),
    }
}

/// Nodes `n0..nN`, each with its own directory; started on demand.
pub(crate) struct Cluster {
    pub(crate) net: Arc<Net>,
    dirs: Vec<TempDir>,
    nodes: Vec<Option<Arc<ClusterRaft>>>,
    snapshot_every: u64,
}

impl Cluster {
    pub(crate) fn new(n: usize, snapshot_every: u64) -> Self {
        Self {
            net: Arc::new(Net::default()),
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: vec![None; n],
            snapshot_every,
        }
    }

    /// Opens node `i` from its directory and puts it on the network.
    pub(crate) async fn start(&mut self, i: usize) -> Arc<ClusterRaft> {
        let me = addr(i);
        let rpc = Arc::new(Rpc {
            net: self.net.clone(),
            from: me.cluster_addr.clone(),
        });
        let node = ClusterRaft::open(
            self.dirs[i].path(),
            me.clone(),
            rpc,
            test_timing(self.snapshot_every),
        )
        .await
        .unwrap_or_else(|e| panic!("open n{i}: {e}"));
        self.net.nodes.lock().insert(me.cluster_addr, node.clone());
        self.nodes[i] = Some(node.clone());
        node
    }

    /// Starts nodes `0..k` and initializes the cluster from node 0.
    pub(crate) async fn form(&mut self, k: usize) {
        for i in 0..k {
            self.start(i).await;
        }
        let members = (0..k).map(addr).collect();
        self.node(0).initialize(members).await.unwrap();
    }

    pub(crate) fn node(&self, i: usize) -> Arc<ClusterRaft> {
        self.nodes[i].clone().expect("node is running")
    }

    pub(crate) fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// Cuts node `i` off and shuts it down.
    pub(crate) async fn stop(&mut self, i: usize) {
        self.net.cut.lock().insert(addr(i).cluster_addr);
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Reconnects node `i` (after a stop) and opens it again.
    pub(crate) async fn restart(&mut self, i: usize) -> Arc<ClusterRaft> {
        let n = self.start(i).await;
        self.net.cut.lock().remove(&addr(i).cluster_addr);
        n
    }

    /// Waits until exactly one of `among` leads and all of them name it.
    pub(crate) async fn leader(&self, among: &[usize], within: Duration) -> usize {
        let found = wait_until(within, || {
            let statuses: Vec<_> = among.iter().map(|i| (*i, self.node(*i).status())).collect();
            let leaders: Vec<usize> = statuses
                .iter()
                .filter(|(_, s)| s.is_leader)
                .map(|(i, _)| *i)
                .collect();
            if leaders.len() != 1 {
                return None;
            }
            let name = addr(leaders[0]).node_id;
            statuses
                .iter()
                .all(|(_, s)| s.leader.as_deref() == Some(name.as_str()))
                .then_some(leaders[0])
        })
        .await;
        found.unwrap_or_else(|| {
            let statuses: Vec<_> = among.iter().map(|i| self.node(*i).status()).collect();
            panic!("no single agreed leader among {among:?} within {within:?}: {statuses:#?}")
        })
    }

    /// Waits until every running node's applied state satisfies `f`.
    pub(crate) async fn all_states(&self, within: Duration, f: impl Fn(&ClusterState) -> bool) {
        let running = self.running();
        let ok = wait_until(within, || {
            running
                .iter()
                .all(|i| f(&self.node(*i).state().borrow()))
                .then_some(())
        })
        .await;
        if ok.is_none() {
            let states: Vec<_> = running
                .iter()
                .map(|i| (*i, (*self.node(*i).state().borrow()).clone()))
                .collect();
            panic!("states did not converge within {within:?}: {states:?}");
        }
    }

    pub(crate) async fn shutdown_all(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(n) = self.nodes[i].take() {
                n.shutdown().await;
            }
        }
    }
}

/// Polls `f` every 10 ms until it yields `Some`, for at most `within`.
pub(crate) async fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails the test if `fut` takes longer than `secs`.
pub(crate) async fn bounded<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("test body exceeded {secs} s"))
}

pub(crate) async fn fence(n: &ClusterRaft, name: &str) -> u64 {
    match n.propose(Command::NextFence { name: name.into() }).await {
        Ok(CommandResponse::Fence(t)) => t,
        other => panic!("NextFence {name} on {}: {other:?}", n.me().node_id),
    }
}

pub(crate) async fn set_table(n: &ClusterRaft, expected: u64, t: Table) -> CommandResponse {
    n.propose(Command::SetTable {
        expected_version: expected,
        table: t,
    })
    .await
    .unwrap_or_else(|e| panic!("SetTable on {}: {e}", n.me().node_id))
}

pub(crate) const SECS: Duration = Duration::from_secs(1);
