//! ABI mirror of the local node (host → cluster module).

#![allow(
    non_camel_case_types,
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] generates trait-object types and impls named after the trait"
)]

use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, RVec};

use super::convert::conversions;
use super::guard::{await_foreign, guard, guard_future, report, FfiFut, FfiResult};
use crate::module::local_node::{LocalNode, TopicPublish};
use crate::module::storage_types::{AckResult, ApplyBatch, ChangeEvent};
use crate::module::ModuleFuture;

/// ABI mirror of [`LocalNode`].
#[sabi_trait]
pub trait FfiLocalNode: Send + Sync + Clone {
    /// See [`LocalNode::write`].
    fn write(&self, batch: ApplyBatch) -> FfiFut<RVec<AckResult>>;
    /// See [`LocalNode::deliver_change`].
    fn deliver_change(&self, event: &ChangeEvent) -> FfiResult<()>;
    /// See [`LocalNode::deliver_topic`].
    fn deliver_topic(&self, message: &TopicPublish) -> FfiResult<()>;
    /// See [`LocalNode::topology_changed`].
    #[sabi(last_prefix_field)]
    fn topology_changed(&self, version: u64) -> FfiResult<()>;
}

/// A local node as it crosses the boundary.
pub type FfiLocalNodeBox = FfiLocalNode_TO<'static, RArc<()>>;

/// Exports a native local node.
#[derive(Clone)]
pub struct LocalNodeExport(pub std::sync::Arc<dyn LocalNode>);

impl FfiLocalNode for LocalNodeExport {
    fn write(&self, batch: ApplyBatch) -> FfiFut<RVec<AckResult>> {
        guard_future("local_node.write", || self.0.write(batch))
    }
    fn deliver_change(&self, event: &ChangeEvent) -> FfiResult<()> {
        guard("local_node.deliver_change", || {
            self.0.deliver_change(event);
            Ok(())
        })
    }
    fn deliver_topic(&self, message: &TopicPublish) -> FfiResult<()> {
        guard("local_node.deliver_topic", || {
            self.0.deliver_topic(message);
            Ok(())
        })
    }
    fn topology_changed(&self, version: u64) -> FfiResult<()> {
        guard("local_node.topology_changed", || {
            self.0.topology_changed(version);
            Ok(())
        })
    }
}

/// A local node received through the boundary.
pub struct ForeignLocalNode(pub FfiLocalNodeBox);

impl LocalNode for ForeignLocalNode {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn write(&self, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        await_foreign("local_node.write", self.0.write(batch))
    }
    fn deliver_change(&self, event: &ChangeEvent) {
        report(self.0.deliver_change(event), || ());
    }
    fn deliver_topic(&self, message: &TopicPublish) {
        report(self.0.deliver_topic(message), || ());
    }
    fn topology_changed(&self, version: u64) {
        report(self.0.topology_changed(version), || ());
    }
}

conversions! {
    native: LocalNode,
    ffi_box: FfiLocalNodeBox,
    ffi_to: FfiLocalNode_TO,
    export: LocalNodeExport,
    foreign: ForeignLocalNode,
    to_ffi: local_node_to_ffi,
    from_ffi: local_node_from_ffi,
    to_ffi_forced: local_node_to_ffi_forced,
    from_ffi_forced: local_node_from_ffi_forced,
}
