//! Commands: a cluster forms, commits replicate, the table's compare-and-set is
//! exact, fencing tokens increase.

use hangar_cluster::raft::{Command, CommandResponse, RaftError};

use crate::harness::*;

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
