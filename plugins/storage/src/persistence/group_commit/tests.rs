//! Tests of the group committer (grouping, coalescing, ordering, barriers,
//! ack timing), against the memory backend wrapped in an
//! [`InstrumentedBackend`] (gate, commit log, failure countdown).

use std::sync::Arc;

use futures::FutureExt;

use super::*;
use crate::persistence::memory::MemoryBackend;
use crate::persistence::testing::lww;
use crate::persistence::testing::InstrumentedBackend;
use crate::persistence::StoredEntry;

pub(super) struct Rig {
    pub(super) inst: Arc<InstrumentedBackend>,
    pub(super) gc: GroupCommitter,
}

pub(super) async fn rig(config: GroupCommitConfig) -> Rig {
    rig_over(Arc::new(MemoryBackend::new()), config).await
}

pub(super) async fn rig_over(inner: Arc<dyn PersistenceBackend>, config: GroupCommitConfig) -> Rig {
    let inst = Arc::new(InstrumentedBackend::new(inner));
    let gc = GroupCommitter::start(inst.clone() as Arc<dyn PersistenceBackend>, config)
        .await
        .unwrap();
    Rig { inst, gc }
}

pub(super) fn put(map: &str, key: &str, v: i64) -> WriteBatch {
    WriteBatch::new().put(map, key, lww(Some(v), v as u64, None))
}

pub(super) async fn value_of(
    b: &dyn PersistenceBackend,
    map: &str,
    key: &str,
) -> Option<StoredEntry> {
    b.load_keys(map, &[key.to_string()])
        .await
        .unwrap()
        .pop()
        .map(|(_, e)| e)
}

#[tokio::test]
async fn t40_single_write_resolves_after_commit_and_is_stored() {
    let r = rig(GroupCommitConfig::default()).await;
    let d = r.gc.enqueue(put("m", "k", 7)).unwrap();
    assert_eq!(d.seq(), 1);
    assert_eq!(d.await.unwrap(), Receipt { seq: 1, group: 1 });
    assert_eq!(
        value_of(&*r.inst, "m", "k").await,
        Some(lww(Some(7), 7, None))
    );
    assert_eq!(*r.gc.watermark().borrow(), 1);
    let s = r.gc.stats();
    assert_eq!(
        (s.groups_committed, s.requests_committed, s.ops_committed),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn t41_concurrent_writers_share_group_commits() {
    let r = rig(GroupCommitConfig::default()).await;
    let gate = r.inst.hold().await;
    let first = r.gc.enqueue(put("m", "first", 0)).unwrap();
    r.inst.wait_commits_started(1).await;
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let gc = r.gc.clone();
            tokio::spawn(async move { gc.enqueue(put("m", &format!("k{i}"), i)).unwrap().await })
        })
        .collect();
    // let every writer enqueue while the first commit is held
    while r.gc.stats().requests_enqueued < 51 {
        tokio::task::yield_now().await;
    }
    drop(gate);
    assert_eq!(first.await.unwrap().group, 1);
    for w in writers {
        assert_eq!(
            w.await.unwrap().unwrap().group,
            2,
            "all 50 share the second commit"
        );
    }
    assert_eq!(r.gc.stats().groups_committed, 2);
    assert_eq!(r.inst.list_keys("m").await.unwrap().len(), 51);
}

#[tokio::test]
async fn t42_repeated_writes_to_one_key_coalesce_and_the_last_wins() {
    let r = rig(GroupCommitConfig::default()).await;
    let gate = r.inst.hold().await;
    let first = r.gc.enqueue(put("m", "other", 0)).unwrap();
    r.inst.wait_commits_started(1).await;
    let ds: Vec<_> = (1..=3)
        .map(|v| r.gc.enqueue(put("m", "k", v)).unwrap())
        .collect();
    let tomb =
        r.gc.enqueue(
            WriteBatch::new()
                .add_or_tombstone("o", "t")
                .remove_or_tombstone("o", "t"),
        )
        .unwrap();
    drop(gate);
    first.await.unwrap();
    for d in ds {
        assert_eq!(d.await.unwrap().group, 2);
    }
    tomb.await.unwrap();
    let log = r.inst.commit_log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1],
        vec![
            StoreOp::Put {
                map: "m".into(),
                key: "k".into(),
                entry: lww(Some(3), 3, None)
            },
            StoreOp::RemoveOrTombstone {
                map: "o".into(),
                tag: "t".into()
            },
        ],
        "one op per slot, the last enqueued"
    );
    assert_eq!(
        value_of(&*r.inst, "m", "k").await,
        Some(lww(Some(3), 3, None))
    );
    assert!(r.inst.load_or_tombstones("o").await.unwrap().is_empty());
    assert_eq!(r.gc.stats().ops_coalesced, 3);
}

#[tokio::test]
async fn t43_a_later_write_to_the_same_key_wins_across_groups() {
    let r = rig(GroupCommitConfig::default()).await;
    let gate = r.inst.hold().await;
    let a = r.gc.enqueue(put("m", "k", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    let b = r.gc.enqueue(put("m", "k", 2)).unwrap();
    drop(gate);
    assert!(a.await.unwrap().group < b.await.unwrap().group);
    assert_eq!(
        value_of(&*r.inst, "m", "k").await,
        Some(lww(Some(2), 2, None))
    );
    r.gc.enqueue(WriteBatch::new().delete("m", "k"))
        .unwrap()
        .await
        .unwrap();
    assert_eq!(value_of(&*r.inst, "m", "k").await, None);
}

#[tokio::test]
async fn t44_group_size_is_bounded_by_max_group_ops() {
    let r = rig(GroupCommitConfig {
        max_group_ops: 4,
        ..Default::default()
    })
    .await;
    let gate = r.inst.hold().await;
    let mut ds = vec![r.gc.enqueue(put("m", "k0", 0)).unwrap()];
    r.inst.wait_commits_started(1).await;
    ds.extend((1..=10).map(|i| r.gc.enqueue(put("m", &format!("k{i}"), i)).unwrap()));
    drop(gate);
    for d in ds {
        d.await.unwrap();
    }
    let sizes: Vec<usize> = r.inst.commit_log().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1, 4, 4, 2]);
}

#[tokio::test]
async fn t45_a_request_is_never_split_across_groups() {
    let r = rig(GroupCommitConfig {
        max_group_ops: 4,
        ..Default::default()
    })
    .await;
    let gate = r.inst.hold().await;
    let first = r.gc.enqueue(put("m", "x", 0)).unwrap();
    r.inst.wait_commits_started(1).await;
    let batch = |prefix: &str, n: i64| {
        let mut b = WriteBatch::new();
        for i in 0..n {
            b = b.put("m", format!("{prefix}{i}"), lww(Some(i), 1, None));
        }
        b
    };
    let three = r.gc.enqueue(batch("a", 3)).unwrap();
    let six = r.gc.enqueue(batch("b", 6)).unwrap();
    let one = r.gc.enqueue(batch("c", 1)).unwrap();
    drop(gate);
    let groups = [
        first.await.unwrap().group,
        three.await.unwrap().group,
        six.await.unwrap().group,
        one.await.unwrap().group,
    ];
    assert_eq!(groups, [1, 2, 3, 4]);
    let sizes: Vec<usize> = r.inst.commit_log().iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        vec![1, 3, 6, 1],
        "the 6-op request is committed whole, alone"
    );
}

#[tokio::test]
async fn t46_flush_waits_for_everything_enqueued_before() {
    let r = rig(GroupCommitConfig::default()).await;
    let gate = r.inst.hold().await;
    let mut w1 = r.gc.enqueue(put("m", "a", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    let mut w2 = r.gc.enqueue(put("m", "b", 2)).unwrap();
    let gc = r.gc.clone();
    let mut flush = tokio::spawn(async move { gc.flush().await });
    tokio::task::yield_now().await;
    assert!(
        (&mut flush).now_or_never().is_none(),
        "flush must wait for the held commit"
    );
    drop(gate);
    flush.await.unwrap().unwrap();
    assert!(
        (&mut w1).now_or_never().is_some(),
        "w1 is durable when flush returns"
    );
    assert!(
        matches!((&mut w2).now_or_never(), Some(Ok(_))),
        "w2 is durable when flush returns"
    );
    assert_eq!(r.inst.list_keys("m").await.unwrap().len(), 2);
    // a flush with nothing queued returns at once
    r.gc.flush().await.unwrap();
}

/// Holds the first commit and reports whether the write was acknowledged
/// while its commit had not returned.
async fn acked_before_commit_returned(mode: AckMode) -> bool {
    let r = rig(GroupCommitConfig {
        ack_mode: mode,
        ..Default::default()
    })
    .await;
    let gate = r.inst.hold().await;
    let mut d = r.gc.enqueue(put("m", "k", 1)).unwrap();
    r.inst.wait_commits_started(1).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let early = (&mut d).now_or_never().is_some();
    drop(gate);
    if !early {
        d.await.unwrap();
    }
    early
}

#[tokio::test]
async fn t47_ack_waits_for_the_commit_to_return() {
    assert!(!acked_before_commit_returned(AckMode::AfterCommit).await);
    // negative control: the checker above does see an early ack
    assert!(acked_before_commit_returned(AckMode::UnsafeBeforeCommit).await);
}

#[derive(Default)]
struct Observed {
    committed: parking_lot::Mutex<Vec<(u64, usize, usize)>>,
    failed: parking_lot::Mutex<Vec<(u64, u64)>>,
}

impl CommitObserver for Observed {
    fn committed(&self, group: u64, ops: usize, requests: usize, _elapsed: Duration) {
        self.committed.lock().push((group, ops, requests));
    }
    fn failed(&self, group: u64, last_seq: u64, _cause: &PersistenceError, _elapsed: Duration) {
        self.failed.lock().push((group, last_seq));
    }
}

#[tokio::test]
async fn t48_the_observer_hears_every_commit_and_the_last_seq_is_a_barrier() {
    let obs = Arc::new(Observed::default());
    let r = rig(GroupCommitConfig {
        observer: Some(obs.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.gc.last_seq(), 0);
    r.gc.enqueue(put("m", "a", 1)).unwrap().await.unwrap();
    let d =
        r.gc.enqueue(put("m", "b", 2).put("m", "c", lww(Some(3), 3, None)))
            .unwrap();
    assert_eq!(r.gc.last_seq(), d.seq());
    d.await.unwrap();
    r.gc.flush().await.unwrap(); // a barrier alone commits nothing: not reported
    assert_eq!(*obs.committed.lock(), vec![(1, 1, 1), (2, 2, 1)]);
    assert!(obs.failed.lock().is_empty());
    r.inst
        .fail_commits_after(0, crate::persistence::testing::FailureStyle::BeforeWrite);
    assert!(r.gc.enqueue(put("m", "d", 4)).unwrap().await.is_err());
    assert_eq!(
        obs.failed.lock()[0],
        (4, 4),
        "the failed group is reported with the last request it carried"
    );
}
