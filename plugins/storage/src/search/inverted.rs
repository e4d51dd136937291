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
//! **Postings are append-only.** Updating a document in place would touch
//! one random entry of each of its terms' postings, a cache miss apiece once
//! common terms hold thousands of documents. Instead each document has a
//! generation; a posting records the generation it was written in, and
//! changing a document bumps its generation, which retires all its old
//! postings at once. The new postings are appended (sequential writes), a
//! term's `df` is kept as a counter, and a term's list is compacted when
//! more than half of it is retired, so the cost stays amortized O(1) per
//! posting and memory within about twice the live postings. Searches skip
//! retired postings with one array lookup.
//!
//! **Updates are diffs.** [`InvertedIndex::replace`] takes the document's old
//! and new term lists (sorted by term id): an unchanged list costs nothing,
//! and `df` and the dictionary callbacks change only for terms gained or
//! lost.

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

/// One document's count of a term, written in generation `gen` of the doc.
#[derive(Debug, Clone, Copy)]
struct Posting {
    doc: DocId,
    gen: u32,
    tf: u32,
}

#[derive(Debug)]
struct Postings {
    /// Documents holding the term now (`df`).
    live: u32,
    /// Live postings and retired ones not yet compacted away.
    list: Vec<Posting>,
    idf: IdfCache,
}

impl Postings {
    fn new() -> Self {
        Self {
            live: 0,
            list: Vec::new(),
            idf: IdfCache::new(),
        }
    }

    /// Drops retired postings once they outnumber the live ones.
    fn maybe_compact(&mut self, doc_gen: &[u32]) {
        if self.list.len() > 2 * self.live as usize + 4 {
            self.list.retain(|p| doc_gen[p.doc as usize] == p.gen);
        }
    }
}

/// Postings by term id. Term ids are dense (the dictionary reuses freed
/// ids), so a vector indexed by id replaces a hash table: no hashing and no
/// probing on the write path.
#[derive(Debug, Default)]
struct TermTable {
    slots: Vec<Option<Postings>>,
    len: usize,
}

impl TermTable {
    fn get(&self, t: TermId) -> Option<&Postings> {
        self.slots.get(t as usize)?.as_ref()
    }

    fn get_mut(&mut self, t: TermId) -> Option<&mut Postings> {
        self.slots.get_mut(t as usize)?.as_mut()
    }

    fn get_or_insert(&mut self, t: TermId) -> &mut Postings {
        let i = t as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        let slot = &mut self.slots[i];
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(Postings::new)
    }

    fn remove(&mut self, t: TermId) {
        if let Some(slot) = self.slots.get_mut(t as usize) {
            if slot.take().is_some() {
                self.len -= 1;
            }
        }
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Postings> {
        self.slots.iter_mut().flatten()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
impl std::ops::Index<TermId> for TermTable {
    type Output = Postings;

    fn index(&self, t: TermId) -> &Postings {
        self.get(t).expect("term present")
    }
}

/// Postings, document lengths and corpus statistics of one field (or of all
/// configured fields together).
#[derive(Debug, Default)]
pub(crate) struct InvertedIndex {
    terms: TermTable,
    doc_len: Vec<u32>,
    /// Current generation of each document slot; postings of other
    /// generations are retired.
    doc_gen: Vec<u32>,
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
        self.terms.get(term).map_or(0, |p| p.live)
    }

    /// IDF of `term`; 0 if no document holds it.
    #[cfg(test)]
    pub(crate) fn idf(&self, term: TermId) -> f64 {
        self.terms
            .get(term)
            .map_or(0.0, |p| p.idf.get(self.n_docs, p.live))
    }

    /// Count of `term` in `doc`, if `doc` holds it (a scan: tests only).
    #[cfg(test)]
    pub(crate) fn tf(&self, term: TermId, doc: DocId) -> Option<u32> {
        let gen = *self.doc_gen.get(doc as usize)?;
        self.terms
            .get(term)?
            .list
            .iter()
            .find(|p| p.doc == doc && p.gen == gen)
            .map(|p| p.tf)
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
        if old == new {
            return;
        }
        let slot = doc as usize;
        if self.doc_gen.len() <= slot {
            self.doc_gen.resize(slot + 1, 0);
            self.doc_len.resize(slot + 1, 0);
        }
        if self.doc_gen[slot] == u32::MAX {
            // Wrapping would let a long-retired posting look current again:
            // purge every posting of this document first (once per 2^32
            // changes of one slot).
            for p in self.terms.values_mut() {
                p.list.retain(|q| q.doc != doc);
            }
        }
        let gen = self.doc_gen[slot].wrapping_add(1);
        self.doc_gen[slot] = gen;
        let doc_gen = &self.doc_gen;

        let (mut i, mut j) = (0, 0);
        loop {
            match (old.get(i), new.get(j)) {
                (Some(&(o, _)), Some(&(n, tf))) if o == n => {
                    let p = self.terms.get_mut(n).expect(HELD);
                    p.list.push(Posting { doc, gen, tf });
                    p.maybe_compact(doc_gen);
                    i += 1;
                    j += 1;
                }
                (Some(&(o, _)), next) if next.is_none_or(|&(n, _)| o < n) => {
                    let p = self.terms.get_mut(o).expect(HELD);
                    p.live -= 1;
                    if p.live == 0 {
                        self.terms.remove(o);
                    } else {
                        p.maybe_compact(doc_gen);
                    }
                    changed(o, Change::Removed);
                    i += 1;
                }
                (_, Some(&(n, tf))) => {
                    let p = self.terms.get_or_insert(n);
                    p.live += 1;
                    p.list.push(Posting { doc, gen, tf });
                    changed(n, Change::Added);
                    j += 1;
                }
                (_, None) => break,
            }
        }

        let new_len: u32 = new.iter().map(|&(_, tf)| tf).sum();
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
            let Some(p) = self.terms.get(*term) else {
                continue;
            };
            let idf = p.idf.get(self.n_docs, p.live);
            for post in &p.list {
                let d = post.doc as usize;
                if self.doc_gen[d] != post.gen {
                    continue;
                }
                let s = bm25::term_score(params, idf, post.tf, self.doc_len[d], avgdl);
                *acc.entry(post.doc).or_insert(0.0) += weight * s;
            }
        }
    }

    /// Adds `weight ×` the BM25 score of one document to `acc`, with exactly
    /// the operations [`InvertedIndex::accumulate`] performs for it.
    /// `doc_terms` MUST be the list this index holds for `doc` (its last
    /// `new` list in [`InvertedIndex::replace`]).
    pub(crate) fn accumulate_doc(
        &self,
        params: Bm25Config,
        terms: &[TermId],
        weight: f64,
        doc: DocId,
        doc_terms: &[TermTf],
        acc: &mut Option<f64>,
    ) {
        let avgdl = self.avgdl();
        for &term in terms {
            let Some(tf) = tf_in(doc_terms, term) else {
                continue;
            };
            let Some(p) = self.terms.get(term) else {
                continue;
            };
            let idf = p.idf.get(self.n_docs, p.live);
            let s = bm25::term_score(params, idf, tf, self.doc_len[doc as usize], avgdl);
            *acc.get_or_insert(0.0) += weight * s;
        }
    }

    #[cfg(test)]
    fn idf_cache_is_fresh(&self, term: TermId) -> bool {
        let p = &self.terms[term];
        p.idf.is_fresh(self.n_docs, p.live)
    }
}

const HELD: &str = "replace(): `old` lists a term the index does not hold for the doc";

/// Count of `term` in a sorted term list.
pub(crate) fn tf_in(list: &[TermTf], term: TermId) -> Option<u32> {
    list.binary_search_by_key(&term, |&(t, _)| t)
        .ok()
        .map(|i| list[i].1)
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
    fn t12_unchanged_lists_cost_nothing_and_retired_postings_are_compacted() {
        let mut ix = InvertedIndex::default();
        for d in 1..=3 {
            ix.replace(d, &[], &[(7, 1)], |_, _| {});
        }
        ix.replace(0, &[], &[(7, 1), (8, 1)], |_, _| {});
        let gen = ix.doc_gen[0];
        ix.replace(0, &[(7, 1), (8, 1)], &[(7, 1), (8, 1)], |_, _| {});
        assert_eq!(ix.doc_gen[0], gen, "an identical list is a no-op");
        // Flip doc 0 between two versions many times: term 7's list keeps
        // retired postings only up to the compaction bound.
        let (a, b) = ([(7, 1), (8, 1)], [(7, 2), (8, 1)]);
        for i in 0..1000 {
            let (old, new) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            ix.replace(0, old, new, |_, _| {});
            let p = &ix.terms[7];
            assert!(p.list.len() <= 2 * p.live as usize + 5, "{}", p.list.len());
        }
        assert_eq!((ix.df(7), ix.tf(7, 0), ix.tf(7, 2)), (4, Some(1), Some(1)));
        let mut acc = FxHashMap::default();
        ix.accumulate(Bm25Config::default(), &[7], 1.0, &mut acc);
        assert_eq!(acc.len(), 4, "one score per live document");
    }

    #[test]
    fn t13_generation_wrap_purges_the_documents_old_postings() {
        let mut ix = InvertedIndex::default();
        for d in 1..=10 {
            ix.replace(d, &[], &[(5, 1)], |_, _| {});
        }
        ix.doc_gen.resize(11, 0);
        ix.doc_gen[0] = u32::MAX - 2;
        ix.replace(0, &[], &[(5, 1)], |_, _| {}); // gen MAX-1
        ix.replace(0, &[(5, 1)], &[(6, 1)], |_, _| {}); // gen MAX, 5 retired
        assert!(ix.terms[5].list.iter().any(|p| p.doc == 0));
        ix.replace(0, &[(6, 1)], &[(7, 1)], |_, _| {}); // wraps: purge
        assert_eq!(ix.doc_gen[0], 0);
        assert!(!ix.terms[5].list.iter().any(|p| p.doc == 0));
        ix.replace(0, &[(7, 1)], &[(5, 3)], |_, _| {});
        assert_eq!(
            (ix.df(5), ix.df(6), ix.df(7), ix.tf(5, 0)),
            (11, 0, 0, Some(3))
        );
        let mut acc = FxHashMap::default();
        ix.accumulate(Bm25Config::default(), &[5], 1.0, &mut acc);
        assert_eq!(acc.len(), 11);
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
        ix.accumulate_doc(p, &[a, b], 1.0, 0, &[(a, 2), (b, 1)], &mut one);
        assert_eq!(one, Some(acc[&0]), "single-doc scoring is bit-identical");
        let mut none = None;
        ix.accumulate_doc(p, &[a], 1.0, 1, &[(b, 1), (3, 1)], &mut none);
        assert_eq!(none, None);
    }
}
