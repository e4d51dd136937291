//! The contract suite of the default storage plugin's `PersistenceBackend`
//! (`hangar_storage::persistence`): a backend that passes it can sit under
//! the default storage module (`hangar_storage::create_with_backend`).
//!
//! The caller gives a [`SuiteHarness`] that makes fresh stores and opens
//! backends on them; each case gets a fresh store. Run it with
//! [`crate::persistence_suite!`] (one `#[test]` per case) or case by case
//! with [`try_case`]. Built with the feature `persistence`.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use hangar_storage::persistence::PersistenceBackend;

use crate::Case;

mod cases;

/// Makes stores for the suite and opens backends on them.
pub trait SuiteHarness: Send + Sync + 'static {
    /// Where data lives between an open and the next (a directory, a
    /// memory store).
    type Store: Send + Sync;

    /// A fresh, empty store.
    fn new_store(&self) -> Self::Store;

    /// Opens a backend on `store`. The suite closes the previous backend on
    /// the same store before opening it again.
    fn open<'a>(&'a self, store: &'a Self::Store) -> BoxFuture<'a, Arc<dyn PersistenceBackend>>;
}

/// A harness for a backend that keeps its data in a directory: a store is a
/// fresh temporary directory, and opening calls the function on its path.
#[derive(Clone, Copy, Debug)]
pub struct DirHarness(pub fn(&Path) -> Arc<dyn PersistenceBackend>);

impl SuiteHarness for DirHarness {
    type Store = tempfile::TempDir;

    fn new_store(&self) -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    fn open<'a>(
        &'a self,
        store: &'a tempfile::TempDir,
    ) -> BoxFuture<'a, Arc<dyn PersistenceBackend>> {
        Box::pin(std::future::ready((self.0)(store.path())))
    }
}

/// The names of every case, for [`crate::persistence_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __persistence_cases {
    ($($mode:tt)*) => {
        $crate::__expand_cases! { $($mode)*; persistence;
            cases::t10_empty_backend_reads_as_empty,
            cases::t11_lww_records_round_trip_with_ttl_and_tombstones,
            cases::t12_or_rows_round_trip_with_all_records,
            cases::t13_load_keys_omits_missing_and_dedups,
            cases::t14_list_keys_and_maps_in_byte_order_with_kinds,
            cases::t15_later_put_replaces_and_batch_order_decides,
            cases::t20_delete_removes_and_ignores_missing,
            cases::t21_or_tombstones_are_a_per_map_set,
            cases::t22_rejected_batch_writes_nothing,
            cases::t23_maps_are_isolated_even_by_prefix,
            cases::t24_unicode_large_values_and_many_keys,
            cases::t25_concurrent_commits_all_land,
            cases::t30_reopen_after_close_shows_committed_data,
            cases::t31_calls_after_close_fail_with_closed,
            cases::t32_flush_is_a_barrier_that_keeps_data,
        }
    };
}

/// One `#[test]` per case of the persistence-backend suite, each running
/// that case with `harness` (a [`SuiteHarness`] value). Needs the feature
/// `persistence`.
///
/// ```ignore
/// mod backend_contract {
///     hangar_testkit::persistence_suite!(my_crate::MyHarness);
/// }
/// ```
#[macro_export]
macro_rules! persistence_suite {
    ($harness:expr $(,)?) => {
        $crate::__persistence_cases!((tests run_one ($harness)));
    };
}

/// Every case, for harness type `H`.
#[must_use]
pub fn cases<H: SuiteHarness>() -> Vec<Case<Arc<H>>> {
    crate::__persistence_cases!((list))
}

/// Runs the case `name` with `harness`.
///
/// # Errors
/// What failed, as one line naming the case.
///
/// # Panics
/// If `name` is not a case of this suite.
pub async fn try_case<H: SuiteHarness>(name: &str, harness: H) -> Result<(), String> {
    let case = crate::find_case(cases::<H>(), name, "persistence");
    crate::run_isolated((case.run)(Arc::new(harness)))
        .await
        .map_err(|msg| format!("persistence case {name} failed: {msg}"))
}

/// [`try_case`] on a runtime of its own (two worker threads); what each test
/// of [`crate::persistence_suite!`] calls.
///
/// # Panics
/// When the case fails, with [`try_case`]'s message.
pub fn run_one<H: SuiteHarness>(name: &str, harness: H) {
    crate::multi_thread_runtime(2).block_on(async {
        if let Err(msg) = try_case(name, harness).await {
            panic!("{msg}");
        }
    });
}
