//! [`Query`]: the wire `query` object of `QUERY_SUB`, parsed and compiled once.
//!
//! Accepted members (all optional; nil counts as absent):
//!
//! - `predicate`: a TopGun predicate tree (see `predicate`); overrides `where`.
//! - `where`: legacy field conditions (see `predicate`).
//! - `sort`: `[{field, direction}]` (TopGun v2) or `{field: "asc"|"desc"}`
//!   (legacy; map order is priority order). `direction` defaults to `asc`.
//! - `limit`: a non-negative integer (an integral float is accepted); `0`
//!   means no limit, as in the legacy server.
//! - `cursor`: the opaque string of a previous page's `nextCursor`.
//!
//! `groupBy` and `aggregations` are refused as unsupported, and any other
//! member is refused as unknown: a misspelt member would otherwise silently
//! widen the result. Hostile input is bounded by [`QueryLimits`].

use std::borrow::Cow;
use std::hash::Hasher;

use rmpv::Value;

use super::error::{describe, QueryError};
use super::matcher::Matcher;
use super::parse::{parse_predicate, parse_where, Budget};
use super::sort::{Direction, SortField, SortSpec};
use super::value::{canonical_hash, map_get, FieldPath, Fnv64};

/// Bounds on a query's size, checked while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Deepest predicate nesting accepted.
    pub max_depth: usize,
    /// Most predicate nodes (leaves and combinators) accepted.
    pub max_nodes: usize,
    /// Longest `in` / `containsAll` / `containsAny` list accepted.
    pub max_list_len: usize,
    /// Longest `like` / `regex` pattern accepted, in bytes.
    pub max_pattern_len: usize,
    /// Largest compiled regex accepted, in bytes (the regex crate's size limit).
    pub max_regex_size: usize,
    /// Most sort fields accepted.
    pub max_sort_fields: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_nodes: 1024,
            max_list_len: 10_000,
            max_pattern_len: 4096,
            max_regex_size: 1 << 20,
            max_sort_fields: 16,
        }
    }
}

const MEMBERS: &str = "where, predicate, sort, limit, cursor";

/// A parsed, compiled query. Cheap to clone (regexes are shared).
#[derive(Debug, Clone)]
pub struct Query {
    matcher: Matcher,
    sort: SortSpec,
    limit: Option<usize>,
    cursor: Option<String>,
    filter_hash: u64,
    sort_hash: u64,
}

impl Query {
    /// Parses the wire `query` value with the default [`QueryLimits`].
    ///
    /// # Errors
    /// A [`QueryError`] naming the offending member: unknown operators or
    /// members, wrong argument types, bad regexes, sizes over the limits.
    pub fn parse(v: &Value) -> Result<Self, QueryError> {
        Self::parse_with(v, &QueryLimits::default())
    }

    /// Parses the wire `query` value under `limits`.
    ///
    /// # Errors
    /// As [`Query::parse`].
    pub fn parse_with(v: &Value, limits: &QueryLimits) -> Result<Self, QueryError> {
        let entries: &[(Value, Value)] = match v {
            Value::Nil => &[],
            Value::Map(m) => m,
            other => {
                return Err(QueryError::WrongType {
                    at: "query".into(),
                    expected: "a query map",
                    found: describe(other),
                })
            }
        };
        let mut predicate = None;
        let mut where_ = None;
        let mut sort = None;
        let mut limit = None;
        let mut cursor = None;
        for (k, val) in entries {
            let name = k.as_str().ok_or_else(|| QueryError::WrongType {
                at: "query".into(),
                expected: "string member names",
                found: describe(k),
            })?;
            if val.is_nil() {
                continue;
            }
            match name {
                "predicate" => predicate = Some(val),
                "where" => where_ = Some(val),
                "sort" => sort = Some(val),
                "limit" => limit = Some(val),
                "cursor" => cursor = Some(val),
                "groupBy" | "aggregations" => {
                    return Err(QueryError::Unsupported {
                        at: format!("query.{name}"),
                        feature: "aggregation".into(),
                        hint: "the storage module returns records; the host groups a QUERY_SUB (host/src/server/grouped)",
                    })
                }
                other => {
                    return Err(QueryError::Invalid {
                        at: "query".into(),
                        problem: format!("unknown member `{other}`; expected one of {MEMBERS}"),
                    })
                }
            }
        }

        let mut budget = Budget { limits, nodes: 0 };
        let (filter, filter_source) = match (predicate, where_) {
            (Some(p), _) => (
                Some(parse_predicate(p, "query.predicate", 1, &mut budget)?),
                p,
            ),
            (None, Some(w)) => (Some(parse_where(w, "query.where", &mut budget)?), w),
            (None, None) => (None, &Value::Nil),
        };
        let mut h = Fnv64::default();
        canonical_hash(filter_source, &mut h);
        let filter_hash = h.finish();

        let sort = match sort {
            Some(s) => parse_sort(s, limits)?,
            None => SortSpec::default(),
        };
        let mut h = Fnv64::default();
        for f in sort.fields() {
            h.write(f.path.as_str().as_bytes());
            h.write_u8(0);
            h.write_u8(u8::from(f.direction == Direction::Desc));
        }
        let sort_hash = h.finish();

        let limit = match limit {
            Some(l) => parse_limit(l)?,
            None => None,
        };
        let cursor = match cursor {
            Some(Value::String(s)) => Some(
                s.as_str()
                    .ok_or_else(|| QueryError::WrongType {
                        at: "query.cursor".into(),
                        expected: "a cursor string",
                        found: "invalid UTF-8 string".into(),
                    })?
                    .to_string(),
            ),
            Some(other) => {
                return Err(QueryError::WrongType {
                    at: "query.cursor".into(),
                    expected: "a cursor string",
                    found: describe(other),
                })
            }
            None => None,
        };

        Ok(Self {
            matcher: Matcher::new(filter),
            sort,
            limit,
            cursor,
            filter_hash,
            sort_hash,
        })
    }

    /// The filter.
    #[must_use]
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The sort (possibly empty: key order).
    #[must_use]
    pub fn sort(&self) -> &SortSpec {
        &self.sort
    }

    /// The page size / live window size, if any.
    #[must_use]
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// The cursor string the client sent, if any.
    #[must_use]
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The same query with another cursor (or none).
    #[must_use]
    pub fn with_cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The same query with another limit (`None` or `Some(0)`: no limit).
    #[must_use]
    pub fn with_limit(mut self, limit: Option<usize>) -> Self {
        self.limit = limit.filter(|l| *l > 0);
        self
    }

    /// Hash of the filter's wire form, which cursors carry.
    #[must_use]
    pub fn filter_hash(&self) -> u64 {
        self.filter_hash
    }

    /// Hash of the normalized sort, which cursors carry.
    #[must_use]
    pub fn sort_hash(&self) -> u64 {
        self.sort_hash
    }
}

fn parse_sort(v: &Value, limits: &QueryLimits) -> Result<SortSpec, QueryError> {
    let mut fields = Vec::new();
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("query.sort[{i}]");
                let Value::Map(m) = item else {
                    return Err(QueryError::WrongType {
                        at,
                        expected: "{field, direction}",
                        found: describe(item),
                    });
                };
                let f = map_get(m, "field").ok_or_else(|| QueryError::Missing {
                    at: at.clone(),
                    member: "field",
                })?;
                let f = f.as_str().ok_or_else(|| QueryError::WrongType {
                    at: format!("{at}.field"),
                    expected: "a field name string",
                    found: describe(f),
                })?;
                let direction = match map_get(m, "direction") {
                    None | Some(Value::Nil) => Direction::Asc,
                    Some(d) => Direction::parse(d, &format!("{at}.direction"))?,
                };
                fields.push(SortField {
                    path: FieldPath::parse(f, &format!("{at}.field"))?,
                    direction,
                });
            }
        }
        Value::Map(m) => {
            for (k, d) in m {
                let f = k.as_str().ok_or_else(|| QueryError::WrongType {
                    at: "query.sort".into(),
                    expected: "string field names",
                    found: describe(k),
                })?;
                let at = format!("query.sort.{f}");
                fields.push(SortField {
                    path: FieldPath::parse(f, &at)?,
                    direction: Direction::parse(d, &at)?,
                });
            }
        }
        other => {
            return Err(QueryError::WrongType {
                at: "query.sort".into(),
                expected: "[{field, direction}] or {field: direction}",
                found: describe(other),
            })
        }
    }
    if fields.len() > limits.max_sort_fields {
        return Err(QueryError::TooLarge {
            what: "the number of sort fields",
            limit: limits.max_sort_fields,
        });
    }
    Ok(SortSpec::new(fields))
}

fn parse_limit(v: &Value) -> Result<Option<usize>, QueryError> {
    let bad = || QueryError::WrongType {
        at: "query.limit".into(),
        expected: "a non-negative integer",
        found: describe(v),
    };
    let n = match v {
        Value::Integer(i) => i.as_u64().ok_or_else(bad)?,
        Value::F32(_) | Value::F64(_) => {
            let f = v.as_f64().ok_or_else(bad)?;
            if !(f >= 0.0 && f.fract() == 0.0 && f < 1.0e15) {
                return Err(bad());
            }
            // Whole, non-negative and below 2^53: exact.
            f as u64
        }
        _ => return Err(bad()),
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    Ok((n > 0).then_some(n))
}

/// Which top-level fields of a result value the client receives (the
/// `fields` member of `QUERY_SUB`, beside `query`), and the hook for
/// field-level security: intersect the client's projection with the
/// fields its role may read ([`Projection::intersect`]).
///
/// Projection shapes values only: filtering and sorting always see the whole
/// record. A projected map keeps the record's entry order. A value that is
/// not a map is passed through unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    fields: Option<Vec<String>>,
}

impl Projection {
    /// No projection: whole values.
    #[must_use]
    pub fn all() -> Self {
        Self { fields: None }
    }

    /// Projection onto exactly `fields` (an empty list projects maps to `{}`).
    #[must_use]
    pub fn of(fields: Vec<String>) -> Self {
        Self {
            fields: Some(fields),
        }
    }

    /// The fields both projections keep (`all` is the identity).
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Self {
        match (&self.fields, &other.fields) {
            (None, _) => other.clone(),
            (_, None) => self.clone(),
            (Some(a), Some(b)) => Self::of(a.iter().filter(|f| b.contains(f)).cloned().collect()),
        }
    }

    /// Parses the wire `fields` value: absent, nil or an empty list mean the
    /// whole value.
    ///
    /// # Errors
    /// [`QueryError::WrongType`] unless it is nil/absent or an array of strings.
    pub fn parse(v: Option<&Value>) -> Result<Self, QueryError> {
        match v {
            None | Some(Value::Nil) => Ok(Self::all()),
            Some(Value::Array(items)) => {
                let mut fields = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let s = item.as_str().ok_or_else(|| QueryError::WrongType {
                        at: format!("fields[{i}]"),
                        expected: "a top-level field name string",
                        found: describe(item),
                    })?;
                    fields.push(s.to_string());
                }
                Ok(if fields.is_empty() {
                    Self::all()
                } else {
                    Self::of(fields)
                })
            }
            Some(other) => Err(QueryError::WrongType {
                at: "fields".into(),
                expected: "an array of field names",
                found: describe(other),
            }),
        }
    }

    /// True when values pass through whole.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.fields.is_none()
    }

    /// The projected form of `value`.
    #[must_use]
    pub fn apply<'v>(&self, value: &'v Value) -> Cow<'v, Value> {
        match (&self.fields, value) {
            (Some(fields), Value::Map(entries)) => Cow::Owned(Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.as_str().is_some_and(|k| fields.iter().any(|f| f == k)))
                    .cloned()
                    .collect(),
            )),
            _ => Cow::Borrowed(value),
        }
    }
}
