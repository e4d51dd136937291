//! Tests of the group committer's failure handling (failed groups fail
//! their waiters and are committed again, refused input), its lifecycle and pacing (shutdown, dropped handles,
//! back-pressure, linger) and its coalescing law.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hangar_core::MapKind;
use proptest::prelude::*;

use super::tests::{put, rig, rig_over};
use super::*;
use crate::persistence::memory::MemoryBackend;
use crate::persistence::testing::{gen, FailureStyle};
use crate::persistence::testing::{lww, or_record};
use crate::persistence::StoredEntry;

#[tokio::test]
async fn t50_a_failed_commit_fails_every_request_in_its_group() {
    let r = rig(GroupCommitConfig::default()).await;
    r.inst.fail_commits_after(1, FailureStyle::BeforeWrite);
    let gate = r.inst.hold().await;
    let w1 = r.gc.enqueue(put("m", "a", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    let w2 = r.gc.enqueue(put("m", "b", 2)).unwrap();
    let w3 = r.gc.enqueue(put("m", "c", 3)).unwrap();
    drop(gate);
    assert_eq!(w1.await.unwrap().group, 1);
    for w in [w2, w3] {
        match w.await {
            Err(CommitError::CommitFailed { group: 2, cause }) => {
                assert!(
                    cause.to_string().contains("injected I/O failure"),
                    "{cause}"
                );
            }
            other => panic!("expected group 2 to fail, got {other:?}"),
        }
    }
    // (Later failures may follow: the failed ops are retried.)
    assert!(r.gc.stats().groups_failed >= 1);
    assert_eq!(
        *r.gc.watermark().borrow(),
        1,
        "the watermark stops at the last good group"
    );
}

#[tokio::test]
async fn t51_after_a_failure_the_failed_ops_are_committed_again_before_later_ones() {
    let r = rig(GroupCommitConfig::default()).await;
    r.inst.fail_commits_after(0, FailureStyle::BeforeWrite);
    let gate = r.inst.hold().await;
    let w1 = r.gc.enqueue(put("m", "a", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    let queued = r.gc.enqueue(put("m", "b", 2)).unwrap();
    drop(gate);
    assert!(matches!(
        w1.await,
        Err(CommitError::CommitFailed { group: 1, .. })
    ));
    // The next group carries `a` again, and fails as well.
    assert!(matches!(
        queued.await,
        Err(CommitError::CommitFailed { .. })
    ));
    let cause = r.gc.failure().expect("the failure is reported");
    assert!(cause.contains("injected"), "{cause}");
    assert_eq!(*r.gc.watermark().borrow(), 0, "nothing is durable yet");
    assert!(r.inst.list_keys("m").await.unwrap().is_empty());
    // The committer keeps taking work while it fails ...
    let gate = r.inst.hold().await;
    let later = r.gc.enqueue(put("m", "c", 3)).unwrap();
    // ... and, once the backend is back, commits the failed ops first.
    r.inst.heal();
    drop(gate);
    let receipt = later.await.expect("a write after the failure commits");
    assert_eq!(receipt.seq, 3);
    assert_eq!(*r.gc.watermark().borrow(), 3, "prefix-complete again");
    assert!(r.gc.failure().is_none(), "a good commit clears the failure");
    assert_eq!(r.inst.list_keys("m").await.unwrap(), ["a", "b", "c"]);
    let log = r.inst.commit_log();
    let good = log.last().unwrap();
    let keys: Vec<&str> = good
        .iter()
        .filter_map(|op| match op {
            StoreOp::Put { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, ["a", "b", "c"], "failed ops first, in sequence order");
    r.gc.flush().await.unwrap();
}

#[tokio::test]
async fn t62_failed_ops_are_committed_again_on_their_own_when_no_write_comes() {
    let r = rig(GroupCommitConfig::default()).await;
    r.gc.enqueue(put("m", "ok", 0)).unwrap().await.unwrap();
    r.inst.fail_commits_after(0, FailureStyle::AfterWrite);
    let w = r.gc.enqueue(put("m", "a", 1)).unwrap();
    assert!(matches!(w.await, Err(CommitError::CommitFailed { .. })));
    assert!(r.gc.failure().is_some());
    r.inst.heal();
    let mut mark = r.gc.watermark();
    tokio::time::timeout(Duration::from_secs(30), mark.wait_for(|m| *m >= 2))
        .await
        .expect("the failed ops are committed again without a new write (hang guard)")
        .unwrap();
    assert!(r.gc.failure().is_none());
    assert_eq!(r.inst.list_keys("m").await.unwrap(), ["a", "ok"]);
    assert_eq!(
        r.gc.stats().groups_failed,
        1 + (r.inst.commit_log().len() as u64 - 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_nothing_acknowledged_is_lost_when_a_commit_fails() {
    for style in [FailureStyle::BeforeWrite, FailureStyle::AfterWrite] {
        let r = rig(GroupCommitConfig {
            max_group_ops: 8,
            ..Default::default()
        })
        .await;
        r.inst.fail_commits_after(20, style);
        let writers: Vec<_> = (0..16)
            .map(|w| {
                let gc = r.gc.clone();
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0..200 {
                        let key = format!("w{w}-{i}");
                        match gc.enqueue(put("m", &key, i)) {
                            Ok(d) => match d.await {
                                Ok(_) => acked.push(key),
                                Err(_) => break,
                            },
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut acked = Vec::new();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        assert!(
            !acked.is_empty(),
            "some writes were acked before the failure"
        );
        assert!(acked.len() < 16 * 200, "the failure stopped the writers");
        let stored = r.inst.list_keys("m").await.unwrap();
        for k in &acked {
            assert!(
                stored.binary_search(k).is_ok(),
                "acked write {k} lost ({style:?})"
            );
        }
    }
}

#[tokio::test]
async fn t53_bad_input_is_refused_at_enqueue_and_the_writer_keeps_going() {
    let r = rig(GroupCommitConfig::default()).await;
    assert!(matches!(
        r.gc.enqueue(put("", "k", 1)),
        Err(CommitError::Rejected(PersistenceError::InvalidInput(_)))
    ));
    assert!(matches!(
        r.gc.enqueue(put("m", "k", 1).delete("m", "bad\0")),
        Err(CommitError::Rejected(PersistenceError::InvalidInput(_)))
    ));
    r.gc.enqueue(put("m", "k", 1)).unwrap().await.unwrap();
    assert_eq!(r.inst.list_keys("m").await.unwrap(), vec!["k".to_string()]);
    assert!(
        r.inst.commit_log().iter().all(|ops| ops.len() == 1),
        "rejected ops never reach a commit"
    );
}

#[tokio::test]
async fn t54_kind_conflicts_are_refused_at_enqueue_including_recorded_maps() {
    let inner = Arc::new(MemoryBackend::new());
    inner
        .store("l", vec![("k".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    let r = rig_over(inner, GroupCommitConfig::default()).await;
    let or_put = |map: &str| {
        WriteBatch::new().put(
            map,
            "k",
            StoredEntry::Or {
                records: vec![or_record("v", 1, None)],
            },
        )
    };
    assert!(matches!(
        r.gc.enqueue(or_put("l")),
        Err(CommitError::Rejected(PersistenceError::KindConflict {
            recorded: MapKind::Lww,
            ..
        }))
    ));
    // a map recorded by an earlier enqueue, not yet committed
    let gate = r.inst.hold().await;
    let d = r.gc.enqueue(or_put("fresh")).unwrap();
    assert!(matches!(
        r.gc.enqueue(put("fresh", "x", 1)),
        Err(CommitError::Rejected(PersistenceError::KindConflict {
            recorded: MapKind::Or,
            ..
        }))
    ));
    assert!(matches!(
        r.gc.enqueue(WriteBatch::new().add_or_tombstone("l", "t")),
        Err(CommitError::Rejected(PersistenceError::KindConflict { .. }))
    ));
    drop(gate);
    d.await.unwrap();
    assert!(r.gc.failure().is_none());
}

#[tokio::test]
async fn t55_shutdown_commits_queued_writes_then_closes_the_backend() {
    let r = rig(GroupCommitConfig::default()).await;
    let gate = r.inst.hold().await;
    let w1 = r.gc.enqueue(put("m", "a", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    let w2 = r.gc.enqueue(put("m", "b", 2)).unwrap();
    let gc = r.gc.clone();
    let shutdown = tokio::spawn(async move { gc.shutdown().await });
    while r.gc.enqueue(WriteBatch::new()).is_ok() {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        r.gc.enqueue(put("m", "c", 3)),
        Err(CommitError::ShutDown)
    ));
    drop(gate);
    shutdown.await.unwrap().unwrap();
    w1.await.unwrap();
    w2.await.unwrap();
    assert_eq!(r.inst.list_keys("m").await, Err(PersistenceError::Closed));
    r.gc.shutdown()
        .await
        .expect("a second shutdown returns the first one's result");
}

#[tokio::test]
async fn t56_admit_waits_while_the_queue_is_over_capacity() {
    let r = rig(GroupCommitConfig {
        queue_capacity_ops: 2,
        ..Default::default()
    })
    .await;
    let gate = r.inst.hold().await;
    let mut ds = vec![r.gc.enqueue(put("m", "a", 1)).unwrap()];
    r.inst.wait_commits_started(1).await;
    r.gc.admit().await; // the held request is no longer queued
    ds.extend((0..3).map(|i| r.gc.enqueue(put("m", &format!("q{i}"), i)).unwrap()));
    assert_eq!(r.gc.queued_ops(), 3);
    let gc = r.gc.clone();
    let mut admit = tokio::spawn(async move { gc.admit().await });
    tokio::task::yield_now().await;
    assert!(
        (&mut admit).now_or_never().is_none(),
        "admit waits while 3 ops > capacity 2"
    );
    drop(gate);
    admit.await.unwrap();
    for d in ds {
        d.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn t57_linger_gathers_requests_that_arrive_within_it() {
    for (linger, expected_groups) in [(Duration::ZERO, 2), (Duration::from_millis(50), 1)] {
        let r = rig(GroupCommitConfig {
            linger,
            ..Default::default()
        })
        .await;
        let a = r.gc.enqueue(put("m", "a", 1)).unwrap();
        // let the writer take `a` and find the queue empty
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        let b = r.gc.enqueue(put("m", "b", 2)).unwrap();
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(
            r.inst.commit_log().len(),
            expected_groups,
            "linger {linger:?}"
        );
    }
}

#[tokio::test]
async fn t58_dropping_every_handle_commits_the_queue_then_ends_the_writer() {
    let r = rig(GroupCommitConfig::default()).await;
    let gate = r.inst.hold().await;
    let first = r.gc.enqueue(put("m", "a", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    let queued = r.gc.enqueue(put("m", "b", 2)).unwrap();
    let inst = r.inst;
    drop(r.gc);
    drop(gate);
    first.await.unwrap();
    queued.await.unwrap();
    // the writer's reference to the backend goes away when it ends
    tokio::time::timeout(Duration::from_secs(10), async {
        while Arc::strong_count(&inst) > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the writer ends once every handle is dropped (hang guard, not a timing claim)");
    assert_eq!(inst.list_keys("m").await.unwrap().len(), 2);
}

#[test]
fn t59_start_refuses_a_zero_group_size() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let res = rt.block_on(GroupCommitter::start(
        Arc::new(MemoryBackend::new()),
        GroupCommitConfig {
            max_group_ops: 0,
            ..Default::default()
        },
    ));
    assert!(matches!(
        res,
        Err(CommitError::Rejected(PersistenceError::InvalidInput(_)))
    ));
}

#[test]
fn t61_coalesce_keeps_the_last_op_per_slot_in_order() {
    let ops = vec![
        StoreOp::Delete {
            map: "m".into(),
            key: "a".into(),
        },
        StoreOp::AddOrTombstone {
            map: "m".into(),
            tag: "a".into(),
        },
        StoreOp::Put {
            map: "m".into(),
            key: "b".into(),
            entry: lww(Some(1), 1, None),
        },
        StoreOp::Put {
            map: "m".into(),
            key: "a".into(),
            entry: lww(Some(2), 2, None),
        },
        StoreOp::Put {
            map: "n".into(),
            key: "a".into(),
            entry: lww(Some(3), 3, None),
        },
    ];
    let (kept, dropped) = coalesce(ops.clone());
    assert_eq!(dropped, 1);
    assert_eq!(
        kept,
        vec![
            ops[1].clone(),
            ops[2].clone(),
            ops[3].clone(),
            ops[4].clone()
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `INVARIANTS.md` I26: committing requests in coalesced groups leaves the same
    /// entries and tombstones as committing each request alone.
    #[test]
    fn t60_prop_grouped_commits_equal_one_by_one(
        requests in proptest::collection::vec(proptest::collection::vec(gen::small_op(), 1..4), 1..30),
        max_group_ops in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let reference = MemoryBackend::new();
            for ops in &requests {
                reference.commit(WriteBatch { ops: ops.clone() }).await.unwrap();
            }
            let r = rig(GroupCommitConfig { max_group_ops, ..Default::default() }).await;
            let gate = r.inst.hold().await;
            let ds: Vec<_> = requests
                .iter()
                .map(|ops| r.gc.enqueue(WriteBatch { ops: ops.clone() }).unwrap())
                .collect();
            drop(gate);
            for d in ds {
                d.await.unwrap();
            }
            for map in ["lww", "or"] {
                let want = reference.load_map(map).await.unwrap();
                let got = r.inst.load_map(map).await.unwrap();
                assert_eq!(got.entries, want.entries, "entries of {map}");
                assert_eq!(got.or_tombstones, want.or_tombstones, "tombstones of {map}");
            }
        });
    }
}
