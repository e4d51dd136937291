//! What a live subscription emits: [`RegistryId`], [`ChangeType`],
//! [`LiveUpdate`], and the [`LiveSink`] that receives them.

use std::sync::Arc;

use rmpv::Value;

/// A live subscription's identity, assigned by the registry (never by the
/// client: client query ids are only unique per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryId(pub u64);

/// How a record's membership in a result window changed: core's type, so
/// updates cross the module boundary unchanged.
pub use hangar_core::module::storage_types::ChangeType;

/// One live-query update, what `QUERY_UPDATE` carries.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveUpdate {
    /// The subscription it is for.
    pub subscription: RegistryId,
    /// The record key.
    pub key: Arc<str>,
    /// What happened.
    pub change: ChangeType,
    /// The projected value; `None` exactly for LEAVE. Shared (not copied)
    /// between all subscriptions that see the whole value.
    pub value: Option<Arc<Value>>,
}

/// Where a subscription's updates go. Implemented for every
/// `Fn(LiveUpdate) + Send + Sync`.
///
/// # Contract
/// `deliver` is called under the registry's per-map lock: it MUST return
/// promptly and MUST NOT call into the [`QueryRegistry`](super::QueryRegistry).
pub trait LiveSink: Send + Sync {
    /// Takes one update.
    fn deliver(&self, update: LiveUpdate);
}

impl<F: Fn(LiveUpdate) + Send + Sync> LiveSink for F {
    fn deliver(&self, update: LiveUpdate) {
        self(update);
    }
}
