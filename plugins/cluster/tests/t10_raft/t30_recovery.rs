//! Leader loss and restarts: a new leader takes over, a restarted node
//! catches up, state survives.

use std::time::Instant;

use hangar_cluster::raft::{ClusterState, CommandResponse};

use crate::harness::*;

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
