//! The contract suites every Hangar module and backend must pass, for plugin
//! authors inside and outside this repository.
//!
//! Each suite is a list of [`Case`]s run against fresh subjects built by a
//! factory the caller gives, and a macro that makes one `#[test]` per case,
//! named after it, so `cargo test <case>` runs one:
//!
//! | suite | subject | macro |
//! |---|---|---|
//! | [`storage`] | a `StorageModule` | [`storage_suite!`]`(factory)` |
//! | [`cluster`] | a lone node's `ClusterModule` | [`cluster_suite!`]`(cluster_factory, storage_factory)` |
//! | [`cluster_multi`] | the `ClusterModule` of three nodes in one cluster | [`cluster_multi_suite!`]`(cluster_factory, storage_factory)` |
//! | `persistence` (feature `persistence`) | a `PersistenceBackend` of the default storage plugin | `persistence_suite!(harness)` |
//!
//! A factory is any `Fn(config, deps) -> ModuleResult<Arc<dyn Module>>`,
//! e.g. a plugin's own `create`:
//!
//! ```ignore
//! // tests/contracts.rs of a storage plugin
//! hangar_testkit::storage_suite!(my_plugin::create);
//! ```
//!
//! The configs the suites build come from one place, [`config`].
//!
//! # Layout
//!
//! - [`storage`], [`cluster`], [`cluster_multi`], `persistence`: the suites.
//! - [`config`]: the module configs the suites pass to factories.
//! - [`support`]: deps (clock, metrics, a lone node's partition view), a
//!   free loopback port.
//! - [`alloc`]: a counting global allocator for allocation tests and
//!   benchmarks.
//! - [`http`]: a loopback HTTP GET for tests that probe a running node.

use std::future::Future;

use futures::future::BoxFuture;

pub mod alloc;
pub mod cluster;
pub mod cluster_multi;
pub mod config;
pub mod http;
#[cfg(feature = "persistence")]
pub mod persistence;
pub mod storage;
pub mod support;

/// One case of a suite: its name (the test's name) and what it runs, given
/// the suite's context `C` (the subject and what the case may do with it).
pub struct Case<C> {
    /// The case's name, e.g. `t12_a_stale_op_never_overwrites_newer_data`.
    pub name: &'static str,
    /// Runs the case; it fails by panicking.
    pub run: fn(C) -> BoxFuture<'static, ()>,
}

impl<C> std::fmt::Debug for Case<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// The case called `name` of `cases`.
///
/// # Panics
/// If there is none, listing the names there are.
fn find_case<C>(cases: Vec<Case<C>>, name: &str, suite: &str) -> Case<C> {
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    cases
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("the {suite} suite has no case {name:?}; its cases: {names:?}"))
}

/// Runs a case's future as a task of its own, so that its panic comes back
/// as a message instead of unwinding through the suite.
async fn run_isolated(case: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
    tokio::spawn(case)
        .await
        .map_err(support::join_error_message)
}

/// A current-thread runtime with time and I/O, for one case.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A multi-thread runtime with `workers` threads, for one case.
fn multi_thread_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Expands a suite's list of `module::case` names either to its [`Case`]
/// list (`(list)`) or to one `#[test]` per case calling the suite's
/// function `run` with the case's name and `args` (`(tests run args)`).
#[doc(hidden)]
#[macro_export]
macro_rules! __expand_cases {
    ((list); $suite:ident; $($m:ident :: $c:ident),* $(,)?) => {
        ::std::vec![$(
            $crate::Case {
                name: ::std::stringify!($c),
                run: |cx| ::std::boxed::Box::pin($crate::$suite::$m::$c(cx)),
            }
        ),*]
    };
    ((tests $run:ident $args:tt); $suite:ident; $($m:ident :: $c:ident),* $(,)?) => {
        $(
            #[test]
            fn $c() {
                $crate::$suite::$run(::std::stringify!($c), $args);
            }
        )*
    };
}

/// One `#[test]` per case of the [`storage`] suite, each running that case
/// against a fresh module from `factory`
/// (`Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>`).
/// Put it in a module of its own: the tests take the cases' names.
///
/// ```ignore
/// mod storage_contract {
///     hangar_testkit::storage_suite!(my_plugin::create);
/// }
/// ```
#[macro_export]
macro_rules! storage_suite {
    ($factory:expr $(,)?) => {
        $crate::__storage_cases!((tests run_one ($factory)));
    };
}

/// One `#[test]` per case of the [`cluster`] suite (a lone node), each
/// running that case against a fresh module from `cluster_factory`
/// (`Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>`)
/// wired to a storage module from `storage_factory` (as for
/// [`storage_suite!`]).
#[macro_export]
macro_rules! cluster_suite {
    ($cluster:expr, $storage:expr $(,)?) => {
        $crate::__cluster_cases!((tests run_one ($cluster, $storage)));
    };
}

/// One `#[test]` per case of the [`cluster_multi`] suite, each on a fresh
/// cluster of three nodes whose cluster modules come from `cluster_factory`
/// and storage modules from `storage_factory`.
#[macro_export]
macro_rules! cluster_multi_suite {
    ($cluster:expr, $storage:expr $(,)?) => {
        $crate::__cluster_multi_cases!((tests run_one ($cluster, $storage)));
    };
}
