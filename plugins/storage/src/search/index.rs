//! [`FullTextIndex`]: the BM25 index of one map over its configured fields.
//!
//! It keeps one combined index (all configured fields as one text) and, when
//! more than one field is configured, one index per field for boosted
//! searches. With a single field the per-field index would equal the combined
//! one, so it is not kept and a boost just scales the combined score.
//!
//! For every document it caches the term lists it last indexed (in the
//! layout `[field 0 | field 1 | … | combined]`, each sorted by term id), so
//! an update removes exactly the old postings and a removal needs no value.
//!
//! **Write cost.** `upsert` reuses scratch buffers it owns: tokenizing,
//! counting and diffing allocate nothing in the steady state; the new term
//! lists are swapped into the document's cache and the old ones kept as the
//! next scratch. What still allocates: the stemmer's output for words it
//! changes, a first-seen term or key, and postings of a term the document did
//! not hold before.

use std::sync::Arc;

use foldhash::HashMap;
use hangar_core::RawValue;
use rmpv::Value;
use rustc_hash::FxHashMap;

use super::config::{FtsConfigError, FullTextIndexConfig};
use super::inverted::{tf_in, Change, DocId, InvertedIndex, TermTf};
use super::query::{SearchError, SearchMatch, SearchOptions, SearchResults};
use super::terms::{TermDict, TermId};
use super::tokenizer::Tokenizer;

/// A configured field: its full name and, for dotted names, the path.
#[derive(Debug)]
struct FieldPath {
    name: String,
    segments: Vec<String>,
}

impl FieldPath {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            segments: name.split('.').map(str::to_owned).collect(),
        }
    }

    /// The string at this field of `value`: a top-level key equal to the full
    /// name wins; otherwise a dotted name walks nested maps.
    fn get<'v>(&self, value: &'v Value) -> Option<&'v str> {
        if let Some(v) = map_get(value, &self.name) {
            return v.as_str();
        }
        if self.segments.len() < 2 {
            return None;
        }
        let mut cur = value;
        for seg in &self.segments {
            cur = map_get(cur, seg)?;
        }
        cur.as_str()
    }
}

fn map_get<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

#[derive(Debug, Default)]
struct DocSlot {
    /// `None` while the slot is free.
    key: Option<Arc<str>>,
    /// Term lists, see the module docs for the layout.
    terms: Vec<TermTf>,
    /// End offset of each list in `terms`.
    ends: Vec<u32>,
}

/// List `k` of a `(terms, ends)` layout; empty when there are no lists.
fn list<'a>(terms: &'a [TermTf], ends: &[u32], k: usize) -> &'a [TermTf] {
    if ends.is_empty() {
        return &[];
    }
    let start = if k == 0 { 0 } else { ends[k - 1] as usize };
    &terms[start..ends[k] as usize]
}

#[derive(Debug, Default)]
struct Scratch {
    text: String,
    ids: Vec<TermId>,
    merged: Vec<TermTf>,
    terms: Vec<TermTf>,
    ends: Vec<u32>,
}

/// Size figures of a [`FullTextIndex`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexStats {
    /// Indexed documents.
    pub documents: usize,
    /// Distinct terms.
    pub terms: usize,
    /// Mean number of terms per document over all fields (0 when empty).
    pub avg_doc_len: f64,
}

/// The full-text index of one map.
///
/// Contract:
/// - after `upsert(k, v)`, searches see `k` with exactly the terms of `v`'s
///   configured string fields, and no term of an earlier version of `k`;
/// - after `remove(k)` (or `upsert(k, Nil)`, a tombstone), `k` is in no result;
/// - a document without any term is not indexed and does not count in the
///   BM25 statistics;
/// - the scores depend only on the set of current documents, not on the
///   order of the updates that produced it (bit-for-bit);
/// - results are deterministic: score descending, then key ascending.
#[derive(Debug)]
pub struct FullTextIndex {
    config: FullTextIndexConfig,
    tokenizer: Tokenizer,
    fields: Vec<FieldPath>,
    dict: TermDict,
    combined: InvertedIndex,
    /// One per field when more than one field is configured; else empty.
    per_field: Vec<InvertedIndex>,
    keys: HashMap<Arc<str>, DocId>,
    docs: Vec<DocSlot>,
    free: Vec<DocId>,
    scratch: Scratch,
}

impl FullTextIndex {
    /// An empty index for `config`.
    ///
    /// # Errors
    /// [`FtsConfigError`] when the config does not pass
    /// [`FullTextIndexConfig::validate`].
    pub fn new(config: FullTextIndexConfig) -> Result<Self, FtsConfigError> {
        config.validate()?;
        let fields: Vec<FieldPath> = config.fields.iter().map(|f| FieldPath::new(f)).collect();
        let per_field = if fields.len() > 1 {
            fields.iter().map(|_| InvertedIndex::default()).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            tokenizer: Tokenizer::new(&config.tokenizer),
            config,
            fields,
            dict: TermDict::default(),
            combined: InvertedIndex::default(),
            per_field,
            keys: HashMap::default(),
            docs: Vec::new(),
            free: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    /// The configuration this index was built with.
    #[must_use]
    pub fn config(&self) -> &FullTextIndexConfig {
        &self.config
    }

    /// The tokenizer documents and queries go through.
    #[must_use]
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Number of indexed documents (those with at least one term).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no document is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when `key` is indexed.
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// Size figures, for metrics.
    #[must_use]
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            documents: self.keys.len(),
            terms: self.dict.len(),
            avg_doc_len: self.combined.avgdl(),
        }
    }

    /// Indexes the current value of `key`, replacing any earlier version.
    ///
    /// `Nil` is a tombstone and removes the document (the legacy server left
    /// it in the index). A value that is not a map, or whose configured fields
    /// hold no string with a term, also leaves the document unindexed.
    pub fn upsert(&mut self, key: &str, value: &Value) {
        if value.is_nil() {
            self.remove(key);
            return;
        }
        self.tokenize_into_scratch(value);
        let combined_empty = self.scratch.terms.is_empty();
        match (self.keys.get(key).copied(), combined_empty) {
            (None, true) => {}
            (Some(id), true) => self.remove_id(id),
            (existing, false) => {
                let id = existing.unwrap_or_else(|| self.alloc(key));
                self.apply_scratch(id);
            }
        }
    }

    /// Indexes a value still in msgpack form (as stored).
    ///
    /// # Errors
    /// The decode error when the bytes are not one msgpack value; the old
    /// version of `key` is removed all the same, so that text no longer in
    /// the map cannot be found.
    pub fn upsert_raw(&mut self, key: &str, value: &RawValue) -> Result<(), rmpv::decode::Error> {
        match value.decode() {
            Ok(v) => {
                self.upsert(key, &v);
                Ok(())
            }
            Err(e) => {
                self.remove(key);
                Err(e)
            }
        }
    }

    /// Removes `key`; returns whether it was indexed.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.keys.get(key).copied() {
            Some(id) => {
                self.remove_id(id);
                true
            }
            None => false,
        }
    }

    /// Drops every document, keeping the configuration.
    pub fn clear(&mut self) {
        let config = self.config.clone();
        *self = Self::new(config).expect("config was validated when the index was built");
    }

    /// Searches the index.
    ///
    /// The query goes through the same tokenizer as documents; a query term
    /// given twice counts twice. Only documents that hold at least one query
    /// term can be hits. An empty query (or one of stopwords only) has no
    /// hits.
    ///
    /// # Errors
    /// [`SearchError`] when `boost` names a field that is not indexed or has
    /// a negative or non-finite weight, or `min_score` is NaN.
    pub fn search(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<SearchResults, SearchError> {
        let weights = self.weights(options)?;
        let min_score = min_score(options)?;
        let (terms, distinct) = self.query_terms(query);
        if terms.is_empty() {
            return Ok(SearchResults::default());
        }
        let params = self.config.bm25;
        let mut acc = FxHashMap::default();
        match weights {
            None => self.combined.accumulate(params, &terms, 1.0, &mut acc),
            Some(w) if self.per_field.is_empty() => {
                self.combined.accumulate(params, &terms, w[0], &mut acc);
            }
            Some(w) => {
                for (ix, &wf) in self.per_field.iter().zip(&w) {
                    ix.accumulate(params, &terms, wf, &mut acc);
                }
            }
        }
        let mut hits: Vec<(DocId, f64)> = acc
            .into_iter()
            .filter(|&(_, s)| s > 0.0 && s >= min_score)
            .collect();
        let total_count = hits.len();
        let order = |a: &(DocId, f64), b: &(DocId, f64)| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.key_of(a.0).cmp(self.key_of(b.0)))
        };
        match options.limit {
            Some(limit) if limit > 0 && limit < hits.len() => {
                hits.select_nth_unstable_by(limit - 1, order);
                hits.truncate(limit);
            }
            _ => {}
        }
        hits.sort_unstable_by(order);
        let hits = hits
            .into_iter()
            .map(|(id, score)| self.hit(id, score, &distinct))
            .collect();
        Ok(SearchResults { hits, total_count })
    }

    /// Scores one document against `query` as [`FullTextIndex::search`]
    /// would (the same float), for deciding whether a changed record enters
    /// or leaves a live search. `limit` is ignored.
    ///
    /// Returns `None` when `key` is not indexed, holds no query term, or
    /// scores below `min_score`.
    ///
    /// # Errors
    /// As [`FullTextIndex::search`].
    pub fn score_document(
        &self,
        key: &str,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Option<SearchMatch>, SearchError> {
        let weights = self.weights(options)?;
        let min_score = min_score(options)?;
        let Some(&id) = self.keys.get(key) else {
            return Ok(None);
        };
        let (terms, distinct) = self.query_terms(query);
        let params = self.config.bm25;
        let slot = &self.docs[id as usize];
        let combined_k = self.per_field.len();
        let combined_list = list(&slot.terms, &slot.ends, combined_k);
        let mut acc = None;
        match weights {
            None => self
                .combined
                .accumulate_doc(params, &terms, 1.0, id, combined_list, &mut acc),
            Some(w) if self.per_field.is_empty() => {
                self.combined
                    .accumulate_doc(params, &terms, w[0], id, combined_list, &mut acc);
            }
            Some(w) => {
                for (k, (ix, &wf)) in self.per_field.iter().zip(&w).enumerate() {
                    let field_list = list(&slot.terms, &slot.ends, k);
                    ix.accumulate_doc(params, &terms, wf, id, field_list, &mut acc);
                }
            }
        }
        Ok(acc
            .filter(|&s| s > 0.0 && s >= min_score)
            .map(|s| self.hit(id, s, &distinct)))
    }

    fn hit(&self, id: DocId, score: f64, distinct: &[TermId]) -> SearchMatch {
        let slot = &self.docs[id as usize];
        let combined = list(&slot.terms, &slot.ends, self.per_field.len());
        SearchMatch {
            key: self.key_of(id).to_owned(),
            score,
            matched_terms: distinct
                .iter()
                .filter(|&&t| tf_in(combined, t).is_some())
                .map(|&t| self.dict.text(t).to_owned())
                .collect(),
        }
    }

    fn key_of(&self, id: DocId) -> &str {
        self.docs[id as usize]
            .key
            .as_deref()
            .expect("hit on a live document")
    }

    /// The query's known terms in order (with repeats), and the distinct ones.
    fn query_terms(&self, query: &str) -> (Vec<TermId>, Vec<TermId>) {
        let mut terms = Vec::new();
        let mut buf = String::new();
        self.tokenizer.for_each_term(query, &mut buf, |t| {
            if let Some(id) = self.dict.get(t) {
                terms.push(id);
            }
        });
        let mut distinct = Vec::with_capacity(terms.len());
        for &t in &terms {
            if !distinct.contains(&t) {
                distinct.push(t);
            }
        }
        (terms, distinct)
    }

    /// Per-field weights when `boost` is given, in config order.
    fn weights(&self, options: &SearchOptions) -> Result<Option<Vec<f64>>, SearchError> {
        let Some(boost) = &options.boost else {
            return Ok(None);
        };
        let mut w = vec![1.0; self.fields.len()];
        for (field, &weight) in boost {
            let Some(pos) = self.config.fields.iter().position(|f| f == field) else {
                return Err(SearchError::UnknownBoostField {
                    field: field.clone(),
                    known: self.config.fields.clone(),
                });
            };
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(SearchError::InvalidBoost {
                    field: field.clone(),
                    weight,
                });
            }
            w[pos] = weight;
        }
        Ok(Some(w))
    }

    /// Tokenizes the configured fields of `value` into `scratch.terms` /
    /// `scratch.ends` in the slot layout.
    fn tokenize_into_scratch(&mut self, value: &Value) {
        let Self {
            tokenizer,
            fields,
            dict,
            per_field,
            scratch,
            ..
        } = self;
        let Scratch {
            text,
            ids,
            merged,
            terms,
            ends,
        } = scratch;
        terms.clear();
        ends.clear();
        if per_field.is_empty() {
            ids.clear();
            if let Some(s) = fields[0].get(value) {
                tokenizer.for_each_word(s, text, |w| {
                    if let Some(id) = dict.intern_word(w, |w| tokenizer.stem(w)) {
                        ids.push(id);
                    }
                });
            }
            push_counted(ids, terms);
            ends.push(len_u32(terms));
            return;
        }
        for field in fields.iter() {
            ids.clear();
            if let Some(s) = field.get(value) {
                tokenizer.for_each_word(s, text, |w| {
                    if let Some(id) = dict.intern_word(w, |w| tokenizer.stem(w)) {
                        ids.push(id);
                    }
                });
            }
            push_counted(ids, terms);
            ends.push(len_u32(terms));
        }
        // Combined list: the per-field lists merged, counts summed.
        merged.clear();
        merged.extend_from_slice(terms);
        merged.sort_unstable_by_key(|&(t, _)| t);
        let start = terms.len();
        for &(t, tf) in merged.iter() {
            let n = terms.len();
            if n > start && terms[n - 1].0 == t {
                terms[n - 1].1 += tf;
            } else {
                terms.push((t, tf));
            }
        }
        ends.push(len_u32(terms));
    }

    /// Replaces document `id`'s postings by the lists in scratch.
    fn apply_scratch(&mut self, id: DocId) {
        let Self {
            dict,
            combined,
            per_field,
            docs,
            scratch,
            ..
        } = self;
        let slot = &mut docs[id as usize];
        let combined_k = per_field.len(); // last list in both layouts
        for (k, ix) in per_field.iter_mut().enumerate() {
            ix.replace(
                id,
                list(&slot.terms, &slot.ends, k),
                list(&scratch.terms, &scratch.ends, k),
                |_, _| {},
            );
        }
        combined.replace(
            id,
            list(&slot.terms, &slot.ends, combined_k),
            list(&scratch.terms, &scratch.ends, combined_k),
            |t, change| match change {
                Change::Added => dict.retain(t),
                Change::Removed => dict.release(t),
            },
        );
        std::mem::swap(&mut slot.terms, &mut scratch.terms);
        std::mem::swap(&mut slot.ends, &mut scratch.ends);
    }

    fn remove_id(&mut self, id: DocId) {
        let Self {
            dict,
            combined,
            per_field,
            docs,
            keys,
            free,
            ..
        } = self;
        let slot = &mut docs[id as usize];
        let combined_k = per_field.len();
        for (k, ix) in per_field.iter_mut().enumerate() {
            ix.replace(id, list(&slot.terms, &slot.ends, k), &[], |_, _| {});
        }
        combined.replace(
            id,
            list(&slot.terms, &slot.ends, combined_k),
            &[],
            |t, _| dict.release(t),
        );
        slot.terms.clear();
        slot.ends.clear();
        if let Some(key) = slot.key.take() {
            keys.remove(&key);
        }
        free.push(id);
    }

    fn alloc(&mut self, key: &str) -> DocId {
        let key: Arc<str> = Arc::from(key);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.docs.push(DocSlot::default());
                DocId::try_from(self.docs.len() - 1).expect("fewer than 2^32 documents")
            }
        };
        self.docs[id as usize].key = Some(Arc::clone(&key));
        self.keys.insert(key, id);
        id
    }
}

fn min_score(options: &SearchOptions) -> Result<f64, SearchError> {
    match options.min_score {
        Some(m) if m.is_nan() => Err(SearchError::InvalidMinScore),
        Some(m) => Ok(m),
        None => Ok(f64::NEG_INFINITY),
    }
}

/// Sorts `ids` and appends them to `out` as `(term, count)` runs.
fn push_counted(ids: &mut [TermId], out: &mut Vec<TermTf>) {
    ids.sort_unstable();
    let mut i = 0;
    while i < ids.len() {
        let t = ids[i];
        let mut j = i + 1;
        while j < ids.len() && ids[j] == t {
            j += 1;
        }
        out.push((t, len_u32_n(j - i)));
        i = j;
    }
}

fn len_u32(v: &[TermTf]) -> u32 {
    len_u32_n(v.len())
}

fn len_u32_n(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 terms in one document")
}
