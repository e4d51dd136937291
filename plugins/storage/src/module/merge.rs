//! Merging result pages gathered from several nodes into the page one node
//! holding every row would have answered: the cluster module scatters a
//! query (without `limit` and `cursor`, unprojected), keeps each node's rows
//! of the partitions it owns, and hands them here.
//!
//! The merge runs the query engine's own [`query::execute`] over the union
//! of the rows, so sort order (ties by key), cursors, `limit`, `hasMore` and
//! the projection are exactly those of a local query. A key found in more
//! than one page counts once: the first page's row wins.

use std::collections::HashSet;

use abi_stable::std_types::RVec;
use hangar_core::module::storage_types::{QueryRequest, QueryResponse};
use hangar_core::ModuleResult;
use rmpv::Value;

use super::convert::{decode, response};
use super::read_path::parse_request;
use crate::query::{self, Row};

/// The page `request` gives over the rows of `pages` at `now_ms` (see the
/// module doc).
///
/// # Errors
/// When `request.query` is not a valid query (the error a local query gives).
pub(crate) fn merge_pages(
    request: &QueryRequest,
    pages: &RVec<QueryResponse>,
    now_ms: u64,
) -> ModuleResult<QueryResponse> {
    let (q, projection) = parse_request(request)?;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut rows: Vec<(&str, Value)> = Vec::new();
    for page in pages {
        for r in &page.rows {
            if !seen.insert(r.key.as_str()) {
                continue;
            }
            if let Some(v) = decode(r.value.as_bytes()) {
                rows.push((r.key.as_str(), v));
            }
        }
    }
    let page = query::execute(
        &q,
        &projection,
        rows.iter().map(|(k, v)| Row::live(k, v)),
        now_ms,
    );
    Ok(response(page))
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{ROption, RString};
    use hangar_core::module::storage_types::{CursorStatus, QueryRow};
    use hangar_core::RawValue;
    use serde_json::json;

    use super::*;

    fn raw(v: &serde_json::Value) -> RawValue {
        RawValue::from_msgpack(rmp_serde::to_vec(v).expect("encode"))
    }

    fn request(q: &serde_json::Value, fields: Option<Vec<&str>>) -> QueryRequest {
        QueryRequest {
            map: "m".into(),
            query: raw(q),
            fields: fields
                .map(|f| f.into_iter().map(RString::from).collect())
                .into(),
            consistency: ROption::RNone,
        }
    }

    fn page(rows: &[(&str, serde_json::Value)]) -> QueryResponse {
        QueryResponse {
            rows: rows
                .iter()
                .map(|(k, v)| QueryRow {
                    key: (*k).into(),
                    value: raw(v),
                })
                .collect(),
            next_cursor: ROption::RNone,
            has_more: false,
            cursor_status: CursorStatus::None,
        }
    }

    fn keys(r: &QueryResponse) -> Vec<&str> {
        r.rows.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn t10_sorted_limited_pages_merge_into_the_global_top_n_with_has_more() {
        let a = page(&[("a1", json!({"v": 5})), ("a2", json!({"v": 1}))]);
        let b = page(&[("b1", json!({"v": 9})), ("b2", json!({"v": 3}))]);
        let c = page(&[("c1", json!({"v": 7}))]);
        let req = request(&json!({"sort": {"v": "desc"}, "limit": 3}), None);
        let out = merge_pages(&req, &vec![a, b, c].into(), 1_000).unwrap();
        assert_eq!(keys(&out), ["b1", "c1", "a1"]);
        assert!(out.has_more, "two rows remain past the limit");
        assert!(out.next_cursor.is_some());
    }

    #[test]
    fn t11_unsorted_pages_come_back_by_key_and_a_duplicate_key_counts_once() {
        let a = page(&[("k2", json!({"v": 2})), ("k1", json!({"v": 1}))]);
        let b = page(&[("k1", json!({"v": 100})), ("k3", json!({"v": 3}))]);
        let out = merge_pages(&request(&json!({}), None), &vec![a, b].into(), 1).unwrap();
        assert_eq!(keys(&out), ["k1", "k2", "k3"]);
        assert_eq!(out.rows[0].value, raw(&json!({"v": 1})), "first page wins");
        assert!(!out.has_more);
    }

    #[test]
    fn t12_the_projection_is_applied_after_sorting_on_an_unprojected_field() {
        let a = page(&[("x", json!({"v": 1, "name": "x"}))]);
        let b = page(&[("y", json!({"v": 2, "name": "y"}))]);
        let req = request(&json!({"sort": {"v": "desc"}}), Some(vec!["name"]));
        let out = merge_pages(&req, &vec![a, b].into(), 1).unwrap();
        assert_eq!(keys(&out), ["y", "x"]);
        assert_eq!(out.rows[0].value, raw(&json!({"name": "y"})));
    }

    #[test]
    fn t13_an_invalid_query_is_refused_like_a_local_query() {
        let err = merge_pages(&request(&json!({"bogus": 1}), None), &RVec::new(), 1).unwrap_err();
        assert!(err.message.contains("invalid query"), "{err}");
    }
}
