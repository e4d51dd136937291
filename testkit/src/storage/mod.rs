//! The contract suite of `StorageModule`: every implementation, loaded or
//! in-process, must pass it.
//!
//! Each case gets a fresh module built by the caller's [`StorageFactory`]
//! from the suite's config ([`crate::config::storage_config`]: data in a
//! temporary directory, full-text search on map [`FTS_MAP`], a 300 ms
//! write-ack timeout) and started. Cases that restart the module
//! ([`Ctx::restart`]) build a second one over the same data directory, as a
//! new process would; [`Ctx::crash_copy`] opens one on a copy of the data
//! taken while the first still runs, which is what a crash at that instant
//! leaves on disk.
//!
//! Run it with [`crate::storage_suite!`] (one `#[test]` per case) or case by
//! case with [`try_case`].
//!
//! # Layout
//!
//! - `helpers`: op, query and request builders; recording sinks.
//! - `basics`: writes and reads, LWW rules, kinds, names (`t10`–`t19`).
//! - `acks`: write concern levels and timeouts (`t20`–`t29`).
//! - `or_ttl`: change events, OR maps, TTL (`t30`–`t39`).
//! - `accessor`: what the cluster module uses (`t40`–`t49`).
//! - `queries`: one-shot queries (`t50`–`t59`).
//! - `live`: live queries (`t60`–`t69`).
//! - `search_merkle`: full-text search and Merkle sync (`t70`–`t79`).
//! - `lifecycle`: shutdown, restart, crash, lazy loading (`t80`–`t89`).
//! - `regressions`: legacy defects that must stay fixed (`t90`–`t99`).

use std::path::Path;
use std::sync::Arc;

use hangar_core::config::StorageModuleConfig;
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::ModuleResult;
use parking_lot::Mutex;

use crate::config::storage_config;
use crate::support::storage_deps;
use crate::Case;

mod accessor;
mod acks;
mod basics;
pub mod helpers;
mod lifecycle;
mod live;
mod or_ttl;
mod queries;
mod regressions;
mod search_merkle;

pub use helpers::{batch, lww};

/// Builds a storage module (not yet started) from the config and deps the
/// suite passes, as a host would. Any
/// `Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>`
/// is one, e.g. a plugin's `create`; an error fails the case that asked.
pub trait StorageFactory: Send + Sync + 'static {
    /// A fresh module over `config.data_dir`.
    ///
    /// # Errors
    /// What the module's constructor refuses.
    fn build(
        &self,
        config: StorageModuleConfig,
        deps: StorageDeps,
    ) -> ModuleResult<Arc<dyn StorageModule>>;
}

impl<F> StorageFactory for F
where
    F: Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
        + Send
        + Sync
        + 'static,
{
    fn build(
        &self,
        config: StorageModuleConfig,
        deps: StorageDeps,
    ) -> ModuleResult<Arc<dyn StorageModule>> {
        self(config, deps)
    }
}

/// The node id the suite's modules run as.
pub const NODE: &str = "suite-node";

/// The map with full-text search configured by the suite's config.
pub const FTS_MAP: &str = "articles";

/// What a case works with: the current module, and how to restart it.
pub struct Ctx {
    slot: Arc<Mutex<Arc<dyn StorageModule>>>,
    /// Modules a case opened besides the current one (crash copies); shut
    /// down after the case.
    others: Arc<Mutex<Vec<Arc<dyn StorageModule>>>>,
    /// Directories of crash copies, removed after the case.
    copies: Arc<Mutex<Vec<tempfile::TempDir>>>,
    /// The config the module was built with.
    pub config: StorageModuleConfig,
    factory: Arc<dyn StorageFactory>,
}

impl Ctx {
    /// The current module.
    #[must_use]
    pub fn m(&self) -> Arc<dyn StorageModule> {
        self.slot.lock().clone()
    }

    fn build(&self, config: StorageModuleConfig, deps: StorageDeps) -> Arc<dyn StorageModule> {
        self.factory
            .build(config, deps)
            .unwrap_or_else(|e| panic!("the factory could not build a module: {e}"))
    }

    /// Shuts the module down and starts a new one over the same data with
    /// `deps` (a process restart).
    pub async fn restart_with(&self, deps: StorageDeps) -> Arc<dyn StorageModule> {
        self.m().shutdown().await.expect("shutdown before restart");
        let m = self.build(self.config.clone(), deps);
        m.start().await.expect("the restarted module starts");
        *self.slot.lock() = m.clone();
        m
    }

    /// [`Self::restart_with`] the suite's default deps (a fresh clock).
    pub async fn restart(&self) -> Arc<dyn StorageModule> {
        self.restart_with(storage_deps(NODE)).await
    }

    /// Copies the current module's data directory while the module keeps
    /// running (no shutdown, no flush: what a crash at this instant leaves
    /// on disk) and starts another module on the copy. The current module
    /// stays the current one.
    pub async fn crash_copy(&self) -> Arc<dyn StorageModule> {
        let root = tempfile::tempdir().expect("a temporary directory");
        let config = storage_config(NODE, root.path());
        copy_dir(&self.config.data_dir, &config.data_dir).unwrap_or_else(|e| {
            panic!(
                "copying {} to {}: {e}",
                self.config.data_dir.display(),
                config.data_dir.display()
            )
        });
        self.copies.lock().push(root);
        let m = self.build(config, storage_deps(NODE));
        m.start()
            .await
            .expect("a module starts on what a crash left on disk");
        self.others.lock().push(m.clone());
        m
    }
}

/// Copies the files below `from` to `to` (created), as they are now.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    if !from.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The names of every case, in (module, case) order: what
/// [`crate::storage_suite!`] makes one test of each.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_cases {
    ($($mode:tt)*) => {
        $crate::__expand_cases! { $($mode)*; storage;
            basics::t10_info_names_the_module,
            basics::t11_put_then_read,
            basics::t12_a_stale_op_never_overwrites_newer_data,
            basics::t13_an_equal_timestamp_is_a_no_op_and_node_id_breaks_ties,
            basics::t14_a_remove_leaves_a_tombstone,
            basics::t15_outcomes_come_back_in_batch_order,
            basics::t16_an_op_of_the_other_kind_is_a_conflict_naming_both_kinds,
            basics::t17_unstorable_names_are_rejected_and_the_rest_applies,
            acks::t20_memory_and_applied_acks_succeed_without_waiting,
            acks::t21_replicated_is_reached_when_the_caller_reports_it,
            acks::t22_an_unmet_level_fails_with_the_highest_level_reached,
            acks::t23_persisted_succeeds_once_the_commit_is_durable_and_replicated_reported,
            acks::t24_persisted_without_replicated_fails_with_applied,
            acks::t25_an_unchanged_op_asking_persisted_succeeds,
            acks::t26_each_op_waits_at_most_its_own_timeout,
            or_ttl::t30_the_change_sink_sees_applied_changes_with_their_origin,
            or_ttl::t31_or_adds_and_removes_reach_the_sink,
            or_ttl::t32_or_add_then_remove_by_tag,
            or_ttl::t33_an_add_wins_over_a_remove_that_did_not_observe_it,
            or_ttl::t34_a_tombstoned_tag_is_refused_forever,
            or_ttl::t35_or_merges_converge_whatever_the_order,
            or_ttl::t36_expired_lww_records_are_hidden_from_queries_but_read_as_stored,
            or_ttl::t37_expired_or_records_are_hidden_from_reads_and_queries,
            accessor::t40_the_accessor_applies_replicated_changes_and_scans_partitions,
            accessor::t41_replicated_changes_follow_crdt_rules_and_reach_queries_and_the_sink,
            accessor::t42_scans_and_listings_cover_or_maps_with_their_kind,
            accessor::t43_the_accessor_queries_subscribes_and_merges_pages_like_the_module,
            queries::t50_where_matches_equality_and_operator_conditions,
            queries::t51_every_predicate_operator_filters_as_specified,
            queries::t52_multi_field_sort_breaks_ties_by_key,
            queries::t53_limit_and_cursor_page_through_every_row_once,
            queries::t54_fields_project_values,
            queries::t55_an_invalid_query_is_invalid_input_with_the_parsers_message,
            queries::t56_a_query_on_an_unknown_map_is_empty,
            live::t60_changes_send_enter_update_and_leave,
            live::t61_a_sliding_window_sends_leave_for_the_displaced_and_enter_for_the_new,
            live::t62_an_update_that_makes_a_record_match_sends_enter,
            live::t63_unsubscribe_stops_updates_before_it_returns,
            live::t64_subscribing_an_id_twice_replaces_the_first,
            live::t65_updates_carry_projected_values_only_when_they_change,
            live::t66_or_map_keys_enter_and_leave_with_their_live_values,
            search_merkle::t70_search_ranks_matches_on_the_configured_fields,
            search_merkle::t71_search_on_a_map_without_full_text_config_is_invalid_input,
            search_merkle::t72_search_sees_every_write_made_before_it,
            search_merkle::t73_merkle_roots_are_zero_when_empty_and_follow_the_data,
            search_merkle::t74_walking_buckets_down_to_leaves_yields_every_lww_record,
            search_merkle::t75_or_leaves_carry_records_and_the_maps_tombstones,
            search_merkle::t76_a_malformed_merkle_path_is_invalid_input,
            lifecycle::t80_calls_after_shutdown_fail_with_shut_down,
            lifecycle::t81_everything_survives_a_restart,
            lifecycle::t82_concurrent_first_uses_after_a_restart_all_see_the_whole_map,
            lifecycle::t83_writes_during_a_load_are_not_lost,
            lifecycle::t84_only_keys_related_to_this_node_are_loaded,
            lifecycle::t85_persisted_writes_are_there_after_a_restart_with_their_timestamp,
            lifecycle::t86_a_persisted_ack_means_the_write_survives_a_crash,
            regressions::t90_a_stale_op_never_overwrites_newer_data_on_disk,
            regressions::t91_a_stale_op_before_the_load_never_reaches_the_disk,
            regressions::t92_writes_before_a_load_keep_the_maps_kind_and_records,
        }
    };
}

/// Every case.
#[must_use]
pub fn cases() -> Vec<Case<Ctx>> {
    crate::__storage_cases!((list))
}

/// Runs the case `name` against a fresh module from `factory` (started on
/// the suite's config in a temporary directory), then shuts down every
/// module the case left running.
///
/// # Errors
/// What failed, as one line naming the case: its panic message, or the
/// module's refusal to start.
///
/// # Panics
/// If `name` is not a case of this suite.
pub async fn try_case<F>(name: &str, factory: F) -> Result<(), String>
where
    F: Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
        + Send
        + Sync
        + 'static,
{
    let case = crate::find_case(cases(), name, "storage");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = storage_config(NODE, dir.path());
    let factory: Arc<dyn StorageFactory> = Arc::new(factory);
    let m = factory
        .build(config.clone(), storage_deps(NODE))
        .map_err(|e| format!("storage case {name}: the factory refused: {e}"))?;
    m.start()
        .await
        .map_err(|e| format!("storage case {name}: start failed: {e}"))?;
    let slot = Arc::new(Mutex::new(m));
    let others = Arc::new(Mutex::new(Vec::new()));
    let copies = Arc::new(Mutex::new(Vec::new()));
    let cx = Ctx {
        slot: slot.clone(),
        others: others.clone(),
        copies: copies.clone(),
        config,
        factory,
    };
    let r = crate::run_isolated((case.run)(cx)).await;
    let last = slot.lock().clone();
    let _ = last.shutdown().await;
    let rest: Vec<_> = others.lock().drain(..).collect();
    for m in rest {
        let _ = m.shutdown().await;
    }
    drop(copies);
    r.map_err(|msg| format!("storage case {name} failed: {msg}"))
}

/// [`try_case`] on a runtime of its own; what each test of
/// [`crate::storage_suite!`] calls.
///
/// # Panics
/// When the case fails, with [`try_case`]'s message.
pub fn run_one<F>(name: &str, factory: F)
where
    F: Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
        + Send
        + Sync
        + 'static,
{
    crate::current_thread_runtime().block_on(async {
        if let Err(msg) = try_case(name, factory).await {
            panic!("{msg}");
        }
    });
}
