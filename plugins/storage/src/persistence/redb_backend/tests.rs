//! redb-level fault injection: a storage backend under redb that fails its
//! writes after a countdown, as redb's own tests do.

use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use super::*;
use crate::persistence::testing::lww;

/// A file backend whose writes, syncs and resizes fail once `left` runs out.
#[derive(Debug)]
struct CountdownFile {
    inner: FileBackend,
    left: Arc<AtomicI64>,
}

impl CountdownFile {
    fn tick(&self) -> io::Result<()> {
        if self.left.fetch_sub(1, Ordering::AcqRel) <= 0 {
            Err(io::Error::other("injected I/O failure (countdown)"))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for CountdownFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.tick()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.tick()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.tick()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

fn open_counting(dir: &Path, left: &Arc<AtomicI64>) -> RedbBackend {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(DB_FILE_NAME))
        .unwrap();
    let storage = CountdownFile {
        inner: FileBackend::new(file).unwrap(),
        left: Arc::clone(left),
    };
    RedbBackend::open_on_storage(storage, dir.join(DB_FILE_NAME), &RedbOptions::default()).unwrap()
}

/// For every write budget: commits that returned Ok are all there after a
/// reopen, a failed commit makes redb refuse every later one, and the
/// file always reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_io_failures_never_lose_a_commit_that_returned_ok() {
    let (mut saw_failure, mut saw_partial) = (false, false);
    for budget in 0..48 {
        let dir = tempfile::tempdir().unwrap();
        let left = Arc::new(AtomicI64::new(i64::MAX));
        let b = open_counting(dir.path(), &left);
        b.store("m", vec![("base".into(), lww(Some(0), 0, None))])
            .await
            .unwrap();
        left.store(budget, Ordering::SeqCst);
        let mut acked = vec!["base".to_string()];
        let mut failed_at = None;
        for j in 0..12 {
            let key = format!("k{j:02}");
            match b
                .store("m", vec![(key.clone(), lww(Some(j), 1, None))])
                .await
            {
                Ok(()) => {
                    assert!(
                        failed_at.is_none(),
                        "budget {budget}: commit {j} succeeded after a failure"
                    );
                    acked.push(key);
                }
                Err(e) => {
                    assert!(
                        matches!(e, PersistenceError::Storage { op: "commit", .. }),
                        "{e}"
                    );
                    failed_at.get_or_insert(j);
                }
            }
        }
        if let Some(j) = failed_at {
            saw_failure = true;
            saw_partial |= j > 0;
        }
        let _ = b.close().await; // may fail: the file is broken
        drop(b);
        let b = RedbBackend::open(dir.path()).expect("the database reopens after I/O failures");
        let stored = b.list_keys("m").await.unwrap();
        for k in &acked {
            assert!(
                stored.contains(k),
                "budget {budget}: acked {k} lost; stored {stored:?}"
            );
        }
        if let Some(j) = failed_at {
            for later in j + 1..12 {
                assert!(
                    !stored.contains(&format!("k{later:02}")),
                    "budget {budget}: k{later:02} written after the failure"
                );
            }
        }
        b.close().await.unwrap();
    }
    assert!(
        saw_failure && saw_partial,
        "the budgets cover failures at the first and at a later commit"
    );
}

/// With quick repair on, commits still land and survive a reopen, and a
/// database written without it opens with it (the option is per commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t61_quick_repair_commits_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let quick = RedbOptions {
        quick_repair: true,
        cache_size_bytes: Some(4 << 20),
        ..RedbOptions::default()
    };
    let b = RedbBackend::open(dir.path()).unwrap();
    b.store("m", vec![("a".into(), lww(Some(1), 1, None))])
        .await
        .unwrap();
    b.close().await.unwrap();
    let b = RedbBackend::open_with(dir.path(), &quick).unwrap();
    b.store("m", vec![("b".into(), lww(Some(2), 2, None))])
        .await
        .unwrap();
    b.close().await.unwrap();
    let b = RedbBackend::open(dir.path()).unwrap();
    assert_eq!(
        b.list_keys("m").await.unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(b.path(), dir.path().join(DB_FILE_NAME));
    b.close().await.unwrap();
}
