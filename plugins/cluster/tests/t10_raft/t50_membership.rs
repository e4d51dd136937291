//! Membership: adding and removing members, and the rules of initialization.

use hangar_cluster::raft::{ClusterRaft, Command, RaftError};

use crate::harness::*;

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
        // The status is built from Raft's metrics, which follow the applied
        // membership a moment later than `members()`: wait for it too.
        let want = vec!["n0", "n1", "n2", "n3"];
        let voters = wait_until(3 * SECS, || (n3.status().voters == want).then_some(())).await;
        assert!(voters.is_some(), "n3's status: {:?}", n3.status().voters);
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
