//! Opening and closing the persistent state, and the bounds on operations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_cluster::raft::{ClusterRaft, Command, RaftError};

use crate::harness::*;

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
