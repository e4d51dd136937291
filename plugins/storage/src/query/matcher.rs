//! [`Matcher`]: does a record belong to a query's result set?
//!
//! A record matches when it is visible (not a tombstone, not TTL-expired),
//! its value is truthy (legacy rule, see `value`), and the filter holds.
//! `predicate` overrides `where`; with neither, every visible record matches.

use rmpv::Value;

use super::predicate::{IndexTerms, Predicate};
use super::value::is_truthy;

/// One record as the query engine reads it.
///
/// `value == None` is a tombstone. `expires_at_ms` is `millis + ttl` for a
/// record with a TTL: the record is expired once `expires_at_ms < now`
/// (as the TopGun client computes it). Tombstones and expired records
/// never match.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The record key.
    pub key: &'a str,
    /// The decoded value, `None` for a tombstone.
    pub value: Option<&'a Value>,
    /// When the record expires, if it has a TTL.
    pub expires_at_ms: Option<u64>,
}

impl<'a> Row<'a> {
    /// A live record without TTL.
    #[must_use]
    pub fn live(key: &'a str, value: &'a Value) -> Self {
        Self {
            key,
            value: Some(value),
            expires_at_ms: None,
        }
    }

    /// The value when the record is neither a tombstone nor expired at `now_ms`.
    #[must_use]
    pub fn visible_value(&self, now_ms: u64) -> Option<&'a Value> {
        match self.expires_at_ms {
            Some(at) if at < now_ms => None,
            _ => self.value,
        }
    }
}

/// A compiled filter with the record-visibility rules.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    filter: Option<Predicate>,
}

impl Matcher {
    pub(crate) fn new(filter: Option<Predicate>) -> Self {
        Self { filter }
    }

    /// A matcher that accepts every visible, truthy record.
    #[must_use]
    pub fn match_all() -> Self {
        Self { filter: None }
    }

    /// True when a *visible* record value matches: truthy and passes the filter.
    #[must_use]
    pub fn matches(&self, value: &Value) -> bool {
        is_truthy(value) && self.filter.as_ref().is_none_or(|f| f.eval(value))
    }

    /// True when `row` is visible at `now_ms` and matches.
    #[must_use]
    pub fn matches_row(&self, row: &Row<'_>, now_ms: u64) -> bool {
        row.visible_value(now_ms).is_some_and(|v| self.matches(v))
    }

    /// True when the filter holds for a record that has none of the fields
    /// the filter reads (an empty map). Such a filter can start to hold for a
    /// new record without any indexed field taking a particular value, so the
    /// registry checks it on every record creation.
    pub(crate) fn matches_empty_record(&self) -> bool {
        self.matches(&Value::Map(Vec::new()))
    }

    pub(crate) fn index_terms(&self) -> IndexTerms {
        let mut terms = IndexTerms::default();
        if let Some(f) = &self.filter {
            f.collect_terms(true, &mut terms);
        }
        terms
    }
}
