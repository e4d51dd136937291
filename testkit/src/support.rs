//! What tests of modules need besides the module: deps as a host passes
//! them (clock, metrics, a lone node's partition view), a free loopback
//! port, a failed task's message.

use std::net::TcpListener;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::hlc::Hlc;
use hangar_core::module::cluster::ClusterDeps;
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::{MetricsSink, NoMetrics};
use hangar_core::module::storage::StorageDeps;

/// The partition view of a node that is alone: it owns every partition and
/// nothing has a backup.
#[derive(Debug, Clone)]
pub struct AllLocal(pub String);

impl PartitionView for AllLocal {
    fn local_node(&self) -> RString {
        self.0.as_str().into()
    }
    fn version(&self) -> u64 {
        1
    }
    fn owner(&self, partition: u32) -> ROption<RString> {
        if partition < hangar_core::PARTITION_COUNT {
            ROption::RSome(self.0.as_str().into())
        } else {
            ROption::RNone
        }
    }
    fn backups(&self, _partition: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, partition: u32) -> bool {
        partition < hangar_core::PARTITION_COUNT
    }
    fn is_related(&self, partition: u32) -> bool {
        partition < hangar_core::PARTITION_COUNT
    }
}

/// Storage deps of a lone node `node`: a fresh clock, no metrics,
/// [`AllLocal`].
///
/// # Panics
/// If `node` is not a valid node id.
#[must_use]
pub fn storage_deps(node: &str) -> StorageDeps {
    storage_deps_with(node, Arc::new(NoMetrics))
}

/// [`storage_deps`] reporting to `metrics`.
///
/// # Panics
/// If `node` is not a valid node id.
#[must_use]
pub fn storage_deps_with(node: &str, metrics: Arc<dyn MetricsSink>) -> StorageDeps {
    StorageDeps {
        clock: Arc::new(Hlc::new(node).expect("valid node id")),
        metrics,
        partitions: Arc::new(AllLocal(node.to_string())),
    }
}

/// Cluster deps for node `node`: a fresh clock, no metrics, no peer
/// resolver.
///
/// # Panics
/// If `node` is not a valid node id.
#[must_use]
pub fn cluster_deps(node: &str) -> ClusterDeps {
    ClusterDeps {
        clock: Arc::new(Hlc::new(node).expect("valid node id")),
        metrics: Arc::new(NoMetrics),
        peer_resolver: None,
    }
}

/// Picks a free loopback port below the kernel's ephemeral range (so no
/// outgoing connection takes it before the node binds it), never the same
/// one twice in this process.
///
/// # Panics
/// If no port is free in the range.
#[must_use]
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
        std::sync::Mutex::new(None);
    let mut taken = TAKEN.lock().expect("port table");
    let taken = taken.get_or_insert_with(Default::default);
    // Start somewhere that depends on the process, so parallel test
    // binaries rarely probe the same ports.
    let span = 20_000u32;
    let start = (std::process::id().wrapping_mul(7_919)) % span;
    for k in 0..span {
        let port = u16::try_from(10_000 + (start + k * 37) % span).expect("in range");
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port between 10000 and 30000")
}

/// What a failed test-case task said: its panic message, or that it was
/// cancelled. The suites re-panic with it, prefixed by the case's name, so a
/// failure reads as one line.
#[must_use]
pub fn join_error_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => hangar_core::error::panic_message(payload.as_ref()),
        Err(e) => format!("task did not finish: {e}"),
    }
}
