//! Grouped live queries: `QUERY_SUB` with `groupBy` and `aggregations`.
//!
//! The client gets one row per group (`{__key, __count, __<func>_<field>...,
//! <groupBy fields>...}`, keyed by the opaque bucket id `__key`), and then,
//! live, a `QUERY_UPDATE` for every group row a change moves: ENTER for a
//! new group, UPDATE for a changed one, LEAVE for one left empty.
//!
//! # Where grouping happens: on the host, from the ungrouped live query
//!
//! The host strips `groupBy` / `aggregations` from the query, subscribes
//! the remaining (same filter) query like any other live query, and keeps
//! the groups itself from that subscription's snapshot and its
//! ENTER / UPDATE / LEAVE stream ([`GroupedSink`], [`Groups`]).
//!
//! The alternative was grouping in the storage module on each node and
//! merging partial aggregates on the coordinator. It was not chosen:
//!
//! - In a cluster one query's rows come from several nodes and, across
//!   failovers and migrations, move between them; the cluster module
//!   already turns that into one consistent per-key stream (see
//!   `plugins/cluster/src/scatter/live.rs`: keys whose server changes do not
//!   leave and come back). Grouping on that stream is right on one node and
//!   in a cluster with no new code in either module.
//! - Partial aggregates do not merge for `min` / `max` under deletes: a
//!   node would have to ship its whole multiset, or the coordinator re-ask
//!   on every delete of a current extreme. Partial sums merge, but each
//!   node's partials would have to be tracked per round and replaced when
//!   a partition moves.
//! - No plugin ABI change: the module traits and `QueryRequest` stay as
//!   they are.
//!
//! The cost is that the record values travel to the host (as they do for an
//! ungrouped live query), and the host keeps one small contribution per
//! matching record (its bucket id and aggregation inputs). Each change
//! costs O(1) hash work plus O(log n) per `min` / `max` (see `groups`).
//!
//! # Layout
//!
//! - `spec`: [`GroupSpec`] and [`split`]: parsing `groupBy` /
//!   `aggregations`, refusing what grouped queries do not support (`sort`,
//!   `limit`, `cursor`, and `fields` in the handler).
//! - `groups`: [`Groups`], the incremental aggregator.
//! - `sink`: [`GroupedSink`], from row changes to group-row frames.

mod groups;
mod sink;
mod spec;

#[cfg(test)]
mod tests;

pub use groups::{bucket_id, Groups};
pub use sink::{group_rows, GroupedSink};
pub use spec::{split, Aggregation, Func, GroupSpec, Split, MAX_AGGREGATIONS, MAX_GROUP_FIELDS};
