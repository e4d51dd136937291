//! Support for running the module without a cluster: a partition view the
//! caller controls. (A lone node's view, its deps and batch builders are in
//! `hangar-testkit`: `hangar_testkit::support`,
//! `hangar_testkit::storage::helpers`.)

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::partition::PartitionView;

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
