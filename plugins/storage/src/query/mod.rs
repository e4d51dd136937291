//! Queries and live queries over a map's records.
//!
//! # Layout
//!
//! - `error`: [`QueryError`], why a query was refused.
//! - `value`: paths, truthiness, equality and ordering of msgpack values.
//! - `spec`: [`Query`] parsing (`where`, `predicate`, `sort`, `limit`,
//!   `cursor`), [`QueryLimits`], and [`Projection`] (`fields`).
//! - `predicate`: the compiled filter tree: parsing, evaluation, index terms.
//! - `matcher`: [`Matcher`] and [`Row`]: visibility (tombstone, TTL) + filter.
//! - `sort`: [`SortSpec`] and [`SortKey`], the one comparator for ordering,
//!   cursors and windows.
//! - `cursor`: the opaque cursor format and [`CursorStatus`].
//! - `execute`: one-shot [`execute`] giving a [`Page`].
//! - `window`: one subscription's live window (all rows, or a sliding top-N).
//! - `index`: the per-map reverse index that prunes fan-out.
//! - `registry`: [`QueryRegistry`], the live-query registry.
//!
//! Values are dynamic msgpack values ([`rmpv::Value`]) decoded from the
//! stored `RawValue` bytes; the query object is the wire `query` value as
//! the client sent it.

mod cursor;
mod error;
mod execute;
pub(crate) mod index;
mod matcher;
mod predicate;
mod registry;
mod sort;
mod spec;
pub(crate) mod value;
mod window;

#[cfg(test)]
mod tests;

pub use cursor::{CursorStatus, DEFAULT_CURSOR_MAX_AGE_MS, MAX_CURSOR_LEN};
pub use error::QueryError;
pub use execute::{execute, execute_with, Page, ResultRow};
pub use matcher::{Matcher, Row};
pub use registry::{
    ChangeType, QueryRegistry, QuerySink, QueryUpdate, RegistryOptions, Subscribed, SubscriptionId,
};
pub use sort::{Direction, SortField, SortKey, SortSpec};
pub use spec::{Projection, Query, QueryLimits};
pub use value::FieldPath;
