//! The partition view: the cluster module's answer to "who owns this key?",
//! handed to the storage module so that it loads only related keys.

use abi_stable::std_types::{ROption, RString, RVec};

use crate::hash::partition_of;

/// Read-only view of the partition table.
///
/// # Contract
/// - Calls MUST be cheap and non-blocking: storage calls `is_related` once
///   per key while loading a map.
/// - `owner` and `backups` of a partition MUST NOT overlap (a node is never
///   its own backup).
/// - `version` MUST increase whenever ownership changes.
pub trait PartitionView: Send + Sync + 'static {
    /// Plugin-boundary detail: a wrapper over an object from another library
    /// returns that object here, so it is passed on rather than wrapped again.
    /// Every other implementation MUST keep this default.
    #[doc(hidden)]
    fn as_foreign_object(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// This node's id.
    fn local_node(&self) -> RString;
    /// Version of the partition table.
    fn version(&self) -> u64;
    /// Owner of `partition`, or `None` if unassigned or out of range.
    fn owner(&self, partition: u32) -> ROption<RString>;
    /// Backups of `partition`, in promotion order.
    fn backups(&self, partition: u32) -> RVec<RString>;
    /// True when this node owns `partition`.
    fn is_local_owner(&self, partition: u32) -> bool;
    /// True when this node owns or backs up `partition`.
    fn is_related(&self, partition: u32) -> bool;
}

/// Key-based helpers over any [`PartitionView`].
pub trait PartitionViewExt {
    /// `is_related(partition_of(key))`.
    fn is_related_key(&self, key: &str) -> bool;
    /// `is_local_owner(partition_of(key))`.
    fn owns_key(&self, key: &str) -> bool;
}

impl<P: PartitionView + ?Sized> PartitionViewExt for P {
    fn is_related_key(&self, key: &str) -> bool {
        self.is_related(partition_of(key))
    }

    fn owns_key(&self, key: &str) -> bool {
        self.is_local_owner(partition_of(key))
    }
}
