//! One inverted index with the statistics BM25 needs.
//!
//! It maps each term to its postings `{doc → tf}` and keeps every document's
//! length, the number of documents `N` and the sum of their lengths, all
//! maintained incrementally so `avgdl` is O(1). A document is in the index
//! exactly when it has at least one term here.
//!
//! **IDF cache.** Each term caches its IDF together with the `(N, df)` it was
//! computed from, and a lookup recomputes when the current `(N, df)` differ.
//! Since IDF is a function of `(N, df)` alone, a cached value is valid exactly
//! when its stamp matches, so no write ever has to clear the cache (the legacy
//! index cleared the whole cache on every add or remove). The cache lives in
//! two atomics so searches can fill it through `&self`: every reader of one
//! index state writes the same pair, and the stamp is published after the
//! value with release/acquire ordering.
//!
//! **Updates are diffs.** [`InvertedIndex::replace`] takes the document's old
//! and new term lists (sorted by term id) and touches only the postings that
//! change, so re-indexing a document whose text barely changed costs little.

use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use super::bm25;
use super::config::Bm25Config;
use super::terms::TermId;

/// Dense id of a document within one full-text index.
pub(crate) type DocId = u32;

/// A term and its count in one document.
pub(crate) type TermTf = (TermId, u32);

/// What [`InvertedIndex::replace`] did to a term's postings for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The document now holds the term and did not before.
    Added,
    /// The document held the term and no longer does.
    Removed,
}

#[derive(Debug)]
struct IdfCache {
    stamp: AtomicU64,
    bits: AtomicU64,
}

impl IdfCache {
    const EMPTY: u64 = u64::MAX;

    fn new() -> Self {
        Self {
            stamp: AtomicU64::new(Self::EMPTY),
            bits: AtomicU64::new(0),
        }
    }

    fn get(&self, n: u32, df: u32) -> f64 {
        let stamp = (u64::from(n) << 32) | u64::from(df);
        if self.stamp.load(Ordering::Acquire) == stamp {
            return f64::from_bits(self.bits.load(Ordering::Relaxed));
        }
        let value = bm25::idf(n, df);
        self.bits.store(value.to_bits(), Ordering::Relaxed);
        self.stamp.store(stamp, Ordering::Release);
        value
    }

    #[cfg(test)]
    fn is_fresh(&self, n: u32, df: u32) -> bool {
        self.stamp.load(Ordering::Acquire) == (u64::from(n) << 32) | u64::from(df)
    }
}

#[derive(Debug)]
struct Postings {
    docs: FxHashMap<DocId, u32>,
    idf: IdfCache,
}

/// Postings, document lengths and corpus statistics of one field (or of all
/// configured fields together).
#[derive(Debug, Default)]
pub(crate) struct InvertedIndex {
    terms: FxHashMap<TermId, Postings>,
    doc_len: Vec<u32>,
    n_docs: u32,
    total_len: u64,
}

impl InvertedIndex {
    /// Number of documents with at least one term here.
    #[cfg(test)]
    pub(crate) fn n_docs(&self) -> u32 {
        self.n_docs
    }

    /// Mean document length; 0 for an empty index.
    pub(crate) fn avgdl(&self) -> f64 {
        if self.n_docs == 0 {
            0.0
        } else {
            self.total_len as f64 / f64::from(self.n_docs)
        }
    }

    /// Number of documents holding `term`.
    #[cfg(test)]
    pub(crate) fn df(&self, term: TermId) -> u32 {
        self.terms.get(&term).map_or(0, |p| df_of(&p.docs))
    }

    /// IDF of `term`; 0 if no document holds it.
    #[cfg(test)]
    pub(crate) fn idf(&self, term: TermId) -> f64 {
        self.terms
            .get(&term)
            .map_or(0.0, |p| p.idf.get(self.n_docs, df_of(&p.docs)))
    }

    /// Count of `term` in `doc`, if `doc` holds it.
    pub(crate) fn tf(&self, term: TermId, doc: DocId) -> Option<u32> {
        self.terms.get(&term)?.docs.get(&doc).copied()
    }

    /// Length of `doc` here (0 when absent).
    #[cfg(test)]
    pub(crate) fn doc_len(&self, doc: DocId) -> u32 {
        self.doc_len.get(doc as usize).copied().unwrap_or(0)
    }

    /// Replaces what the index holds for `doc`.
    ///
    /// Contract: `old` MUST be exactly the list last given as `new` for this
    /// document (empty if none), and both lists MUST be sorted by term id
    /// without repeats and with every count `>= 1`. The document's length
    /// becomes the sum of the counts in `new`; an empty `new` removes the
    /// document. `changed` hears about every term the document gains or
    /// loses, in term-id order.
    pub(crate) fn replace(
        &mut self,
        doc: DocId,
        old: &[TermTf],
        new: &[TermTf],
        mut changed: impl FnMut(TermId, Change),
    ) {
        let (mut i, mut j) = (0, 0);
        loop {
            match (old.get(i), new.get(j)) {
                (Some(&(o, otf)), Some(&(n, ntf))) if o == n => {
                    if otf != ntf {
                        *self.posting_mut(o, doc) = ntf;
                    }
                    i += 1;
                    j += 1;
                }
                (Some(&(o, _)), next) if next.is_none_or(|&(n, _)| o < n) => {
                    self.remove_posting(o, doc);
                    changed(o, Change::Removed);
                    i += 1;
                }
                (_, Some(&(n, ntf))) => {
                    self.terms
                        .entry(n)
                        .or_insert_with(|| Postings {
                            docs: FxHashMap::default(),
                            idf: IdfCache::new(),
                        })
                        .docs
                        .insert(doc, ntf);
                    changed(n, Change::Added);
                    j += 1;
                }
                (_, None) => break,
            }
        }

        let new_len: u32 = new.iter().map(|&(_, tf)| tf).sum();
        let slot = doc as usize;
        if self.doc_len.len() <= slot {
            self.doc_len.resize(slot + 1, 0);
        }
        let old_len = std::mem::replace(&mut self.doc_len[slot], new_len);
        match (old_len, new_len) {
            (0, 0) => {}
            (0, _) => self.n_docs += 1,
            (_, 0) => self.n_docs -= 1,
            _ => {}
        }
        self.total_len = self.total_len - u64::from(old_len) + u64::from(new_len);
    }

    /// Adds `weight ×` the BM25 score of `doc` for each of `terms` (repeats
    /// count again) to `acc[doc]`, for every document holding one of them.
    ///
    /// Per document the additions happen in the order of `terms`, so the sum
    /// is the same float whatever the postings' iteration order.
    pub(crate) fn accumulate(
        &self,
        params: Bm25Config,
        terms: &[TermId],
        weight: f64,
        acc: &mut FxHashMap<DocId, f64>,
    ) {
        let avgdl = self.avgdl();
        for term in terms {
            let Some(p) = self.terms.get(term) else {
                continue;
            };
            let idf = p.idf.get(self.n_docs, df_of(&p.docs));
            for (&doc, &tf) in &p.docs {
                let s = bm25::term_score(params, idf, tf, self.doc_len[doc as usize], avgdl);
                *acc.entry(doc).or_insert(0.0) += weight * s;
            }
        }
    }

    /// Adds `weight ×` the BM25 score of one document to `acc`, with exactly
    /// the operations [`InvertedIndex::accumulate`] performs for it.
    pub(crate) fn accumulate_doc(
        &self,
        params: Bm25Config,
        terms: &[TermId],
        weight: f64,
        doc: DocId,
        acc: &mut Option<f64>,
    ) {
        let avgdl = self.avgdl();
        for &term in terms {
            let Some(p) = self.terms.get(&term) else {
                continue;
            };
            let Some(&tf) = p.docs.get(&doc) else {
                continue;
            };
            let idf = p.idf.get(self.n_docs, df_of(&p.docs));
            let s = bm25::term_score(params, idf, tf, self.doc_len[doc as usize], avgdl);
            *acc.get_or_insert(0.0) += weight * s;
        }
    }

    fn posting_mut(&mut self, term: TermId, doc: DocId) -> &mut u32 {
        self.terms
            .get_mut(&term)
            .and_then(|p| p.docs.get_mut(&doc))
            .expect("replace(): `old` lists a term the index does not hold for the doc")
    }

    fn remove_posting(&mut self, term: TermId, doc: DocId) {
        let p = self
            .terms
            .get_mut(&term)
            .expect("replace(): `old` lists a term the index does not hold");
        p.docs.remove(&doc);
        if p.docs.is_empty() {
            self.terms.remove(&term);
        }
    }

    #[cfg(test)]
    fn idf_cache_is_fresh(&self, term: TermId) -> bool {
        let p = &self.terms[&term];
        p.idf.is_fresh(self.n_docs, df_of(&p.docs))
    }
}

fn df_of(docs: &FxHashMap<DocId, u32>) -> u32 {
    u32::try_from(docs.len()).expect("fewer than 2^32 documents")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn t10_statistics_follow_adds_updates_and_removes() {
        let mut ix = InvertedIndex::default();
        let mut log = Vec::new();
        ix.replace(0, &[], &[(1, 2), (2, 1)], |t, c| log.push((t, c)));
        ix.replace(1, &[], &[(2, 3)], |t, c| log.push((t, c)));
        assert_eq!((ix.n_docs(), ix.avgdl()), (2, 3.0));
        assert_eq!((ix.df(1), ix.df(2), ix.df(9)), (1, 2, 0));
        assert_eq!(ix.tf(2, 1), Some(3));
        ix.replace(0, &[(1, 2), (2, 1)], &[(2, 1), (3, 4)], |t, c| {
            log.push((t, c))
        });
        assert_eq!(
            log[3..],
            [(1, Change::Removed), (3, Change::Added)],
            "only the changed terms are reported"
        );
        assert_eq!((ix.df(1), ix.df(3), ix.doc_len(0)), (0, 1, 5));
        assert_eq!(ix.avgdl(), 4.0);
        ix.replace(1, &[(2, 3)], &[], |t, c| log.push((t, c)));
        assert_eq!((ix.n_docs(), ix.avgdl(), ix.df(2)), (1, 5.0, 1));
        ix.replace(0, &[(2, 1), (3, 4)], &[], |_, _| {});
        assert_eq!((ix.n_docs(), ix.avgdl(), ix.terms.len()), (0, 0.0, 0));
    }

    #[test]
    fn t11_tf_change_updates_in_place() {
        let mut ix = InvertedIndex::default();
        ix.replace(0, &[], &[(7, 1)], |_, _| {});
        let mut heard = 0;
        ix.replace(0, &[(7, 1)], &[(7, 4)], |_, _| heard += 1);
        assert_eq!((heard, ix.tf(7, 0), ix.doc_len(0)), (0, Some(4), 4));
    }

    #[test]
    fn t20_cached_idf_is_recomputed_when_n_or_df_change() {
        let mut ix = InvertedIndex::default();
        ix.replace(0, &[], &[(1, 1)], |_, _| {});
        ix.replace(1, &[], &[(2, 1)], |_, _| {});
        assert!(close(ix.idf(1), bm25::idf(2, 1)));
        assert!(ix.idf_cache_is_fresh(1));
        // N changes, df of term 1 does not: the cached value is stale.
        ix.replace(2, &[], &[(2, 1)], |_, _| {});
        assert!(!ix.idf_cache_is_fresh(1));
        assert!(close(ix.idf(1), bm25::idf(3, 1)));
        // df changes, N does not.
        ix.replace(2, &[(2, 1)], &[(1, 1)], |_, _| {});
        assert!(close(ix.idf(1), bm25::idf(3, 2)));
        assert!(close(ix.idf(2), bm25::idf(3, 1)));
        assert_eq!(ix.idf(99), 0.0);
    }

    #[test]
    fn t30_accumulate_matches_the_formula_by_hand() {
        // Two docs: d0 = [a a b] (len 3), d1 = [b c] (len 2); avgdl = 2.5.
        let (a, b) = (1, 2);
        let mut ix = InvertedIndex::default();
        ix.replace(0, &[], &[(a, 2), (b, 1)], |_, _| {});
        ix.replace(1, &[], &[(b, 1), (3, 1)], |_, _| {});
        let p = Bm25Config::default();
        let mut acc = FxHashMap::default();
        ix.accumulate(p, &[a, b], 1.0, &mut acc);
        let idf_a = (1.5f64 / 1.5 + 1.0).ln(); // N=2, df=1 -> ln 2
        let idf_b = (0.5f64 / 2.5 + 1.0).ln(); // N=2, df=2 -> ln 1.2
        let norm0 = 1.0 - 0.75 + 0.75 * 3.0 / 2.5;
        let norm1 = 1.0 - 0.75 + 0.75 * 2.0 / 2.5;
        let d0 = idf_a * 2.0 * 2.2 / (2.0 + 1.2 * norm0) + idf_b * 2.2 / (1.0 + 1.2 * norm0);
        let d1 = idf_b * 2.2 / (1.0 + 1.2 * norm1);
        assert!(close(acc[&0], d0), "{} vs {d0}", acc[&0]);
        assert!(close(acc[&1], d1), "{} vs {d1}", acc[&1]);
        let mut one = None;
        ix.accumulate_doc(p, &[a, b], 1.0, 0, &mut one);
        assert_eq!(one, Some(acc[&0]), "single-doc scoring is bit-identical");
        let mut none = None;
        ix.accumulate_doc(p, &[a], 1.0, 1, &mut none);
        assert_eq!(none, None);
    }
}
