//! The template's own backend passes the persistence backend conformance
//! suite that every backend must pass; and a torn tail is dropped on open.

use std::sync::Arc;

use futures::future::BoxFuture;
use hangar_plugin_template::append_log::{AppendLogBackend, LOG_FILE};
use hangar_storage::persistence::testing::suite::{lww, SuiteHarness};
use hangar_storage::persistence::{PersistenceBackend, WriteBatch};

/// A store is a temporary directory; opening replays its log.
#[derive(Clone, Copy, Debug, Default)]
struct LogHarness;

impl SuiteHarness for LogHarness {
    type Store = tempfile::TempDir;

    fn new_store(&self) -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    fn open<'a>(
        &'a self,
        store: &'a tempfile::TempDir,
    ) -> BoxFuture<'a, Arc<dyn PersistenceBackend>> {
        Box::pin(async move {
            let b: Arc<dyn PersistenceBackend> =
                Arc::new(AppendLogBackend::open(store.path()).expect("the log opens"));
            b
        })
    }
}

mod conformance {
    hangar_storage::persistence_conformance_tests!(super::LogHarness);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_a_torn_last_record_is_dropped_and_earlier_commits_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = AppendLogBackend::open(dir.path()).unwrap();
        b.commit(WriteBatch::new().put("m", "a", lww(Some(1), 1, None)))
            .await
            .unwrap();
        b.commit(WriteBatch::new().put("m", "b", lww(Some(2), 2, None)))
            .await
            .unwrap();
        b.close().await.unwrap();
    }
    // Cut the last record in half, as a crash mid-append would.
    let path = dir.path().join(LOG_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let b = AppendLogBackend::open(dir.path()).unwrap();
    assert_eq!(b.list_keys("m").await.unwrap(), ["a"]);
    // Appending after the repair works and survives a reopen.
    b.commit(WriteBatch::new().put("m", "c", lww(Some(3), 3, None)))
        .await
        .unwrap();
    b.close().await.unwrap();
    let b = AppendLogBackend::open(dir.path()).unwrap();
    assert_eq!(b.list_keys("m").await.unwrap(), ["a", "c"]);
}
