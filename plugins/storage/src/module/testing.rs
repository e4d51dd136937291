//! Support for running the module without a cluster: the partition view and
//! deps of a lone node, and write batches built from plain ops. Tests,
//! benches and embedders that start a [`DefaultStorage`](super::DefaultStorage)
//! on one node use these instead of each writing their own.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::hlc::Hlc;
use hangar_core::module::partition::PartitionView;
use hangar_core::module::services::MetricsSink;
use hangar_core::module::storage::StorageDeps;
use hangar_core::module::storage_types::{ApplyBatch, Origin, WriteOp};
use hangar_core::types::{KeyedOp, WriteConcern};

/// The partition view of a lone node named by the string: it owns every
/// partition, has no backups, and its version never changes.
///
/// # Contract
///
/// For every partition number, `owner` MUST be the node, and
/// `is_local_owner` and `is_related` MUST be true, so the module loads and
/// keeps every key. It MUST NOT be used where another node shares the data.
#[derive(Debug, Clone)]
pub struct LoneNode(pub String);

impl PartitionView for LoneNode {
    fn local_node(&self) -> RString {
        self.0.as_str().into()
    }
    fn version(&self) -> u64 {
        1
    }
    fn owner(&self, _partition: u32) -> ROption<RString> {
        ROption::RSome(self.0.as_str().into())
    }
    fn backups(&self, _partition: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, _partition: u32) -> bool {
        true
    }
    fn is_related(&self, _partition: u32) -> bool {
        true
    }
}

/// The deps of a module on the lone node `node`: a fresh [`Hlc`] for the
/// node, the given metrics sink, and a [`LoneNode`] view.
///
/// # Panics
///
/// If `node` is not a valid node id (it contains `:`).
pub fn lone_node_deps(node: &str, metrics: Arc<dyn MetricsSink>) -> StorageDeps {
    StorageDeps {
        clock: Arc::new(Hlc::new(node).expect("a valid node id")),
        metrics,
        partitions: Arc::new(LoneNode(node.to_string())),
    }
}

/// A batch of `ops` from `origin`, every op with the same `concern` and no
/// timeout of its own (the module's default applies).
pub fn batch(ops: Vec<KeyedOp>, concern: WriteConcern, origin: Origin) -> ApplyBatch {
    ApplyBatch {
        ops: ops
            .into_iter()
            .map(|op| WriteOp {
                op,
                concern,
                timeout_ms: ROption::RNone,
            })
            .collect(),
        origin,
        consistency: abi_stable::std_types::ROption::RNone,
    }
}
