//! Test support that backend authors reuse: the conformance suite
//! ([`suite`], with [`crate::persistence_conformance_tests!`]), a harness for
//! the memory backend, and [`InstrumentedBackend`] for fault injection.

mod instrumented;
pub mod suite;

#[cfg(test)]
pub(crate) mod gen;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use instrumented::{FailureStyle, InstrumentedBackend};
pub use suite::SuiteHarness;

use super::backend::PersistenceBackend;
use super::memory::{MemoryBackend, MemoryStore};

/// Runs the suite against [`MemoryBackend`]: a store is a [`MemoryStore`],
/// and opening makes a new handle on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryHarness;

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
