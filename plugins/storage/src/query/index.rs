//! Per-map fan-out pruning: which subscriptions can a change affect?
//!
//! A change of `key` from `old` to `new` can affect a subscription only if
//!
//! 1. `key` is in its matching set ([`Members`]: the record may leave, move,
//!    or change its projected value — this is what catches a change that
//!    touches only fields the query does not reference, the legacy [quirk]
//!    that sent no UPDATE), or
//! 2. its filter turns from false to true. Then some leaf of the filter
//!    changed its truth value, so [`ReverseIndex`] finds it:
//!    - an `eq` / `in` leaf on a top-level field under positive polarity can
//!      only turn true when the field takes the leaf's value: the *equality*
//!      index, looked up with `new[field]` for each changed field;
//!    - likewise a `gt gte lt lte between` leaf can only turn true when the
//!      field's value falls in its span: the *range* index, an interval
//!      stabbing structure over sort encodings (range leaves on one field
//!      under the same `and` are intersected first);
//!    - any other leaf is an *interest* on its top-level field, looked up for
//!      each changed field (a shallow diff of `old` and `new`);
//!    - a record creation diffs against the empty record; filters that hold
//!      on the empty record (`isNull`, `neq`, `not`, match-all) are in the
//!      *on-create* list;
//!    - a subscription resuming after a cursor also has an interest in its
//!      sort fields (a row may move from before the cursor to after it).
//!
//! When either value is not a map (a scalar or array record), every
//! subscription of the map is a candidate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rmpv::Value;

use super::predicate::IndexTerms;
use super::sort::encode_one;
use super::value::{map_get, IndexKey};
use super::RegistryId;

/// What one subscription registered in the index, kept to remove it again.
#[derive(Debug, Default, Clone)]
pub(crate) struct Registration {
    pub equality: Vec<(String, IndexKey)>,
    pub ranges: Vec<(String, Vec<u8>, Vec<u8>)>,
    pub interest: Vec<String>,
    pub on_create: bool,
}

impl Registration {
    /// Deduplicated registration from a filter's terms plus extra interests.
    pub(crate) fn new(terms: IndexTerms, extra_interest: Vec<String>, on_create: bool) -> Self {
        let mut seen = HashSet::new();
        let mut equality = terms.equality;
        equality.retain(|e| seen.insert(e.clone()));
        let mut interest = terms.interest;
        interest.extend(extra_interest);
        interest.sort();
        interest.dedup();
        let mut ranges = terms.ranges;
        ranges.sort();
        ranges.dedup();
        Self {
            equality,
            ranges,
            interest,
            on_create,
        }
    }
}

/// The filter index of one map.
#[derive(Debug, Default)]
pub(crate) struct ReverseIndex {
    equality: HashMap<String, HashMap<IndexKey, Vec<RegistryId>>>,
    ranges: HashMap<String, RangeIndex>,
    interest: HashMap<String, Vec<RegistryId>>,
    on_create: Vec<RegistryId>,
}

impl ReverseIndex {
    pub(crate) fn add(&mut self, id: RegistryId, reg: &Registration) {
        for (f, k) in &reg.equality {
            push_unique(
                self.equality
                    .entry(f.clone())
                    .or_default()
                    .entry(k.clone())
                    .or_default(),
                id,
            );
        }
        for (f, lo, hi) in &reg.ranges {
            self.ranges
                .entry(f.clone())
                .or_default()
                .insert(lo.clone(), hi.clone(), id);
        }
        for f in &reg.interest {
            push_unique(self.interest.entry(f.clone()).or_default(), id);
        }
        if reg.on_create {
            push_unique(&mut self.on_create, id);
        }
    }

    pub(crate) fn remove(&mut self, id: RegistryId, reg: &Registration) {
        for (f, k) in &reg.equality {
            if let Some(by_value) = self.equality.get_mut(f) {
                if let Some(ids) = by_value.get_mut(k) {
                    ids.retain(|s| *s != id);
                    if ids.is_empty() {
                        by_value.remove(k);
                    }
                }
                if by_value.is_empty() {
                    self.equality.remove(f);
                }
            }
        }
        for (f, _, _) in &reg.ranges {
            if let Some(r) = self.ranges.get_mut(f) {
                r.remove(id);
                if r.is_empty() {
                    self.ranges.remove(f);
                }
            }
        }
        for f in &reg.interest {
            if let Some(ids) = self.interest.get_mut(f) {
                ids.retain(|s| *s != id);
                if ids.is_empty() {
                    self.interest.remove(f);
                }
            }
        }
        self.on_create.retain(|s| *s != id);
    }

    /// Appends the subscriptions whose filter may turn true when a record
    /// goes from `old` (`None`: absent) to `new` (a map). Returns `false`
    /// when the values are not both maps (or absent), meaning: every
    /// subscription is a candidate.
    pub(crate) fn candidates(
        &self,
        old: Option<&Value>,
        new: &Value,
        out: &mut Vec<RegistryId>,
    ) -> bool {
        let Value::Map(new_entries) = new else {
            return false;
        };
        match old {
            None => {
                out.extend_from_slice(&self.on_create);
                for (k, v) in new_entries {
                    if let Some(f) = k.as_str() {
                        self.field_changed(f, Some(v), out);
                    }
                }
            }
            Some(Value::Map(old_entries)) => {
                for (k, v) in new_entries {
                    if let Some(f) = k.as_str() {
                        if map_get(old_entries, f) != Some(v) {
                            self.field_changed(f, Some(v), out);
                        }
                    }
                }
                for (k, _) in old_entries {
                    if let Some(f) = k.as_str() {
                        if map_get(new_entries, f).is_none() {
                            self.field_changed(f, None, out);
                        }
                    }
                }
            }
            Some(_) => return false,
        }
        true
    }

    fn field_changed(&self, field: &str, new: Option<&Value>, out: &mut Vec<RegistryId>) {
        if let Some(ids) = self.interest.get(field) {
            out.extend_from_slice(ids);
        }
        let Some(v) = new else { return };
        if let Some(by_value) = self.equality.get(field) {
            if let Some(ids) = IndexKey::of(v).and_then(|k| by_value.get(&k)) {
                out.extend_from_slice(ids);
            }
        }
        if let Some(r) = self.ranges.get(field) {
            r.stab(&encode_one(v), out);
        }
    }
}

/// Half-open spans `[lo, hi)` of encoded values, each owned by a
/// subscription, answering "which spans contain x" in O((k + 1) log n).
///
/// Spans are kept sorted by `lo` with a segment tree of the largest `hi`
/// over them; a stab visits only subtrees whose largest `hi` exceeds `x`
/// among spans with `lo <= x`. Rebuilt on insert and remove (subscription
/// changes are rare next to record changes).
#[derive(Debug, Default)]
pub(crate) struct RangeIndex {
    spans: Vec<(Vec<u8>, Vec<u8>, RegistryId)>,
    /// Index into `spans` of the largest `hi` per tree node (root at 1).
    max_hi: Vec<usize>,
}

impl RangeIndex {
    pub(crate) fn insert(&mut self, lo: Vec<u8>, hi: Vec<u8>, id: RegistryId) {
        if lo < hi {
            self.spans.push((lo, hi, id));
            self.rebuild();
        }
    }

    pub(crate) fn remove(&mut self, id: RegistryId) {
        self.spans.retain(|s| s.2 != id);
        self.rebuild();
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn rebuild(&mut self) {
        self.spans.sort_unstable();
        self.max_hi = vec![0; 4 * self.spans.len().max(1)];
        if !self.spans.is_empty() {
            self.build(1, 0, self.spans.len());
        }
    }

    fn build(&mut self, node: usize, l: usize, r: usize) -> usize {
        let best = if r - l == 1 {
            l
        } else {
            let mid = (l + r) / 2;
            let a = self.build(2 * node, l, mid);
            let b = self.build(2 * node + 1, mid, r);
            if self.spans[a].1 >= self.spans[b].1 {
                a
            } else {
                b
            }
        };
        self.max_hi[node] = best;
        best
    }

    pub(crate) fn stab(&self, x: &[u8], out: &mut Vec<RegistryId>) {
        let p = self.spans.partition_point(|s| s.0.as_slice() <= x);
        if p > 0 {
            self.visit(1, 0, self.spans.len(), p, x, out);
        }
    }

    fn visit(
        &self,
        node: usize,
        l: usize,
        r: usize,
        p: usize,
        x: &[u8],
        out: &mut Vec<RegistryId>,
    ) {
        if l >= p || self.spans[self.max_hi[node]].1.as_slice() <= x {
            return;
        }
        if r - l == 1 {
            out.push(self.spans[l].2);
            return;
        }
        let mid = (l + r) / 2;
        self.visit(2 * node, l, mid, p, x, out);
        self.visit(2 * node + 1, mid, r, p, x, out);
    }
}

fn push_unique(ids: &mut Vec<RegistryId>, id: RegistryId) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// One key in some subscription's matching set: who holds it, and the value
/// they were last told about (shared by all of them).
#[derive(Debug)]
pub(crate) struct Member {
    pub subs: Vec<RegistryId>,
    pub value: Arc<Value>,
}

/// key → [`Member`], for every key in any subscription's matching set.
pub(crate) type Members = HashMap<Arc<str>, Member>;
