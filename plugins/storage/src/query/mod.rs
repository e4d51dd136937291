//! Queries and live queries over a map's records.
//!
//! # Layout
//!
//! - `error`: [`QueryError`], why a query was refused.
//! - `value`: paths, truthiness, equality and ordering of msgpack values.
//! - `spec`: [`Query`] parsing (`where`, `predicate`, `sort`, `limit`,
//!   `cursor`), [`QueryLimits`], and [`Projection`] (`fields`).
//! - `parse`: wire `predicate` / `where` → the compiled filter tree.
//! - `predicate`: the compiled filter tree: evaluation and index terms.
//! - `matcher`: [`Matcher`] and [`Row`]: visibility (tombstone, TTL) + filter.
//! - `sort`: [`SortSpec`] and [`SortKey`], the one comparator for ordering,
//!   cursors and windows.
//! - `cursor`: the opaque cursor format and [`CursorStatus`].
//! - `execute`: one-shot [`execute`] giving a [`Page`].
//! - `window`: one subscription's live window (all rows, or a sliding top-N).
//! - `index`: the per-map reverse index that prunes fan-out.
//! - `update`: what subscriptions emit ([`LiveUpdate`], [`LiveSink`]).
//! - `subscription`: one subscription and how a change becomes updates.
//! - `registry`: [`QueryRegistry`], the live-query registry.
//!
//! Values are dynamic msgpack values ([`rmpv::Value`]) decoded from the
//! stored `RawValue` bytes; the query object is the wire `query` value as
//! the client sent it.
//!
//! # Legacy defects fixed (against the legacy TopGun server)
//!
//! - `like` escapes every regex metacharacter, `*` and `?` included.
//! - `where` accepts `$eq` and `$in`; an unknown operator, op or member is a
//!   [`QueryError`], never a silent non-match.
//! - Sorting and cursors share one comparator with the key as the final
//!   tie-break; cursors carry every sort field; `limit` without `sort`
//!   pages by key instead of throwing.
//! - Subscriptions are keyed by registry-assigned ids, not client query ids.
//! - The snapshot is taken under the same lock as registration.
//! - A change to fields the query does not reference still sends UPDATE to
//!   subscribers holding the record.
//! - A change costs O(log n) per affected top-N window, never a
//!   re-execution over the map; a post-load refresh sends a diff, not a
//!   full resend.
//!
//! # Kept from the legacy server
//!
//! Falsy record values (nil, false, 0, "", NaN) never match;
//! `predicate` overrides `where`; invalid or expired (10 min) cursors restart
//! from the beginning and say so; `hasMore` / `nextCursor` only when more
//! rows exist.
//!
//! # Deliberate differences
//!
//! The cursor string is not the legacy base64url JSON: it is
//! base64url msgpack carrying the full encoded sort position (see `cursor`).
//! Cursors are opaque to clients and only read by the node family that made
//! them, so nothing outside Hangar depends on their layout.

mod cursor;
mod error;
mod execute;
pub(crate) mod index;
mod matcher;
mod parse;
mod predicate;
mod registry;
mod sort;
mod spec;
mod subscription;
mod update;
pub(crate) mod value;
mod window;

#[cfg(test)]
mod tests;

pub use cursor::{CursorStatus, DEFAULT_CURSOR_MAX_AGE_MS, MAX_CURSOR_LEN};
pub use error::QueryError;
pub use execute::{execute, execute_with, Page, ResultRow};
pub use matcher::{Matcher, Row};
pub use registry::{QueryRegistry, RegistryOptions, Subscribed};
pub use sort::{Direction, SortField, SortKey, SortSpec};
pub use spec::{Projection, Query, QueryLimits};
pub use update::{ChangeType, LiveSink, LiveUpdate, RegistryId};
pub use value::FieldPath;
