//! Raft adapter tests: several `ClusterRaft` instances in one process, each
//! with its own directory (real redb files), connected by an in-process
//! `RaftRpc` that routes each call to the target's `handle_rpc` and can cut
//! a node off. The real network transport is tested in the node's
//! multi-process tests.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hangar_cluster::raft::{
    rpc_kind, ClusterRaft, ClusterState, Command, CommandResponse, NodeAddr, RaftError, RaftRpc,
    RaftTiming, TableRecord,
};
use parking_lot::Mutex;
use tempfile::TempDir;

// ---------------------------------------------------------------- harness

/// The in-process network: cluster address -> instance, plus cut nodes.
#[derive(Default)]
struct Net {
    nodes: Mutex<HashMap<String, Arc<ClusterRaft>>>,
    cut: Mutex<HashSet<String>>,
    /// Calls delivered, by request kind.
    kinds: Mutex<HashMap<&'static str, usize>>,
}

impl Net {
    fn delivered(&self, kind: &str) -> usize {
        self.kinds.lock().get(kind).copied().unwrap_or(0)
    }
}

/// One node's view of the network: calls from `from`.
struct Rpc {
    net: Arc<Net>,
    from: String,
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

fn test_timing(snapshot_every: u64) -> RaftTiming {
    RaftTiming {
        heartbeat_ms: 50,
        election_min_ms: 200,
        election_max_ms: 400,
        snapshot_every,
    }
}

fn addr(i: usize) -> NodeAddr {
    NodeAddr {
        node_id: format!("n{i}"),
        cluster_addr: format!("127.0.0.1:{}", 7100 + i),
        client_endpoint: format!("127.0.0.1:{}", 8100 + i),
        zone: format!("z{}", i % 2),
    }
}

fn table(version: u64, owner: &str) -> TableRecord {
    TableRecord {
        version,
        owners: vec![owner.to_string(); 271],
        backups: vec![vec![]; 271],
    }
}

/// Nodes `n0..nN`, each with its own directory; started on demand.
struct Cluster {
    net: Arc<Net>,
    dirs: Vec<TempDir>,
    nodes: Vec<Option<Arc<ClusterRaft>>>,
    snapshot_every: u64,
}

impl Cluster {
    fn new(n: usize, snapshot_every: u64) -> Self {
        Self {
            net: Arc::new(Net::default()),
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: vec![None; n],
            snapshot_every,
        }
    }

    /// Opens node `i` from its directory and puts it on the network.
    async fn start(&mut self, i: usize) -> Arc<ClusterRaft> {
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
    async fn form(&mut self, k: usize) {
        for i in 0..k {
            self.start(i).await;
        }
        let members = (0..k).map(addr).collect();
        self.node(0).initialize(members).await.unwrap();
    }

    fn node(&self, i: usize) -> Arc<ClusterRaft> {
        self.nodes[i].clone().expect("node is running")
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// Cuts node `i` off and shuts it down.
    async fn stop(&mut self, i: usize) {
        self.net.cut.lock().insert(addr(i).cluster_addr);
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Reconnects node `i` (after a stop) and opens it again.
    async fn restart(&mut self, i: usize) -> Arc<ClusterRaft> {
        let n = self.start(i).await;
        self.net.cut.lock().remove(&addr(i).cluster_addr);
        n
    }

    /// Waits until exactly one of `among` leads and all of them name it.
    async fn leader(&self, among: &[usize], within: Duration) -> usize {
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
    async fn all_states(&self, within: Duration, f: impl Fn(&ClusterState) -> bool) {
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

    async fn shutdown_all(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(n) = self.nodes[i].take() {
                n.shutdown().await;
            }
        }
    }
}

/// Polls `f` every 10 ms until it yields `Some`, for at most `within`.
async fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
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
async fn bounded<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("test body exceeded {secs} s"))
}

async fn fence(n: &ClusterRaft, name: &str) -> u64 {
    match n.propose(Command::NextFence { name: name.into() }).await {
        Ok(CommandResponse::Fence(t)) => t,
        other => panic!("NextFence {name} on {}: {other:?}", n.me().node_id),
    }
}

async fn set_table(n: &ClusterRaft, expected: u64, t: TableRecord) -> CommandResponse {
    n.propose(Command::SetTable {
        expected_version: expected,
        table: t,
    })
    .await
    .unwrap_or_else(|e| panic!("SetTable on {}: {e}", n.me().node_id))
}

const SECS: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_three_nodes_one_leader_table_from_a_follower_replicates_and_cas_is_exact() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        let leader = c.leader(&[0, 1, 2], 3 * SECS).await;
        let follower = (leader + 1) % 3;

        let t1 = table(1, "n0");
        assert_eq!(
            set_table(&c.node(follower), 0, t1.clone()).await,
            CommandResponse::TableSet { version: 1 }
        );
        c.all_states(3 * SECS, |s| s.table.as_ref() == Some(&t1))
            .await;

        // A stale expected version changes nothing, wherever it is proposed.
        for i in 0..3 {
            assert_eq!(
                set_table(&c.node(i), 0, table(2, "n1")).await,
                CommandResponse::TableConflict { current: 1 }
            );
        }
        assert_eq!(c.node(leader).state().borrow().table.as_ref(), Some(&t1));

        // A malformed table is refused before it is proposed.
        let mut bad = table(2, "n0");
        bad.owners.truncate(10);
        let err = c
            .node(follower)
            .propose(Command::SetTable {
                expected_version: 1,
                table: bad,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, RaftError::Rejected(ref s) if s.contains("expected 271")));

        // Membership: three voters, everywhere.
        for i in 0..3 {
            let n = c.node(i);
            let ok = wait_until(3 * SECS, || (n.members().len() == 3).then_some(())).await;
            assert!(ok.is_some(), "n{i} members: {:?}", n.members());
            assert!(n.members().iter().all(|(_, voter)| *voter));
            let st = n.status();
            assert_eq!(st.voters, vec!["n0", "n1", "n2"]);
            assert!(st.learners.is_empty());
            assert!(st.term >= 1);
        }
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_fences_from_different_nodes_strictly_increase_per_name() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        c.leader(&[0, 1, 2], 3 * SECS).await;
        let mut last_a = 0;
        for k in 0..9 {
            let t = fence(&c.node(k % 3), "lock-a").await;
            assert!(t > last_a, "token {t} after {last_a}");
            last_a = t;
        }
        // Names are independent.
        assert_eq!(fence(&c.node(1), "lock-b").await, 1);
        assert!(fence(&c.node(2), "lock-a").await > last_a);
        c.all_states(3 * SECS, |s| {
            s.fences.get("lock-a") == Some(&(last_a + 1)) && s.fences.get("lock-b") == Some(&1)
        })
        .await;
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_concurrent_fences_from_all_nodes_are_all_distinct() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        c.leader(&[0, 1, 2], 3 * SECS).await;
        let tasks: Vec<_> = (0..30)
            .map(|k| {
                let n = c.node(k % 3);
                tokio::spawn(async move { fence(&n, "busy").await })
            })
            .collect();
        let mut tokens = Vec::new();
        for t in tasks {
            tokens.push(t.await.unwrap());
        }
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), 30, "a token was issued twice: {tokens:?}");
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_leader_loss_new_leader_proposals_continue_and_old_leader_catches_up() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        let old = c.leader(&[0, 1, 2], 3 * SECS).await;
        set_table(&c.node(old), 0, table(1, "n0")).await;
        let before = fence(&c.node(old), "f").await;

        c.stop(old).await;
        let rest: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let started = Instant::now();
        let new = c.leader(&rest, 3 * SECS).await;
        assert_ne!(new, old);
        let took = started.elapsed();

        // Proposals keep working, from the leader and a follower.
        let other = rest.iter().copied().find(|i| *i != new).unwrap();
        assert_eq!(
            set_table(&c.node(other), 1, table(2, "n1")).await,
            CommandResponse::TableSet { version: 2 }
        );
        let after = fence(&c.node(other), "f").await;
        assert!(after > before);

        // The old leader comes back from its directory and catches up.
        c.restart(old).await;
        let expected = ClusterState::clone(&c.node(new).state().borrow());
        c.all_states(3 * SECS, |s| *s == expected).await;
        assert_eq!(c.node(old).state().borrow().table_version(), 2);
        assert!(!c.node(old).status().is_leader || c.leader(&[0, 1, 2], SECS).await == old);
        eprintln!("new leader after {took:?}");
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_restart_all_restores_table_and_fences_and_never_reuses_a_token() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        c.leader(&[0, 1, 2], 3 * SECS).await;
        let t1 = table(1, "n2");
        set_table(&c.node(1), 0, t1.clone()).await;
        let mut last = 0;
        for k in 0..3 {
            last = fence(&c.node(k), "restart").await;
        }
        c.all_states(3 * SECS, |s| s.fences.get("restart") == Some(&last))
            .await;
        c.shutdown_all().await;

        for i in 0..3 {
            c.start(i).await;
        }
        // Restored from disk before any leader exists.
        for i in 0..3 {
            let s = c.node(i).state().borrow().clone();
            assert_eq!(s.table.as_ref(), Some(&t1), "n{i} table after restart");
            assert_eq!(s.fences.get("restart"), Some(&last), "n{i} fences");
            assert!(c.node(i).is_initialized());
            assert_eq!(c.node(i).members().len(), 3);
        }
        c.leader(&[0, 1, 2], 3 * SECS).await;
        let next = fence(&c.node(2), "restart").await;
        assert!(next > last, "token {next} after restart must exceed {last}");
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_add_member_makes_a_voter_with_the_state_and_remove_member_removes_it() {
    bounded(10, async {
        let mut c = Cluster::new(4, 1000);
        c.form(3).await;
        let leader = c.leader(&[0, 1, 2], 3 * SECS).await;
        let t1 = table(1, "n1");
        set_table(&c.node(0), 0, t1.clone()).await;
        fence(&c.node(0), "x").await;

        let n3 = c.start(3).await;
        assert!(!n3.is_initialized());
        // Asked on a follower: forwarded to the leader.
        let follower = (leader + 1) % 3;
        c.node(follower).add_member(addr(3)).await.unwrap();
        assert!(n3.is_initialized());
        let is_voter =
            |n: &ClusterRaft| n.members().iter().any(|(a, voter)| *a == addr(3) && *voter);
        let ok = wait_until(3 * SECS, || {
            (0..4).all(|i| is_voter(&c.node(i))).then_some(())
        })
        .await;
        assert!(ok.is_some(), "n3 is not a voter everywhere");
        assert_eq!(n3.status().voters, vec!["n0", "n1", "n2", "n3"]);
        c.all_states(3 * SECS, |s| {
            s.table.as_ref() == Some(&t1) && s.fences.get("x") == Some(&1)
        })
        .await;
        // The new member proposes too (forwarding to the leader).
        assert_eq!(fence(&n3, "x").await, 2);

        // Idempotent; a changed address is updated.
        n3.add_member(addr(3)).await.unwrap();
        let mut moved = addr(3);
        moved.cluster_addr = "127.0.0.1:7999".into();
        c.net
            .nodes
            .lock()
            .insert(moved.cluster_addr.clone(), n3.clone());
        c.node(2).add_member(moved.clone()).await.unwrap();
        let ok = wait_until(3 * SECS, || {
            c.node(0)
                .members()
                .iter()
                .any(|(a, voter)| *a == moved && *voter)
                .then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "address not updated: {:?}",
            c.node(0).members()
        );

        c.node(1).remove_member("n3").await.unwrap();
        let ok = wait_until(3 * SECS, || {
            (0..3)
                .all(|i| {
                    let m = c.node(i).members();
                    m.len() == 3 && m.iter().all(|(a, _)| a.node_id != "n3")
                })
                .then_some(())
        })
        .await;
        assert!(ok.is_some(), "n3 still a member: {:?}", c.node(0).members());
        // Removing a non-member succeeds.
        c.node(0).remove_member("n3").await.unwrap();
        // The remaining three still commit.
        fence(&c.node(2), "x").await;
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_removing_the_leader_hands_over_to_the_rest() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        let old = c.leader(&[0, 1, 2], 3 * SECS).await;
        fence(&c.node(old), "f").await;
        let old_id = addr(old).node_id;
        // Asked on a follower, carried out by the leader on itself.
        c.node((old + 1) % 3).remove_member(&old_id).await.unwrap();
        let rest: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let new = c.leader(&rest, 3 * SECS).await;
        assert_ne!(new, old);
        for i in &rest {
            let st = c.node(*i).status();
            assert!(!st.voters.contains(&old_id), "n{i} voters: {:?}", st.voters);
        }
        c.stop(old).await;
        assert_eq!(fence(&c.node(rest[0]), "f").await, 2);
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_initialize_twice_is_refused_and_an_uninitialized_node_says_so() {
    bounded(10, async {
        let mut c = Cluster::new(2, 1000);
        let a = c.start(0).await;
        let b = c.start(1).await;
        let err = a
            .propose(Command::NextFence { name: "f".into() })
            .await
            .unwrap_err();
        assert!(matches!(err, RaftError::NotInitialized), "{err:?}");
        assert!(err.to_string().contains("initialize"));

        // Initializing without this node is refused.
        let err = a.initialize(vec![addr(1)]).await.unwrap_err();
        assert!(matches!(err, RaftError::Rejected(ref s) if s.contains("do not include")));

        a.initialize(vec![addr(0)]).await.unwrap();
        assert!(a.is_initialized());
        let err = a.initialize(vec![addr(0)]).await.unwrap_err();
        assert!(
            matches!(err, RaftError::Rejected(ref s) if s.contains("already has Raft state")),
            "{err:?}"
        );
        assert_eq!(fence(&a, "f").await, 1);

        // b knows nothing yet; once added, it forwards.
        let err = b
            .propose(Command::NextFence { name: "f".into() })
            .await
            .unwrap_err();
        assert!(matches!(err, RaftError::NotInitialized), "{err:?}");
        a.add_member(addr(1)).await.unwrap();
        assert_eq!(fence(&b, "f").await, 2);
        let err = b.initialize(vec![addr(1)]).await.unwrap_err();
        assert!(matches!(err, RaftError::Rejected(_)), "{err:?}");

        // After shutdown every operation says so, and shutdown is idempotent.
        b.shutdown().await;
        b.shutdown().await;
        let err = b
            .propose(Command::NextFence { name: "f".into() })
            .await
            .unwrap_err();
        assert!(matches!(err, RaftError::ShutDown), "{err:?}");
        assert!(b.handle_rpc(bytes::Bytes::new()).await.is_err());
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_compacted_log_restores_from_snapshot_and_a_new_member_gets_install_snapshot() {
    bounded(10, async {
        let mut c = Cluster::new(4, 5);
        c.form(3).await;
        c.leader(&[0, 1, 2], 3 * SECS).await;
        set_table(&c.node(0), 0, table(1, "n0")).await;
        let mut last = 0;
        for k in 0..40 {
            last = fence(&c.node(k % 3), "many").await;
        }
        assert_eq!(last, 40);
        c.all_states(3 * SECS, |s| s.fences.get("many") == Some(&40))
            .await;

        // A restarted follower restores from its snapshot plus its log.
        let leader = c.leader(&[0, 1, 2], 3 * SECS).await;
        let f = (leader + 1) % 3;
        c.stop(f).await;
        let back = c.restart(f).await;
        let s = back.state().borrow().clone();
        assert_eq!(
            s.fences.get("many"),
            Some(&40),
            "restored fences: {:?}",
            s.fences
        );
        assert_eq!(s.table_version(), 1);

        // A new member cannot get the purged log: it gets the snapshot.
        assert_eq!(c.net.delivered("InstallSnapshot"), 0);
        c.start(3).await;
        c.node(0).add_member(addr(3)).await.unwrap();
        c.all_states(3 * SECS, |s| {
            s.fences.get("many") == Some(&40) && s.table_version() == 1
        })
        .await;
        assert!(c.net.delivered("InstallSnapshot") > 0);
        assert_eq!(fence(&c.node(3), "many").await, 41);
        c.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_open_errors_name_the_problem() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let net = Arc::new(Net::default());
        let rpc = || {
            Arc::new(Rpc {
                net: net.clone(),
                from: "x".into(),
            })
        };
        // The file's place is taken by a directory.
        std::fs::create_dir(dir.path().join("raft.redb")).unwrap();
        let err = ClusterRaft::open(dir.path(), addr(0), rpc(), test_timing(10))
            .await
            .err()
            .expect("open must fail");
        assert!(
            matches!(err, RaftError::Storage(ref s) if s.contains("raft.redb")),
            "{err:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let mut t = test_timing(10);
        t.election_min_ms = t.election_max_ms;
        let err = ClusterRaft::open(dir.path(), addr(0), rpc(), t)
            .await
            .err()
            .expect("bad timing must be refused");
        assert!(matches!(err, RaftError::Rejected(ref s) if s.contains("election_min_ms")));
        let err = ClusterRaft::open(dir.path(), addr(0), rpc(), test_timing(0))
            .await
            .err()
            .expect("snapshot_every 0 must be refused");
        assert!(matches!(err, RaftError::Rejected(ref s) if s.contains("snapshot_every")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_dropping_without_shutdown_releases_the_directory() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let rpc = || {
            Arc::new(Rpc {
                net: Arc::new(Net::default()),
                from: "x".into(),
            })
        };
        let n = ClusterRaft::open(dir.path(), addr(0), rpc(), test_timing(10))
            .await
            .unwrap();
        n.initialize(vec![addr(0)]).await.unwrap();
        assert_eq!(fence(&n, "d").await, 1);
        drop(n);
        let n = ClusterRaft::open(dir.path(), addr(0), rpc(), test_timing(10))
            .await
            .expect("the dropped instance lets go of raft.redb");
        assert_eq!(fence(&n, "d").await, 2);
        n.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_without_quorum_propose_fails_within_its_bound() {
    bounded(10, async {
        let mut c = Cluster::new(3, 1000);
        c.form(3).await;
        let leader = c.leader(&[0, 1, 2], 3 * SECS).await;
        for i in (0..3).filter(|i| *i != leader) {
            c.stop(i).await;
        }
        let started = Instant::now();
        let err = c
            .node(leader)
            .propose(Command::NextFence { name: "q".into() })
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, RaftError::Timeout | RaftError::NoLeader),
            "{err:?}"
        );
        assert!(took <= Duration::from_secs(6), "took {took:?}");
        c.shutdown_all().await;
    })
    .await;
}
