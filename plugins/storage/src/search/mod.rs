//! Full-text search: BM25 over the fields configured per map.
//!
//! # Layout
//!
//! - `config`: [`FullTextIndexConfig`] (fields, tokenizer, BM25) and its validation.
//! - `stopwords`: the built-in English stopword list.
//! - `tokenizer`: text to terms (lowercase, split, stopwords, stem, length bounds).
//! - `bm25`: the IDF and term-score formulas as pure functions.
//! - `terms`: the term dictionary (term text ↔ small id, reference-counted).
//! - `inverted`: one inverted index with incrementally kept BM25 statistics.
//! - `index`: [`FullTextIndex`], one map's combined and per-field indexes.
//! - `query`: [`SearchOptions`], [`SearchMatch`], [`SearchResults`], [`SearchError`].
//! - `writer`: [`IndexWriter`], deferred indexing off the write path.
//!
//! # How the storage module uses it
//!
//! For each map with a `fullTextSearch` entry it builds a [`FullTextIndex`],
//! wraps it in an [`IndexWriter`] on the plugin's runtime, and on every
//! applied change calls `writer.upsert(key, value)` (a tombstone or removal:
//! `writer.remove(key)`). A `SEARCH` calls `wait_current().await` and then
//! `search`, which gives read-your-writes; a live `SEARCH_SUB` re-scores a
//! changed key with [`FullTextIndex::score_document`].
//!
//! Differences from the legacy server, on purpose: a tombstone (`Nil`)
//! removes the document (the legacy index kept it); a boost naming an
//! unindexed field or a bad weight is an error instead of being ignored;
//! dotted field paths reach into nested maps; the stemmer is Snowball
//! English (Porter2), not the original Porter algorithm, so a few words stem
//! differently from the legacy client.

mod bm25;
mod config;
mod index;
mod inverted;
mod query;
mod stopwords;
mod terms;
mod tokenizer;
mod writer;

#[cfg(test)]
mod tests;

pub use bm25::{idf, term_score};
pub use config::{
    Bm25Config, FtsConfigError, FullTextIndexConfig, Stemmer, StopwordList, Stopwords,
    TokenizerConfig,
};
pub use index::{FullTextIndex, IndexStats};
pub use query::{SearchError, SearchMatch, SearchOptions, SearchResults};
pub use stopwords::ENGLISH_STOPWORDS;
pub use tokenizer::Tokenizer;
pub use writer::{Document, IndexWriter, WriterOptions, WriterStats};
