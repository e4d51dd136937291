//! ABI mirror of the partition view (cluster module → host → storage module).

#![allow(
    non_camel_case_types,
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] generates trait-object types and impls named after the trait"
)]

use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, ROption, RString, RVec};

use super::convert::conversions;
use super::guard::{guard, report, FfiResult};
use crate::module::partition::PartitionView;

/// ABI mirror of [`PartitionView`].
#[sabi_trait]
pub trait FfiPartitionView: Send + Sync + Clone {
    /// See [`PartitionView::local_node`].
    fn local_node(&self) -> FfiResult<RString>;
    /// See [`PartitionView::version`].
    fn version(&self) -> FfiResult<u64>;
    /// See [`PartitionView::owner`].
    fn owner(&self, partition: u32) -> FfiResult<ROption<RString>>;
    /// See [`PartitionView::backups`].
    fn backups(&self, partition: u32) -> FfiResult<RVec<RString>>;
    /// See [`PartitionView::is_local_owner`].
    fn is_local_owner(&self, partition: u32) -> FfiResult<bool>;
    /// See [`PartitionView::is_related`].
    #[sabi(last_prefix_field)]
    fn is_related(&self, partition: u32) -> FfiResult<bool>;
}

/// A partition view as it crosses the boundary.
pub type FfiPartitionViewBox = FfiPartitionView_TO<'static, RArc<()>>;

/// Exports a native partition view.
#[derive(Clone)]
pub struct PartitionViewExport(pub std::sync::Arc<dyn PartitionView>);

impl FfiPartitionView for PartitionViewExport {
    fn local_node(&self) -> FfiResult<RString> {
        guard("partition_view.local_node", || Ok(self.0.local_node()))
    }
    fn version(&self) -> FfiResult<u64> {
        guard("partition_view.version", || Ok(self.0.version()))
    }
    fn owner(&self, partition: u32) -> FfiResult<ROption<RString>> {
        guard("partition_view.owner", || Ok(self.0.owner(partition)))
    }
    fn backups(&self, partition: u32) -> FfiResult<RVec<RString>> {
        guard("partition_view.backups", || Ok(self.0.backups(partition)))
    }
    fn is_local_owner(&self, partition: u32) -> FfiResult<bool> {
        guard("partition_view.is_local_owner", || {
            Ok(self.0.is_local_owner(partition))
        })
    }
    fn is_related(&self, partition: u32) -> FfiResult<bool> {
        guard("partition_view.is_related", || {
            Ok(self.0.is_related(partition))
        })
    }
}

/// A partition view received through the boundary. When a call fails (the
/// cluster plugin panicked), it answers conservatively: related (so storage
/// keeps data rather than dropping it), not owner, no backups.
pub struct ForeignPartitionView(pub FfiPartitionViewBox);

impl PartitionView for ForeignPartitionView {
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        Some(&self.0)
    }
    fn local_node(&self) -> RString {
        report(self.0.local_node(), RString::new)
    }
    fn version(&self) -> u64 {
        report(self.0.version(), || 0)
    }
    fn owner(&self, partition: u32) -> ROption<RString> {
        report(self.0.owner(partition), || ROption::RNone)
    }
    fn backups(&self, partition: u32) -> RVec<RString> {
        report(self.0.backups(partition), RVec::new)
    }
    fn is_local_owner(&self, partition: u32) -> bool {
        report(self.0.is_local_owner(partition), || false)
    }
    fn is_related(&self, partition: u32) -> bool {
        report(self.0.is_related(partition), || true)
    }
}

conversions! {
    native: PartitionView,
    ffi_box: FfiPartitionViewBox,
    ffi_to: FfiPartitionView_TO,
    export: PartitionViewExport,
    foreign: ForeignPartitionView,
    to_ffi: partition_view_to_ffi,
    from_ffi: partition_view_from_ffi,
    to_ffi_forced: partition_view_to_ffi_forced,
    from_ffi_forced: partition_view_from_ffi_forced,
}
