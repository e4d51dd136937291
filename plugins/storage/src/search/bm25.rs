//! The BM25 formulas, as pure functions of counts.
//!
//! - `IDF(t) = ln((N − df + 0.5) / (df + 0.5) + 1)`, with `N` the number of
//!   documents in the index and `df` the number holding `t`; it is always
//!   positive, and 0 for an unknown term (`df = 0` is never looked up).
//! - One term's contribution to a document's score:
//!   `idf · tf·(k1+1) / (tf + k1·(1 − b + b·|D|/avgdl))`, with `tf` the term's
//!   count in the document, `|D|` the document's term count and `avgdl` the
//!   mean of `|D|` over the index.
//!
//! Keeping them here, free of the index structures, lets tests check them
//! against hand-computed numbers.

use super::config::Bm25Config;

/// Inverse document frequency of a term held by `df` of `n` documents.
///
/// Contract: `df <= n`; returns 0 when `df == 0` (unknown term).
#[must_use]
pub fn idf(n: u32, df: u32) -> f64 {
    if df == 0 {
        return 0.0;
    }
    let (n, df) = (f64::from(n), f64::from(df));
    ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
}

/// The score contribution of one query term to one document.
///
/// Contract: `tf >= 1`, `doc_len >= tf`, `avgdl > 0`.
#[must_use]
pub fn term_score(params: Bm25Config, idf: f64, tf: u32, doc_len: u32, avgdl: f64) -> f64 {
    let tf = f64::from(tf);
    let norm = 1.0 - params.b + params.b * f64::from(doc_len) / avgdl;
    idf * tf * (params.k1 + 1.0) / (tf + params.k1 * norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn t10_idf_matches_hand_computed_values() {
        // N = 10, df = 1: ln((10 - 1 + 0.5)/(1 + 0.5) + 1) = ln(7.333…)
        assert!(close(idf(10, 1), (9.5f64 / 1.5 + 1.0).ln()));
        assert!(close(idf(10, 1), 1.992_430_164_690_206_4));
        // N = 3, df = 3: ln(0.5/3.5 + 1) = ln(8/7)
        assert!(close(idf(3, 3), (8.0f64 / 7.0).ln()));
        // N = 1, df = 1: ln(0.5/1.5 + 1) = ln(4/3)
        assert!(close(idf(1, 1), (4.0f64 / 3.0).ln()));
        assert_eq!(idf(5, 0), 0.0);
    }

    #[test]
    fn t11_idf_is_positive_and_falls_as_df_rises() {
        for n in 1..50u32 {
            let mut last = f64::INFINITY;
            for df in 1..=n {
                let v = idf(n, df);
                assert!(v > 0.0 && v < last, "n={n} df={df} v={v}");
                last = v;
            }
        }
    }

    #[test]
    fn t12_term_score_matches_a_hand_computed_example() {
        // k1 = 1.2, b = 0.75, idf = 2, tf = 3, |D| = 10, avgdl = 5:
        // norm = 1 - .75 + .75*2 = 1.75; denom = 3 + 1.2*1.75 = 5.1
        // score = 2 * 3 * 2.2 / 5.1 = 13.2 / 5.1
        let s = term_score(Bm25Config::default(), 2.0, 3, 10, 5.0);
        assert!(close(s, 13.2 / 5.1), "{s}");
        // b = 0 ignores length; k1 = 0 makes tf irrelevant (score = idf).
        let no_len = Bm25Config { k1: 1.2, b: 0.0 };
        assert!(close(
            term_score(no_len, 1.0, 2, 1, 100.0),
            term_score(no_len, 1.0, 2, 1000, 1.0)
        ));
        let no_tf = Bm25Config { k1: 0.0, b: 0.75 };
        assert!(close(term_score(no_tf, 1.5, 7, 9, 3.0), 1.5));
    }

    #[test]
    fn t13_term_score_saturates_in_tf_and_falls_with_length() {
        let p = Bm25Config::default();
        let s = |tf, len| term_score(p, 1.0, tf, len, 20.0);
        assert!(s(2, 20) > s(1, 20));
        assert!(s(2, 20) - s(1, 20) > s(10, 20) - s(9, 20));
        assert!(s(3, 40) < s(3, 20));
        assert!(s(1000, 2000) < p.k1 + 1.0);
    }
}
