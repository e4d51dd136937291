//! Filters: the compiled predicate tree, its evaluation, and the index terms
//! the live registry derives from it. Parsing lives in `parse`.
//!
//! # Semantics (see also `value` for equality and ordering)
//!
//! - `and` of nothing is true, `or` of nothing is false, `not` takes exactly one child.
//! - `neq` is `not eq`: true for a missing field.
//! - `gt gte lt lte between` compare number to number or string to string only;
//!   their argument must be a number or a string.
//! - `like`: anchored, case-insensitive (Unicode), `%` = any run of characters
//!   (newlines included), `_` = exactly one character; every other character is
//!   literal (no escape syntax). Strings only.
//! - `regex`: unanchored, case-sensitive unless the pattern says `(?i)`;
//!   strings only. Compiled once per query with a bounded compiled size.
//! - `startsWith` / `endsWith`: case-sensitive, strings only.
//! - `contains` / `containsAll` / `containsAny`: on a string field,
//!   case-insensitive substring tests of string arguments (non-string
//!   arguments never match); on an array field, membership by equality.
//!   `containsAll` of an empty list is true for any string or array field.
//! - `isNull`: the field is missing or nil; `isNotNull` is its negation.

use std::collections::HashSet;

use regex::Regex;
use rmpv::Value;

use super::sort::{encode_one, type_span};
use super::value::{loose_eq, order_cmp, FieldPath, IndexKey};

/// A compiled filter.
#[derive(Debug, Clone)]
pub(crate) enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Leaf(Leaf),
}

#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(super) path: FieldPath,
    pub(super) test: Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub(super) struct Needle {
    value: Value,
    /// Lower-cased text for substring tests; `None` for non-string needles.
    lower: Option<String>,
}

impl Needle {
    pub(super) fn new(value: Value) -> Self {
        let lower = value.as_str().map(str::to_lowercase);
        Self { value, lower }
    }
}

#[derive(Debug, Clone)]
pub(super) struct InSet {
    pub(super) scalars: HashSet<IndexKey>,
    pub(super) composites: Vec<Value>,
}

#[derive(Debug, Clone)]
pub(super) enum Test {
    Eq(Value),
    Neq(Value),
    Cmp(CmpOp, Value),
    Between(Value, Value),
    Pattern(Regex),
    In(InSet),
    IsNull,
    IsNotNull,
    StartsWith(String),
    EndsWith(String),
    Contains(Needle),
    ContainsAll(Vec<Needle>),
    ContainsAny(Vec<Needle>),
}

/// Where each leaf of a filter lets the registry find it again.
#[derive(Debug, Default)]
pub(crate) struct IndexTerms {
    /// `(top-level field, value)`: the leaf can only turn true when the
    /// field takes this value.
    pub equality: Vec<(String, IndexKey)>,
    /// `(top-level field, [lo, hi))` over the sort encoding: the leaf can
    /// only turn true when the field's encoded value falls in the span.
    pub ranges: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Top-level fields whose change may flip some leaf.
    pub interest: Vec<String>,
}

impl Predicate {
    /// Evaluates the filter on a record value.
    pub(crate) fn eval(&self, rec: &Value) -> bool {
        match self {
            Self::And(ch) => ch.iter().all(|c| c.eval(rec)),
            Self::Or(ch) => ch.iter().any(|c| c.eval(rec)),
            Self::Not(c) => !c.eval(rec),
            Self::Leaf(l) => l.eval(rec),
        }
    }

    /// Collects index terms. A leaf goes to the equality or range index
    /// only when it reads a top-level field and sits under an even number of
    /// `not`s (positive polarity): then the filter can only turn from false
    /// to true through that leaf turning true, which needs the field to take
    /// the leaf's value (`eq`, `in`) or a value in its span (`gt` `gte` `lt`
    /// `lte` `between`). Everything else is an interest term on the leaf's
    /// top-level field.
    pub(crate) fn collect_terms(&self, positive: bool, out: &mut IndexTerms) {
        match self {
            // Under a positive `and`, every child holds on the new value, so
            // the range leaves on one field narrow to their intersection.
            Self::And(ch) if positive => {
                let mut spans: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
                for c in ch {
                    if let Some((f, lo, hi)) = c.as_leaf().and_then(Leaf::span) {
                        match spans.iter_mut().find(|s| s.0 == f) {
                            Some(s) => {
                                s.1 = s.1.clone().max(lo);
                                s.2 = s.2.clone().min(hi);
                            }
                            None => spans.push((f, lo, hi)),
                        }
                    } else {
                        c.collect_terms(true, out);
                    }
                }
                out.ranges.extend(spans);
            }
            Self::And(ch) | Self::Or(ch) => ch.iter().for_each(|c| c.collect_terms(positive, out)),
            Self::Not(c) => c.collect_terms(!positive, out),
            Self::Leaf(l) => {
                if positive {
                    if let Some(span) = l.span() {
                        out.ranges.push(span);
                        return;
                    }
                    if l.path.is_top_level() {
                        match &l.test {
                            Test::Eq(v) => {
                                if let Some(k) = IndexKey::of(v) {
                                    out.equality.push((l.path.top().to_string(), k));
                                    return;
                                }
                            }
                            Test::In(set) if set.composites.is_empty() => {
                                for k in &set.scalars {
                                    out.equality.push((l.path.top().to_string(), k.clone()));
                                }
                                return;
                            }
                            _ => {}
                        }
                    }
                }
                out.interest.push(l.path.top().to_string());
            }
        }
    }

    fn as_leaf(&self) -> Option<&Leaf> {
        match self {
            Self::Leaf(l) => Some(l),
            _ => None,
        }
    }
}

impl Leaf {
    /// For an ordering leaf on a top-level field: the field and the
    /// half-open span `[lo, hi)` of sort encodings of the values it accepts.
    fn span(&self) -> Option<(String, Vec<u8>, Vec<u8>)> {
        if !self.path.is_top_level() {
            return None;
        }
        let (lo, hi) = match &self.test {
            Test::Cmp(op, x) => {
                let (start, end) = type_span(x);
                let at = encode_one(x);
                match op {
                    CmpOp::Gt => (after(at), end),
                    CmpOp::Gte => (at, end),
                    CmpOp::Lt => (start, at),
                    CmpOp::Lte => (start, after(at)),
                }
            }
            Test::Between(lo, hi) => (encode_one(lo), after(encode_one(hi))),
            _ => return None,
        };
        Some((self.path.top().to_string(), lo, hi))
    }

    fn eval(&self, rec: &Value) -> bool {
        let v = self.path.lookup(rec);
        match &self.test {
            Test::Eq(x) => v.is_some_and(|v| loose_eq(v, x)),
            Test::Neq(x) => !v.is_some_and(|v| loose_eq(v, x)),
            Test::Cmp(op, x) => v.and_then(|v| order_cmp(v, x)).is_some_and(|o| match op {
                CmpOp::Gt => o.is_gt(),
                CmpOp::Gte => o.is_ge(),
                CmpOp::Lt => o.is_lt(),
                CmpOp::Lte => o.is_le(),
            }),
            Test::Between(lo, hi) => v.is_some_and(|v| {
                order_cmp(v, lo).is_some_and(std::cmp::Ordering::is_ge)
                    && order_cmp(v, hi).is_some_and(std::cmp::Ordering::is_le)
            }),
            Test::Pattern(re) => v.and_then(Value::as_str).is_some_and(|s| re.is_match(s)),
            Test::In(set) => v.is_some_and(|v| match IndexKey::of(v) {
                Some(k) => set.scalars.contains(&k),
                None => set.composites.iter().any(|c| loose_eq(v, c)),
            }),
            Test::IsNull => v.is_none_or(Value::is_nil),
            Test::IsNotNull => !v.is_none_or(Value::is_nil),
            Test::StartsWith(p) => v
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(p.as_str())),
            Test::EndsWith(p) => v
                .and_then(Value::as_str)
                .is_some_and(|s| s.ends_with(p.as_str())),
            Test::Contains(n) => contains(v, std::slice::from_ref(n), true),
            Test::ContainsAll(ns) => contains(v, ns, true),
            Test::ContainsAny(ns) => contains(v, ns, false),
        }
    }
}

/// The smallest encoding strictly greater than `enc` and every encoding of
/// a value equal to it: single-value encodings are prefix-free, so any
/// greater one differs from `enc` within `enc`'s length and exceeds
/// `enc ++ [0]`.
fn after(mut enc: Vec<u8>) -> Vec<u8> {
    enc.push(0);
    enc
}

/// `all` = every needle found, else any needle found.
fn contains(v: Option<&Value>, needles: &[Needle], all: bool) -> bool {
    match v {
        Some(Value::String(s)) => {
            let Some(s) = s.as_str() else { return false };
            let hay = s.to_lowercase();
            let found = |n: &Needle| n.lower.as_deref().is_some_and(|l| hay.contains(l));
            if all {
                needles.iter().all(found)
            } else {
                needles.iter().any(found)
            }
        }
        Some(Value::Array(items)) => {
            let found = |n: &Needle| items.iter().any(|i| loose_eq(i, &n.value));
            if all {
                needles.iter().all(found)
            } else {
                needles.iter().any(found)
            }
        }
        _ => false,
    }
}
