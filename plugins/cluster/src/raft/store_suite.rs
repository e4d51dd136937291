//! openraft's storage conformance suite, run against the redb log store and
//! state machine: every case gets a fresh file in its own temp dir.

use openraft::testing::{StoreBuilder, Suite};

use super::db::RaftDb;
use super::log_store::LogStore;
use super::state_machine::{published_for_test, StateMachine};
use super::types::{StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = RaftDb::open(dir.path()).await.expect("open raft.redb");
        let sm = StateMachine::open(db.clone(), published_for_test())
            .await
            .expect("open state machine");
        Ok((dir, LogStore::new(db), sm))
    }
}

/// Takes about 8 s: seven of the suite's cases wait 1 s for a purge that an
/// implementation may run in the background.
#[test]
fn t10_openraft_storage_suite() {
    Suite::test_all(Builder).expect("the redb Raft store passes openraft's storage suite");
}
