//! The persistence-backend contract suite of `hangar-testkit` against the
//! two backends of this crate, one test per case and backend.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use hangar_storage::persistence::{MemoryBackend, MemoryStore, PersistenceBackend, RedbBackend};
use hangar_testkit::persistence::SuiteHarness;

/// [`MemoryBackend`]: a store is a [`MemoryStore`], and opening makes a new
/// handle on it.
#[derive(Clone, Copy, Debug, Default)]
struct MemoryHarness;

impl SuiteHarness for MemoryHarness {
    type Store = MemoryStore;

    fn new_store(&self) -> MemoryStore {
        MemoryStore::new()
    }

    fn open<'a>(&'a self, store: &'a MemoryStore) -> BoxFuture<'a, Arc<dyn PersistenceBackend>> {
        let b: Arc<dyn PersistenceBackend> = Arc::new(MemoryBackend::open(store));
        Box::pin(std::future::ready(b))
    }
}

/// [`RedbBackend`] in a directory.
fn open_redb(dir: &Path) -> Arc<dyn PersistenceBackend> {
    Arc::new(RedbBackend::open(dir).expect("redb opens in a temp dir"))
}

mod memory {
    hangar_testkit::persistence_suite!(super::MemoryHarness);
}

mod redb {
    hangar_testkit::persistence_suite!(hangar_testkit::persistence::DirHarness(super::open_redb));
}
