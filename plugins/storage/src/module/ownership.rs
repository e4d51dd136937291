//! Ownership changes: when the cluster installs a new partition table, the
//! storage module loads what it now holds and releases what it no longer
//! holds.

use std::sync::Arc;

use super::core::Core;

impl Core {
    /// The partition table changed to `version` (see
    /// `StorageAccessor::partitions_changed`). Not yet acted on: maps
    /// loaded before a change keep the keys they had.
    pub(crate) fn partitions_changed(self: &Arc<Self>, version: u64) {
        tracing::debug!(version, "partition table changed");
    }
}
