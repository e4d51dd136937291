//! `queries` → `queryResults` and `searches` → `searchResults`: one-shot
//! reads through the cluster module, so they cover every partition.

use abi_stable::std_types::{ROption, RString};
use hangar_core::module::storage_types::{CursorStatus, QueryRequest, QueryResponse};
use hangar_core::{ModuleError, RawValue};

use crate::protocol::messages::{
    HttpQuery, HttpQueryResult, HttpSearch, HttpSearchResult, QueryResultEntry,
};
use crate::protocol::RawMsgpack;
use crate::server::grouped;
use crate::server::handlers::queries::{search_request, search_results};
use crate::server::handlers::status_of;
use crate::server::state::FrontEnd;

/// One query, once, over every partition. With `groupBy` / `aggregations`
/// the results are the group rows (keyed by `__key`, in `__key` order, as
/// a grouped `QUERY_SUB` answers), paged by `offset` / `limit`.
pub(super) async fn query(fe: &FrontEnd, q: HttpQuery) -> Result<HttpQueryResult, (u32, String)> {
    if q.group_by.is_some() || q.aggregations.is_some() {
        return grouped_query(fe, q).await;
    }
    let mut members: Vec<(rmpv::Value, rmpv::Value)> = Vec::new();
    if let Some(w) = where_of(q.filter)? {
        members.push(("where".into(), w));
    }
    let skip = if q.cursor.is_some() {
        0
    } else {
        q.offset.unwrap_or(0)
    };
    if let Some(limit) = q.limit.filter(|l| *l > 0) {
        members.push(("limit".into(), limit.saturating_add(skip).into()));
    }
    if let Some(c) = &q.cursor {
        members.push(("cursor".into(), c.as_str().into()));
    }
    let resp = run(fe, &q.map_name, &rmpv::Value::Map(members)).await?;
    if matches!(
        resp.cursor_status,
        CursorStatus::Invalid | CursorStatus::Expired
    ) {
        return Err((
            400,
            format!(
                "invalid or expired cursor ({}): query again without it",
                resp.cursor_status.as_str()
            ),
        ));
    }
    Ok(HttpQueryResult {
        query_id: q.query_id,
        results: resp
            .rows
            .into_iter()
            .skip(skip as usize)
            .map(|r| QueryResultEntry {
                key: r.key.into_string(),
                value: RawMsgpack::from_raw_value(r.value),
            })
            .collect(),
        has_more: resp.has_more.then_some(true),
        next_cursor: resp.next_cursor.map(RString::into_string).into_option(),
    })
}

/// Runs `query` (a query map) once over every partition of `map` through
/// the cluster module; errors as the HTTP answer (status, message).
async fn run(
    fe: &FrontEnd,
    map: &str,
    query: &rmpv::Value,
) -> Result<QueryResponse, (u32, String)> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, query)
        .map_err(|e| (500, format!("cannot encode the query: {e}")))?;
    fe.node
        .cluster
        .query(QueryRequest {
            map: map.into(),
            query: RawValue::from_msgpack(bytes),
            fields: ROption::RNone,
            consistency: ROption::RNone,
        })
        .await
        .map_err(|e| (status_of(&e), format!("query failed: {}", e.message)))
}

/// The `where` member of a query from an HTTP `filter`.
fn where_of(filter: Option<rmpv::Value>) -> Result<Option<rmpv::Value>, (u32, String)> {
    match filter {
        None | Some(rmpv::Value::Nil) => Ok(None),
        Some(f @ rmpv::Value::Map(_)) => Ok(Some(f)),
        Some(other) => Err((
            400,
            format!(
                "query filter must be a map of field → value (equality) or null, found {}",
                kind_of(&other)
            ),
        )),
    }
}

/// A grouped query: the ungrouped query runs over every partition, its rows
/// are grouped as a grouped `QUERY_SUB`'s snapshot is, then paged.
async fn grouped_query(fe: &FrontEnd, q: HttpQuery) -> Result<HttpQueryResult, (u32, String)> {
    if q.cursor.is_some() {
        return Err((
            400,
            "cursor: not supported with groupBy/aggregations; page group rows with offset and limit".into(),
        ));
    }
    let mut members: Vec<(rmpv::Value, rmpv::Value)> = Vec::new();
    if let Some(w) = where_of(q.filter)? {
        members.push(("where".into(), w));
    }
    if let Some(g) = q.group_by {
        members.push(("groupBy".into(), g));
    }
    if let Some(a) = q.aggregations {
        members.push(("aggregations".into(), a));
    }
    let split = grouped::split(&rmpv::Value::Map(members)).map_err(|e| (400, e))?;
    let Some(spec) = split.group else {
        return Err((
            400,
            "groupBy/aggregations: both are null; send a list of fields or aggregations".into(),
        ));
    };
    let resp = run(fe, &q.map_name, &split.rows_query).await?;
    let rows = grouped::group_rows(spec, &resp.rows);
    let skip = q.offset.unwrap_or(0) as usize;
    let take = q
        .limit
        .filter(|l| *l > 0)
        .map_or(usize::MAX, |l| l as usize);
    let has_more = rows.len() > skip.saturating_add(take);
    Ok(HttpQueryResult {
        query_id: q.query_id,
        results: rows
            .into_iter()
            .skip(skip)
            .take(take)
            .map(|r| QueryResultEntry {
                key: r.key.into_string(),
                value: RawMsgpack::from_raw_value(r.value),
            })
            .collect(),
        has_more: has_more.then_some(true),
        next_cursor: None,
    })
}

fn kind_of(v: &rmpv::Value) -> &'static str {
    match v {
        rmpv::Value::Nil => "nil",
        rmpv::Value::Boolean(_) => "a boolean",
        rmpv::Value::Integer(_) | rmpv::Value::F32(_) | rmpv::Value::F64(_) => "a number",
        rmpv::Value::String(_) => "a string",
        rmpv::Value::Binary(_) => "binary",
        rmpv::Value::Array(_) => "an array",
        rmpv::Value::Map(_) => "a map",
        rmpv::Value::Ext(..) => "an extension value",
    }
}

/// One full-text search, once, over every partition.
pub(super) async fn search(fe: &FrontEnd, s: HttpSearch) -> Result<HttpSearchResult, ModuleError> {
    let hits = fe
        .node
        .cluster
        .search(search_request(&s.map_name, &s.query, s.options, None))
        .await?;
    Ok(HttpSearchResult {
        search_id: s.search_id,
        total_count: Some(u32::try_from(hits.len()).unwrap_or(u32::MAX)),
        results: search_results(hits),
    })
}
