//! The contract suites of `hangar-testkit`, one test per case, run against
//! the in-process implementations, the loaded plugins, and with the foreign
//! path forced inside one binary (`cargo test -p hangar-tests --test
//! t20_contracts <case>` runs one case everywhere); plus the no-stacking
//! guarantees of the adapters.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};
use hangar_core::abi::{
    partition_view_to_ffi, storage_from_ffi, storage_from_ffi_forced, storage_to_ffi,
    storage_to_ffi_forced, PartitionViewExport,
};
use hangar_core::module::cluster::ClusterModule;
use hangar_core::module::cluster_types::{ReplicationOutcome, ReplicationRequest};
use hangar_core::module::storage::StorageModule;
use hangar_core::module::wrapper::ClusterWrapper;
use hangar_core::module::{ready, ModuleFuture};
use hangar_tests::support::{loaded_cluster, storage_config, storage_deps};

fn in_process_storage() -> Arc<dyn StorageModule> {
    hangar_storage::create(storage_config("n1"), storage_deps("n1")).unwrap()
}

/// The storage suite, one test per case, against the default module
/// in-process.
mod t10_storage_in_process {
    hangar_testkit::storage_suite!(hangar_storage::create);
}

/// The storage suite through the loaded `.so`.
mod t11_storage_loaded {
    hangar_testkit::storage_suite!(|c, d| Ok(hangar_tests::support::loaded_storage_with(
        "hangar_storage",
        &c,
        &d
    )));
}

/// The storage suite with the foreign path forced inside one binary.
mod t12_storage_forced_foreign {
    use hangar_core::abi::{storage_from_ffi_forced, storage_to_ffi_forced};
    hangar_testkit::storage_suite!(|c, d| Ok(storage_from_ffi_forced(storage_to_ffi_forced(
        hangar_storage::create(c, d)?
    ))));
}

/// The lone-node cluster suite in-process.
mod t13_cluster_in_process {
    hangar_testkit::cluster_suite!(hangar_cluster::create, hangar_storage::create);
}

/// The lone-node cluster suite through the loaded plugins.
mod t14_cluster_loaded {
    use hangar_tests::support::{loaded_cluster_with, loaded_storage_with};
    hangar_testkit::cluster_suite!(
        |c, d| loaded_cluster_with("hangar_cluster", &c, &d),
        |c, d| Ok(loaded_storage_with("hangar_storage", &c, &d)),
    );
}

/// The lone-node cluster suite through the loaded zones plugin.
mod t14b_cluster_loaded_zones {
    use hangar_tests::support::{loaded_cluster_with, loaded_storage_with};
    hangar_testkit::cluster_suite!(
        |c, d| loaded_cluster_with("hangar_cluster_zones", &c, &d),
        |c, d| Ok(loaded_storage_with("hangar_storage", &c, &d)),
    );
}

/// The lone-node cluster suite with the foreign path forced.
mod t15_cluster_forced_foreign {
    use hangar_core::abi::{cluster_from_ffi_forced, cluster_to_ffi_forced};
    hangar_testkit::cluster_suite!(
        |c, d| Ok(cluster_from_ffi_forced(cluster_to_ffi_forced(
            hangar_cluster::create(c, d)?
        ))),
        hangar_storage::create,
    );
}

#[test]
fn t20_a_module_coming_back_to_its_own_library_is_unwrapped_not_stacked() {
    let native = in_process_storage();
    let back = storage_from_ffi(storage_to_ffi(native.clone()));
    assert!(
        Arc::ptr_eq(&native, &back),
        "round trip returns the very same object"
    );
    let forced = storage_from_ffi_forced(storage_to_ffi_forced(native.clone()));
    assert!(
        !Arc::ptr_eq(&native, &forced),
        "the forced path really wraps"
    );
    // exporting a foreign wrapper passes its inner object on: one layer only
    let again = storage_to_ffi(forced.clone());
    let unwrapped = storage_from_ffi(again);
    assert!(
        Arc::ptr_eq(&native, &unwrapped),
        "no second layer was added"
    );
}

#[test]
fn t21_a_plugins_partition_view_reaches_another_plugin_without_a_host_layer() {
    let cluster = loaded_cluster("hangar_cluster", "n1");
    let view = cluster.partition_view(); // a host-side wrapper over the plugin's object
    let ffi = partition_view_to_ffi(view);
    // If the host had wrapped it again, the object would be a host-made
    // export and would downcast here; it must be the plugin's own.
    assert!(
        ffi.obj.downcast_as::<PartitionViewExport>().is_err(),
        "the view crosses as the cluster plugin's object, not a host wrapper"
    );
    assert!(ffi.is_related(95).into_result().unwrap());
}

/// The three-node suite, one test per case, in-process.
mod t16_cluster_three_nodes {
    hangar_testkit::cluster_multi_suite!(hangar_cluster::create, hangar_storage::create);
}

/// The three-node suite through the loaded zones plugin, n1 and n2 in zone
/// `a`, n3 in zone `b`, so its zone-aware placement and QUORUM rule run.
mod t16b_cluster_three_nodes_loaded_zones {
    hangar_testkit::cluster_multi_suite!(
        |mut c: hangar_core::config::ClusterModuleConfig, d| {
            let zone = if c.node_id == "n3" { "b" } else { "a" };
            c.settings = c.settings.with("zone", zone);
            hangar_tests::support::loaded_cluster_with("hangar_cluster_zones", &c, &d)
        },
        hangar_storage::create,
    );
}

/// A cluster module that reports every replication as done without
/// shipping anything: the three-node suite must catch it.
struct NoCopies(Arc<dyn ClusterModule>);

// Only `replicate` changes; `ClusterWrapper` forwards the rest.
impl ClusterWrapper for NoCopies {
    fn inner(&self) -> &dyn ClusterModule {
        &*self.0
    }
    fn replicate(&self, _r: ReplicationRequest) -> ModuleFuture<ReplicationOutcome> {
        ready(Ok(ReplicationOutcome {
            success: true,
            acked_by: RVec::new(),
            error: ROption::RNone,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t17_a_module_that_claims_quorum_without_copies_fails_the_three_node_suite() {
    let err = hangar_testkit::cluster_multi::try_case(
        "t20_quorum_and_strong_copies_are_on_the_backup_when_replicate_says_so",
        |c, d| Ok(Arc::new(NoCopies(hangar_cluster::create(c, d)?)) as Arc<dyn ClusterModule>),
        hangar_storage::create,
    )
    .await
    .expect_err("the suite must fail");
    assert!(
        err.contains("t20_quorum") && err.contains("does not hold"),
        "it fails on the missing copy: {err}"
    );
}
