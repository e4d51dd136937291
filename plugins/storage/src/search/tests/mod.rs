//! Behaviour tests of the search module as a whole.
//!
//! - `index`: [`super::FullTextIndex`] claims (ranking, boost, limits,
//!   updates, removal, unicode, single-document scoring).
//! - `incremental`: property test that incremental maintenance gives the
//!   same results as building from scratch.
//! - `writer`: the deferred [`super::IndexWriter`] and its guarantees.
//!
//! Numbering follows the crate convention: `t10` basics, `t20` updates and
//! removal, `t30` boost, `t40` result shaping, `t50` text handling, `t60`
//! single-document scoring, `t70` internal bookkeeping, `t90` regressions.

mod incremental;
mod index;
mod writer;

use rmpv::Value;

/// A record value `{title, body}`.
pub(super) fn doc(title: &str, body: &str) -> Value {
    Value::Map(vec![
        (Value::from("title"), Value::from(title)),
        (Value::from("body"), Value::from(body)),
    ])
}

/// A record value with one field.
pub(super) fn rec(field: &str, text: &str) -> Value {
    Value::Map(vec![(Value::from(field), Value::from(text))])
}
