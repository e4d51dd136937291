//! Support for running the module without a cluster: the partition view and
//! deps of a lone node, a partition view the caller controls, and write
//! batches built from plain ops. Tests, benches and embedders that start a
//! [`DefaultStorage`](super::DefaultStorage) on one node use these instead
//! of each writing their own.

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

/// A partition view whose related partitions the caller sets: this node
/// owns every related partition (no backups), and nothing else. For tests
/// of ownership changes and for embedders that drive the module's
/// partitions themselves.
///
/// # Contract
///
/// [`Self::set_related`] changes the answers at once and raises the
/// version by one; the caller then tells the module
/// (`StorageAccessor::partitions_changed(version)`), as the cluster module
/// does after installing a table.
#[derive(Debug)]
pub struct ControlledView {
    node: String,
    state: parking_lot::RwLock<(u64, Vec<bool>)>,
}

impl ControlledView {
    /// A view of `node` at version 1 relating the partitions `related`
    /// selects.
    pub fn new(node: &str, related: impl Fn(u32) -> bool) -> Arc<Self> {
        Arc::new(Self {
            node: node.to_string(),
            state: parking_lot::RwLock::new((1, Self::table(related))),
        })
    }

    fn table(related: impl Fn(u32) -> bool) -> Vec<bool> {
        (0..hangar_core::PARTITION_COUNT).map(related).collect()
    }

    /// Relates exactly the partitions `related` selects; returns the new
    /// version.
    pub fn set_related(&self, related: impl Fn(u32) -> bool) -> u64 {
        let table = Self::table(related);
        let mut st = self.state.write();
        st.0 += 1;
        st.1 = table;
        st.0
    }

    fn related(&self, partition: u32) -> bool {
        self.state
            .read()
            .1
            .get(partition as usize)
            .copied()
            .unwrap_or(false)
    }
}

impl PartitionView for ControlledView {
    fn local_node(&self) -> RString {
        self.node.as_str().into()
    }
    fn version(&self) -> u64 {
        self.state.read().0
    }
    fn owner(&self, partition: u32) -> ROption<RString> {
        if self.related(partition) {
            ROption::RSome(self.node.as_str().into())
        } else {
            ROption::RNone
        }
    }
    fn backups(&self, _partition: u32) -> RVec<RString> {
        RVec::new()
    }
    fn is_local_owner(&self, partition: u32) -> bool {
        self.related(partition)
    }
    fn is_related(&self, partition: u32) -> bool {
        self.related(partition)
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
