//! One-shot execution: filter, sort, cursor and limit over a set of records,
//! giving the page a `QUERY_RESP` carries.
//!
//! 1. Keep visible records that match ([`Matcher`]).
//! 2. Order by the query's [`SortKey`] (sort fields, then key ascending).
//! 3. With a `valid` cursor, keep rows strictly after its position.
//! 4. With a limit `n`: `has_more` when more than `n` rows remain; keep `n`;
//!    `next_cursor` (from the last kept row) only when `has_more`.
//!    A limit without sort pages by key.
//!
//! Rows must have distinct keys (one version per key).

use std::sync::Arc;

use rmpv::Value;

use super::cursor::{decode_cursor, encode_cursor, CursorStatus, DEFAULT_CURSOR_MAX_AGE_MS};
use super::matcher::Row;
use super::sort::SortKey;
use super::spec::{Projection, Query};

/// One result: a key and its (projected) value.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// The record key.
    pub key: Arc<str>,
    /// The record value after projection.
    pub value: Value,
}

/// A page of results, as `QUERY_RESP` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The rows, in query order.
    pub rows: Vec<ResultRow>,
    /// Resumes after the last row; present only when `has_more`.
    pub next_cursor: Option<String>,
    /// True when rows beyond this page exist.
    pub has_more: bool,
    /// What became of the query's cursor.
    pub cursor_status: CursorStatus,
}

/// Decodes the query's cursor: the position to start after, and the status.
#[must_use]
pub fn resolve_cursor(
    query: &Query,
    now_ms: u64,
    max_age_ms: u64,
) -> (Option<SortKey>, CursorStatus) {
    match query.cursor() {
        None => (None, CursorStatus::None),
        Some(c) => decode_cursor(
            c,
            query.filter_hash(),
            query.sort_hash(),
            now_ms,
            max_age_ms,
        ),
    }
}

/// Runs `query` over `rows` at `now_ms` with the default cursor age.
#[must_use]
pub fn execute<'a>(
    query: &Query,
    projection: &Projection,
    rows: impl IntoIterator<Item = Row<'a>>,
    now_ms: u64,
) -> Page {
    execute_with(query, projection, rows, now_ms, DEFAULT_CURSOR_MAX_AGE_MS)
}

/// Runs `query` over `rows` at `now_ms`; cursors older than `cursor_max_age_ms`
/// are `expired`.
#[must_use]
pub fn execute_with<'a>(
    query: &Query,
    projection: &Projection,
    rows: impl IntoIterator<Item = Row<'a>>,
    now_ms: u64,
    cursor_max_age_ms: u64,
) -> Page {
    let (after, cursor_status) = resolve_cursor(query, now_ms, cursor_max_age_ms);
    let mut hits = collect_hits(query, rows, now_ms, after.as_ref());
    let limit = query.limit();
    if let Some(l) = limit {
        if hits.len() > l + 1 {
            hits.select_nth_unstable_by(l, |a, b| a.0.cmp(&b.0));
            hits.truncate(l + 1);
        }
    }
    hits.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let has_more = limit.is_some_and(|l| hits.len() > l);
    if let Some(l) = limit {
        hits.truncate(l);
    }
    let next_cursor = has_more.then(|| {
        let last = &hits[hits.len() - 1].0;
        encode_cursor(last, query.filter_hash(), query.sort_hash(), now_ms)
    });
    Page {
        rows: hits
            .into_iter()
            .map(|(sk, v)| ResultRow {
                key: sk.key().clone(),
                value: projection.apply(v).into_owned(),
            })
            .collect(),
        next_cursor,
        has_more,
        cursor_status,
    }
}

/// Visible, matching rows strictly after `after`, with their sort keys.
pub(crate) fn collect_hits<'a>(
    query: &Query,
    rows: impl IntoIterator<Item = Row<'a>>,
    now_ms: u64,
    after: Option<&SortKey>,
) -> Vec<(SortKey, &'a Value)> {
    rows.into_iter()
        .filter_map(|r| {
            let v = r.visible_value(now_ms)?;
            if !query.matcher().matches(v) {
                return None;
            }
            let sk = query.sort().key_of(Arc::from(r.key), v);
            if after.is_some_and(|a| sk <= *a) {
                return None;
            }
            Some((sk, v))
        })
        .collect()
}
