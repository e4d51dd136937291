//! What a live subscription emits: [`SubscriptionId`], [`ChangeType`],
//! [`QueryUpdate`], and the [`QuerySink`] that receives them.

use std::sync::Arc;

use rmpv::Value;

/// A live subscription's identity, assigned by the registry (never by the
/// client: client query ids are only unique per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// How a record's membership in a result window changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    /// The record entered the window.
    Enter,
    /// The record stayed in the window and its (projected) value changed.
    Update,
    /// The record left the window.
    Leave,
}

impl ChangeType {
    /// The wire string: `ENTER`, `UPDATE` or `LEAVE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enter => "ENTER",
            Self::Update => "UPDATE",
            Self::Leave => "LEAVE",
        }
    }
}

/// One live-query update, what `QUERY_UPDATE` carries.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryUpdate {
    /// The subscription it is for.
    pub subscription: SubscriptionId,
    /// The record key.
    pub key: Arc<str>,
    /// What happened.
    pub change: ChangeType,
    /// The projected value; `None` exactly for LEAVE. Shared (not copied)
    /// between all subscriptions that see the whole value.
    pub value: Option<Arc<Value>>,
}

/// Where a subscription's updates go. Implemented for every
/// `Fn(QueryUpdate) + Send + Sync`.
///
/// # Contract
/// `deliver` is called under the registry's per-map lock: it MUST return
/// promptly and MUST NOT call into the [`QueryRegistry`](super::QueryRegistry).
pub trait QuerySink: Send + Sync {
    /// Takes one update.
    fn deliver(&self, update: QueryUpdate);
}

impl<F: Fn(QueryUpdate) + Send + Sync> QuerySink for F {
    fn deliver(&self, update: QueryUpdate) {
        self(update);
    }
}
