//! Log compaction: snapshots restore state and bring new members up to date.

use crate::harness::*;

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
