//! The conformance suite run against the two backends of this crate.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::suite::SuiteHarness;
use crate::persistence::backend::PersistenceBackend;
use crate::persistence::redb_backend::RedbBackend;

/// Runs the suite against [`RedbBackend`]: a store is a temporary directory.
#[derive(Clone, Copy, Debug, Default)]
struct RedbHarness;

impl SuiteHarness for RedbHarness {
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
                Arc::new(RedbBackend::open(store.path()).expect("redb opens in a temp dir"));
            b
        })
    }
}

mod memory {
    crate::persistence_conformance_tests!(crate::persistence::testing::MemoryHarness);
}

mod redb {
    crate::persistence_conformance_tests!(super::RedbHarness);
}
