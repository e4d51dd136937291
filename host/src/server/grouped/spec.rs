//! [`GroupSpec`]: the `groupBy` and `aggregations` members of a `QUERY_SUB`
//! query, parsed, and the ungrouped query the storage module runs instead.

use rmpv::Value;

/// Most `groupBy` fields accepted.
pub const MAX_GROUP_FIELDS: usize = 16;
/// Most aggregations accepted.
pub const MAX_AGGREGATIONS: usize = 64;

/// An aggregate function of the `aggregations` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Rows in the group (`count` without a field is the `__count` column
    /// every row carries); with a field, rows where that field is present
    /// and not nil.
    Count,
    /// Sum of the numeric values of the field (0 when there are none).
    Sum,
    /// Sum ÷ number of numeric values; nil when there are none.
    Avg,
    /// Smallest numeric value, as it was stored; nil when there are none.
    Min,
    /// Largest numeric value, as it was stored; nil when there are none.
    Max,
}

impl Func {
    fn parse(name: &str, at: &str) -> Result<Self, String> {
        Ok(match name {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            other => {
                return Err(format!(
                    "{at}.func: unknown aggregate function `{other}`; expected one of count, sum, avg, min, max"
                ))
            }
        })
    }

    /// The wire name (`count`, `sum`, ...), used in column names.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// One requested aggregation: its function, its field (`None` only for a
/// plain `count`) and the result column it fills (`__<func>_<field>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregation {
    /// The function.
    pub func: Func,
    /// The field it reads (a dot path into the record).
    pub field: Option<String>,
    /// The column of the group row it fills.
    pub column: String,
}

/// How a grouped query buckets and summarises the rows its filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The grouping fields, in order (each also a column of the group row).
    pub group_by: Vec<String>,
    /// The aggregations with a column of their own, in request order (a
    /// plain `count` is the always-present `__count` and is not listed).
    pub aggregations: Vec<Aggregation>,
}

/// A `QUERY_SUB` query split into its grouping and the ungrouped query
/// (the same filter) the storage module runs.
#[derive(Debug, Clone)]
pub struct Split {
    /// The grouping, when the query asked for one.
    pub group: Option<GroupSpec>,
    /// The query without `groupBy` / `aggregations`.
    pub rows_query: Value,
}

/// Splits `query` into its grouping and the query over rows.
///
/// A query without `groupBy` and `aggregations` (or with both nil) comes
/// back unchanged with `group: None`. `aggregations` without `groupBy` is
/// one group of every matching row.
///
/// # Errors
/// A message naming the member that is wrong and what was expected:
/// `groupBy` not a list of field names, an aggregation not
/// `{func, field?}`, an unknown function, `sum`/`avg`/`min`/`max` without a
/// field, lists over [`MAX_GROUP_FIELDS`] / [`MAX_AGGREGATIONS`]; and
/// `sort`, `limit` and `cursor`, which grouped queries do not support
/// (group rows come in bucket-id order, all of them).
pub fn split(query: &Value) -> Result<Split, String> {
    let Value::Map(entries) = query else {
        return Ok(Split {
            group: None,
            rows_query: query.clone(),
        });
    };
    let member = |name: &str| {
        entries
            .iter()
            .find(|(k, v)| k.as_str() == Some(name) && !v.is_nil())
            .map(|(_, v)| v)
    };
    let group_by = member("groupBy");
    let aggregations = member("aggregations");
    if group_by.is_none() && aggregations.is_none() {
        return Ok(Split {
            group: None,
            rows_query: query.clone(),
        });
    }
    for refused in ["sort", "limit", "cursor"] {
        if member(refused).is_some() {
            return Err(format!(
                "query.{refused}: not supported with groupBy/aggregations; a grouped query sends every group row, ordered by its __key"
            ));
        }
    }
    let group_by = match group_by {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_GROUP_FIELDS {
                return Err(format!(
                    "query.groupBy: {} fields; at most {MAX_GROUP_FIELDS} are accepted",
                    items.len()
                ));
            }
            let mut fields = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(f) if !f.is_empty() => fields.push(f.to_string()),
                    _ => {
                        return Err(format!(
                        "query.groupBy[{i}]: expected a non-empty field name string, found {item}"
                    ))
                    }
                }
            }
            fields
        }
        Some(other) => {
            return Err(format!(
                "query.groupBy: expected an array of field names, found {other}"
            ))
        }
    };
    let aggregations = match aggregations {
        None => Vec::new(),
        Some(Value::Array(items)) => parse_aggregations(items)?,
        Some(other) => {
            return Err(format!(
                "query.aggregations: expected an array of {{func, field?}}, found {other}"
            ))
        }
    };
    let rows_query = Value::Map(
        entries
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), Some("groupBy" | "aggregations")))
            .cloned()
            .collect(),
    );
    Ok(Split {
        group: Some(GroupSpec {
            group_by,
            aggregations,
        }),
        rows_query,
    })
}

fn parse_aggregations(items: &[Value]) -> Result<Vec<Aggregation>, String> {
    if items.len() > MAX_AGGREGATIONS {
        return Err(format!(
            "query.aggregations: {} entries; at most {MAX_AGGREGATIONS} are accepted",
            items.len()
        ));
    }
    let mut out: Vec<Aggregation> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("query.aggregations[{i}]");
        let Value::Map(m) = item else {
            return Err(format!("{at}: expected {{func, field?}}, found {item}"));
        };
        let mut func = None;
        let mut field = None;
        for (k, v) in m {
            match k.as_str() {
                Some("func") => func = Some(v),
                Some("field") => field = Some(v),
                _ => {
                    return Err(format!(
                        "{at}: unknown member {k}; expected func and optionally field"
                    ))
                }
            }
        }
        let func = match func.map(Value::as_str) {
            Some(Some(name)) => Func::parse(name, &at)?,
            Some(None) => {
                return Err(format!(
                    "{at}.func: expected a function name string, found {}",
                    func.unwrap_or(&Value::Nil)
                ))
            }
            None => return Err(format!("{at}: missing func")),
        };
        let field = match field {
            None | Some(Value::Nil) => None,
            Some(v) => match v.as_str() {
                Some(f) if !f.is_empty() => Some(f.to_string()),
                _ => {
                    return Err(format!(
                        "{at}.field: expected a non-empty field name string, found {v}"
                    ))
                }
            },
        };
        let Some(field) = field else {
            if func == Func::Count {
                continue; // the `__count` column every group row has
            }
            return Err(format!("{at}: `{}` needs a field", func.name()));
        };
        let column = format!("__{}_{}", func.name(), field);
        if out.iter().any(|a| a.column == column) {
            continue; // asked twice: one column
        }
        out.push(Aggregation {
            func,
            field: Some(field),
            column,
        });
    }
    Ok(out)
}
