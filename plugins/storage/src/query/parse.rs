//! Parsing TopGun `predicate` nodes and legacy `where` objects into the
//! compiled [`Predicate`] tree, within the bounds of [`QueryLimits`].
//!
//! # Wire shapes accepted
//!
//! `predicate`: `{op, attribute?, value?, children?}` with ops
//! `eq neq gt gte lt lte like regex in between isNull isNotNull startsWith
//! endsWith contains containsAll containsAny and or not`.
//! `between` takes `value: [lo, hi]` (the TopGun v2 shape) or
//! `value: {from, to}` (the TS client builder's argument names); both ends
//! inclusive. The search ops `match matchPhrase matchPrefix` are refused with a
//! pointer to the search subsystem.
//!
//! `where`: `{field: scalar}` for equality, or `{field: {$eq|$ne|$neq|$gt|$gte|
//! $lt|$lte|$in: v, ...}}`; all conditions must hold. A map value with no `$`
//! key is a deep-equality test against that map.
//!
//! Every refusal names its place in the query (`query.predicate.children[1].op`).

use std::collections::HashSet;

use regex::{Regex, RegexBuilder};
use rmpv::Value;

use super::error::{describe, truncate, QueryError};
use super::predicate::{CmpOp, InSet, Leaf, Needle, Predicate, Test};
use super::spec::QueryLimits;
use super::value::{map_get, FieldPath, IndexKey};

const KNOWN_OPS: &str = "eq, neq, gt, gte, lt, lte, like, regex, in, between, isNull, isNotNull, \
                         startsWith, endsWith, contains, containsAll, containsAny, and, or, not";
const WHERE_OPS: &str = "$eq, $ne, $neq, $gt, $gte, $lt, $lte, $in";

/// Parsing state: the bounds and how much of them is used.
pub(crate) struct Budget<'a> {
    pub limits: &'a QueryLimits,
    pub nodes: usize,
}

impl Budget<'_> {
    fn node(&mut self, depth: usize) -> Result<(), QueryError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(QueryError::TooLarge {
                what: "the number of predicate nodes",
                limit: self.limits.max_nodes,
            });
        }
        if depth > self.limits.max_depth {
            return Err(QueryError::TooLarge {
                what: "the predicate nesting depth",
                limit: self.limits.max_depth,
            });
        }
        Ok(())
    }

    fn list(&self, len: usize) -> Result<(), QueryError> {
        if len > self.limits.max_list_len {
            return Err(QueryError::TooLarge {
                what: "a value list",
                limit: self.limits.max_list_len,
            });
        }
        Ok(())
    }
}

/// Parses a TopGun predicate node.
pub(crate) fn parse_predicate(
    v: &Value,
    at: &str,
    depth: usize,
    budget: &mut Budget<'_>,
) -> Result<Predicate, QueryError> {
    budget.node(depth)?;
    let Value::Map(node) = v else {
        return Err(wrong(
            at,
            "a predicate node map {op, attribute, value, children}",
            v,
        ));
    };
    let op_v = map_get(node, "op").ok_or_else(|| missing(at, "op"))?;
    let op = op_v
        .as_str()
        .ok_or_else(|| wrong(&format!("{at}.op"), "an operator name string", op_v))?;

    match op {
        "and" | "or" | "not" => {
            let children = match map_get(node, "children") {
                None | Some(Value::Nil) => &[][..],
                Some(Value::Array(items)) => items.as_slice(),
                Some(other) => {
                    return Err(wrong(
                        &format!("{at}.children"),
                        "an array of predicate nodes",
                        other,
                    ))
                }
            };
            let mut parsed = Vec::with_capacity(children.len());
            for (i, c) in children.iter().enumerate() {
                parsed.push(parse_predicate(
                    c,
                    &format!("{at}.children[{i}]"),
                    depth + 1,
                    budget,
                )?);
            }
            Ok(match op {
                "and" => Predicate::And(parsed),
                "or" => Predicate::Or(parsed),
                _ => {
                    if parsed.len() != 1 {
                        return Err(QueryError::Invalid {
                            at: format!("{at}.children"),
                            problem: format!(
                                "`not` takes exactly one child, found {}",
                                parsed.len()
                            ),
                        });
                    }
                    Predicate::Not(Box::new(parsed.remove(0)))
                }
            })
        }
        "match" | "matchPhrase" | "matchPrefix" => Err(QueryError::Unsupported {
            at: format!("{at}.op"),
            feature: format!("full-text op `{op}`"),
            hint: "use SEARCH / SEARCH_SUB for full-text queries",
        }),
        _ => {
            let attr_at = format!("{at}.attribute");
            let attr_v = map_get(node, "attribute").ok_or_else(|| missing(at, "attribute"))?;
            let attr = attr_v
                .as_str()
                .ok_or_else(|| wrong(&attr_at, "a field name string", attr_v))?;
            let path = FieldPath::parse(attr, &attr_at)?;
            let value_at = format!("{at}.value");
            let value = map_get(node, "value");
            let test = parse_test(op, value, at, &value_at, budget)?;
            Ok(Predicate::Leaf(Leaf { path, test }))
        }
    }
}

fn parse_test(
    op: &str,
    value: Option<&Value>,
    at: &str,
    value_at: &str,
    budget: &Budget<'_>,
) -> Result<Test, QueryError> {
    let need = || value.ok_or_else(|| missing(at, "value"));
    Ok(match op {
        "eq" => Test::Eq(need()?.clone()),
        "neq" => Test::Neq(need()?.clone()),
        "gt" => Test::Cmp(CmpOp::Gt, orderable(need()?, value_at)?),
        "gte" => Test::Cmp(CmpOp::Gte, orderable(need()?, value_at)?),
        "lt" => Test::Cmp(CmpOp::Lt, orderable(need()?, value_at)?),
        "lte" => Test::Cmp(CmpOp::Lte, orderable(need()?, value_at)?),
        "between" => parse_between(need()?, value_at)?,
        "like" => Test::Pattern(compile_like(text(need()?, value_at)?, value_at, budget)?),
        "regex" => Test::Pattern(compile_regex(text(need()?, value_at)?, value_at, budget)?),
        "in" => Test::In(parse_in(need()?, value_at, budget)?),
        "isNull" => Test::IsNull,
        "isNotNull" => Test::IsNotNull,
        "startsWith" => Test::StartsWith(text(need()?, value_at)?.to_string()),
        "endsWith" => Test::EndsWith(text(need()?, value_at)?.to_string()),
        "contains" => Test::Contains(Needle::new(need()?.clone())),
        "containsAll" => Test::ContainsAll(needles(need()?, value_at, budget)?),
        "containsAny" => Test::ContainsAny(needles(need()?, value_at, budget)?),
        other => {
            return Err(QueryError::UnknownOperator {
                at: format!("{at}.op"),
                op: other.to_string(),
                expected: KNOWN_OPS,
            })
        }
    })
}

/// Parses a legacy `where` object into an `and` of leaves.
pub(crate) fn parse_where(
    v: &Value,
    at: &str,
    budget: &mut Budget<'_>,
) -> Result<Predicate, QueryError> {
    let Value::Map(entries) = v else {
        return Err(wrong(at, "a map of field conditions", v));
    };
    let mut leaves = Vec::with_capacity(entries.len());
    for (k, cond) in entries {
        let field = k
            .as_str()
            .ok_or_else(|| wrong(at, "string field names", k))?;
        let field_at = format!("{at}.{field}");
        let path = FieldPath::parse(field, &field_at)?;
        let ops = match cond {
            Value::Map(m)
                if m.iter()
                    .any(|(k, _)| k.as_str().is_some_and(|s| s.starts_with('$'))) =>
            {
                m
            }
            _ => {
                budget.node(1)?;
                leaves.push(Predicate::Leaf(Leaf {
                    path,
                    test: Test::Eq(cond.clone()),
                }));
                continue;
            }
        };
        for (op_k, arg) in ops {
            budget.node(1)?;
            let op = op_k.as_str().unwrap_or("");
            let op_at = format!("{field_at}.{op}");
            let test = match op {
                "$eq" => Test::Eq(arg.clone()),
                "$ne" | "$neq" => Test::Neq(arg.clone()),
                "$gt" => Test::Cmp(CmpOp::Gt, orderable(arg, &op_at)?),
                "$gte" => Test::Cmp(CmpOp::Gte, orderable(arg, &op_at)?),
                "$lt" => Test::Cmp(CmpOp::Lt, orderable(arg, &op_at)?),
                "$lte" => Test::Cmp(CmpOp::Lte, orderable(arg, &op_at)?),
                "$in" => Test::In(parse_in(arg, &op_at, budget)?),
                _ => {
                    return Err(QueryError::UnknownOperator {
                        at: field_at,
                        op: op_k.as_str().map_or_else(|| describe(op_k), str::to_string),
                        expected: WHERE_OPS,
                    })
                }
            };
            leaves.push(Predicate::Leaf(Leaf {
                path: path.clone(),
                test,
            }));
        }
    }
    Ok(if leaves.len() == 1 {
        leaves.remove(0)
    } else {
        Predicate::And(leaves)
    })
}

fn orderable(v: &Value, at: &str) -> Result<Value, QueryError> {
    match v {
        Value::Integer(_) | Value::F32(_) | Value::F64(_) | Value::String(_) => Ok(v.clone()),
        _ => Err(wrong(at, "a number or a string", v)),
    }
}

fn parse_between(v: &Value, at: &str) -> Result<Test, QueryError> {
    let (lo, hi) = match v {
        Value::Array(items) if items.len() == 2 => (&items[0], &items[1]),
        Value::Map(m) => (
            map_get(m, "from").ok_or_else(|| missing(at, "from"))?,
            map_get(m, "to").ok_or_else(|| missing(at, "to"))?,
        ),
        _ => return Err(wrong(at, "[low, high] or {from, to}", v)),
    };
    let lo = orderable(lo, at)?;
    let hi = orderable(hi, at)?;
    if lo.is_str() != hi.is_str() {
        return Err(QueryError::Invalid {
            at: at.to_string(),
            problem: format!(
                "`between` bounds must both be numbers or both strings, found {} and {}",
                describe(&lo),
                describe(&hi)
            ),
        });
    }
    Ok(Test::Between(lo, hi))
}

fn text<'v>(v: &'v Value, at: &str) -> Result<&'v str, QueryError> {
    v.as_str().ok_or_else(|| wrong(at, "a string", v))
}

fn parse_in(v: &Value, at: &str, budget: &Budget<'_>) -> Result<InSet, QueryError> {
    let Value::Array(items) = v else {
        return Err(wrong(at, "an array of values", v));
    };
    budget.list(items.len())?;
    let mut scalars = HashSet::new();
    let mut composites = Vec::new();
    for i in items {
        match IndexKey::of(i) {
            Some(k) => {
                scalars.insert(k);
            }
            None => composites.push(i.clone()),
        }
    }
    Ok(InSet {
        scalars,
        composites,
    })
}

fn needles(v: &Value, at: &str, budget: &Budget<'_>) -> Result<Vec<Needle>, QueryError> {
    let Value::Array(items) = v else {
        return Err(wrong(at, "an array of values", v));
    };
    budget.list(items.len())?;
    Ok(items.iter().cloned().map(Needle::new).collect())
}

fn check_pattern_len(p: &str, at: &str, budget: &Budget<'_>) -> Result<(), QueryError> {
    if p.len() > budget.limits.max_pattern_len {
        return Err(QueryError::BadPattern {
            at: at.to_string(),
            pattern: truncate(p, 200),
            reason: format!("longer than {} bytes", budget.limits.max_pattern_len),
        });
    }
    Ok(())
}

fn build(source: &str, shown: &str, at: &str, budget: &Budget<'_>) -> Result<Regex, QueryError> {
    RegexBuilder::new(source)
        .size_limit(budget.limits.max_regex_size)
        .dfa_size_limit(budget.limits.max_regex_size)
        .build()
        .map_err(|e| QueryError::BadPattern {
            at: at.to_string(),
            pattern: truncate(shown, 200),
            reason: e.to_string(),
        })
}

/// `like` → an anchored, case-insensitive regex.
pub(crate) fn like_to_regex(pattern: &str) -> String {
    let mut re = String::with_capacity(pattern.len() * 2 + 8);
    re.push_str("(?is)^");
    let mut buf = [0u8; 4];
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    re.push('$');
    re
}

fn compile_like(p: &str, at: &str, budget: &Budget<'_>) -> Result<Regex, QueryError> {
    check_pattern_len(p, at, budget)?;
    build(&like_to_regex(p), p, at, budget)
}

fn compile_regex(p: &str, at: &str, budget: &Budget<'_>) -> Result<Regex, QueryError> {
    check_pattern_len(p, at, budget)?;
    build(p, p, at, budget)
}

fn wrong(at: &str, expected: &'static str, found: &Value) -> QueryError {
    QueryError::WrongType {
        at: at.to_string(),
        expected,
        found: describe(found),
    }
}

fn missing(at: &str, member: &'static str) -> QueryError {
    QueryError::Missing {
        at: at.to_string(),
        member,
    }
}
