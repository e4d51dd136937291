//! The template's own backend passes the persistence-backend contract suite
//! of `hangar-testkit` (one test per case); and a torn tail is dropped on
//! open.

use std::path::Path;
use std::sync::Arc;

use hangar_plugin_template::append_log::{AppendLogBackend, LOG_FILE};
use hangar_storage::persistence::testing::lww;
use hangar_storage::persistence::{PersistenceBackend, WriteBatch};

/// The log in a directory (opening replays it).
fn open_log(dir: &Path) -> Arc<dyn PersistenceBackend> {
    Arc::new(AppendLogBackend::open(dir).expect("the log opens"))
}

mod conformance {
    hangar_testkit::persistence_suite!(hangar_testkit::persistence::DirHarness(super::open_log));
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
