//! The per-map full-text configuration: which fields to index, how to cut
//! text into terms, and the BM25 parameters.
//!
//! The serde shape follows the legacy server's `fullTextSearch` entries
//! (camelCase, every part but `fields` optional with the legacy defaults), so
//! the same configuration file works for both:
//!
//! ```json
//! { "fields": ["title", "body"],
//!   "tokenizer": { "lowercase": true, "stopwords": "english", "stemmer": "english",
//!                  "minLength": 2, "maxLength": 40 },
//!   "bm25": { "k1": 1.2, "b": 0.75 } }
//! ```
//!
//! A config is only used after [`FullTextIndexConfig::validate`] accepted it;
//! [`crate::search::FullTextIndex::new`] calls it.

use serde::{Deserialize, Serialize};

/// Configuration of one map's full-text index.
///
/// Contract: `fields` MUST name at least one field; each entry is a top-level
/// key of the record value or a dotted path into nested maps (`author.name`).
/// Only string values are indexed; other values contribute no terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FullTextIndexConfig {
    /// Fields whose string values are indexed, in the order given.
    pub fields: Vec<String>,
    /// How text becomes terms; defaults as in [`TokenizerConfig::default`].
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    /// BM25 parameters; defaults as in [`Bm25Config::default`].
    #[serde(default)]
    pub bm25: Bm25Config,
}

impl FullTextIndexConfig {
    /// A config over `fields` with every other setting at its default.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            fields: fields.into_iter().map(Into::into).collect(),
            tokenizer: TokenizerConfig::default(),
            bm25: Bm25Config::default(),
        }
    }

    /// Checks the whole config.
    ///
    /// # Errors
    /// [`FtsConfigError`] naming the first setting that is out of range: no
    /// fields, an empty, malformed or repeated field, `k1` negative or not
    /// finite, `b` outside `[0, 1]`, or token lengths that admit no token.
    pub fn validate(&self) -> Result<(), FtsConfigError> {
        if self.fields.is_empty() {
            return Err(FtsConfigError::NoFields);
        }
        for (index, field) in self.fields.iter().enumerate() {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(FtsConfigError::InvalidField {
                    index,
                    field: field.clone(),
                });
            }
            if self.fields[..index].contains(field) {
                return Err(FtsConfigError::DuplicateField {
                    field: field.clone(),
                });
            }
        }
        self.tokenizer.validate()?;
        self.bm25.validate()
    }
}

/// How text is cut into terms. The same tokenizer runs over documents and
/// over queries, so a change of these settings needs a rebuild of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenizerConfig {
    /// Lowercase text before splitting it (default `true`).
    pub lowercase: bool,
    /// Words dropped before stemming (default: the English list).
    pub stopwords: Stopwords,
    /// Stemmer applied to each remaining word (default: English).
    pub stemmer: Stemmer,
    /// Shortest word and stem kept, in UTF-16 code units like the client
    /// (default 2).
    pub min_length: usize,
    /// Longest stem kept, in UTF-16 code units (default 40).
    pub max_length: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            stopwords: Stopwords::default(),
            stemmer: Stemmer::English,
            min_length: 2,
            max_length: 40,
        }
    }
}

impl TokenizerConfig {
    /// Checks the length bounds.
    ///
    /// # Errors
    /// [`FtsConfigError::InvalidLengths`] when `max_length` is 0 or below
    /// `min_length`: no token could ever be kept.
    pub fn validate(&self) -> Result<(), FtsConfigError> {
        if self.max_length == 0 || self.min_length > self.max_length {
            return Err(FtsConfigError::InvalidLengths {
                min: self.min_length,
                max: self.max_length,
            });
        }
        Ok(())
    }
}

/// Which stopword list the tokenizer uses.
///
/// Serialized as the string `"english"` or `"none"`, or as an array of words
/// (compared after lowercasing when `lowercase` is on, before stemming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stopwords {
    /// A named list: see [`StopwordList`].
    Named(StopwordList),
    /// Exactly these words.
    Custom(Vec<String>),
}

impl Default for Stopwords {
    fn default() -> Self {
        Self::Named(StopwordList::English)
    }
}

/// The named stopword lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StopwordList {
    /// [`crate::search::ENGLISH_STOPWORDS`].
    #[default]
    English,
    /// Keep every word.
    None,
}

/// Which stemmer the tokenizer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stemmer {
    /// The Snowball English stemmer (Porter2) from `rust-stemmers`; `"porter"`
    /// is accepted for the legacy name. Words of two letters or fewer stay.
    #[default]
    #[serde(alias = "porter")]
    English,
    /// Terms are the words themselves.
    None,
}

/// The BM25 ranking parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bm25Config {
    /// Term-frequency saturation; MUST be finite and `>= 0` (default 1.2).
    pub k1: f64,
    /// Length normalisation; MUST be within `[0, 1]` (default 0.75).
    pub b: f64,
}

impl Default for Bm25Config {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

impl Bm25Config {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`FtsConfigError::InvalidK1`] or [`FtsConfigError::InvalidB`] when a
    /// parameter is out of range or not a number.
    pub fn validate(&self) -> Result<(), FtsConfigError> {
        if !(self.k1.is_finite() && self.k1 >= 0.0) {
            return Err(FtsConfigError::InvalidK1(self.k1));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(FtsConfigError::InvalidB(self.b));
        }
        Ok(())
    }
}

/// Why a full-text configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FtsConfigError {
    /// `fields` was empty.
    #[error("full-text config: `fields` is empty; expected at least one field name to index")]
    NoFields,
    /// A field name was empty or had an empty dotted segment.
    #[error(
        "full-text config: fields[{index}] = {field:?} is not a field; expected a name or a \
         dotted path with non-empty parts, like \"title\" or \"author.name\""
    )]
    InvalidField {
        /// Position in `fields`.
        index: usize,
        /// The rejected entry.
        field: String,
    },
    /// A field was listed twice.
    #[error("full-text config: field {field:?} is listed twice; expected each field once")]
    DuplicateField {
        /// The repeated entry.
        field: String,
    },
    /// `bm25.k1` was negative or not finite.
    #[error("full-text config: bm25.k1 = {0} is invalid; expected a finite number >= 0")]
    InvalidK1(f64),
    /// `bm25.b` was outside `[0, 1]`.
    #[error("full-text config: bm25.b = {0} is invalid; expected a number from 0 to 1 inclusive")]
    InvalidB(f64),
    /// The token length bounds admit no token.
    #[error(
        "full-text config: tokenizer minLength = {min}, maxLength = {max} keep no token; \
         expected maxLength >= 1 and minLength <= maxLength"
    )]
    InvalidLengths {
        /// The configured `minLength`.
        min: usize,
        /// The configured `maxLength`.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_defaults_match_the_legacy_server() {
        let cfg: FullTextIndexConfig = serde_json::from_str(r#"{"fields":["title"]}"#).unwrap();
        assert_eq!(cfg, FullTextIndexConfig::new(["title"]));
        assert!(cfg.tokenizer.lowercase);
        assert_eq!(
            cfg.tokenizer.stopwords,
            Stopwords::Named(StopwordList::English)
        );
        assert_eq!(cfg.tokenizer.stemmer, Stemmer::English);
        assert_eq!(
            (cfg.tokenizer.min_length, cfg.tokenizer.max_length),
            (2, 40)
        );
        assert_eq!((cfg.bm25.k1, cfg.bm25.b), (1.2, 0.75));
        cfg.validate().unwrap();
    }

    #[test]
    fn t11_camel_case_fields_and_named_or_custom_stopwords_parse() {
        let cfg: FullTextIndexConfig = serde_json::from_str(
            r#"{"fields":["a","b.c"],"tokenizer":{"minLength":3,"maxLength":9,
                "stopwords":["foo","bar"],"stemmer":"porter","lowercase":false},
                "bm25":{"k1":2.0}}"#,
        )
        .unwrap();
        assert_eq!(cfg.tokenizer.min_length, 3);
        assert_eq!(cfg.tokenizer.max_length, 9);
        assert!(!cfg.tokenizer.lowercase);
        assert_eq!(
            cfg.tokenizer.stopwords,
            Stopwords::Custom(vec!["foo".into(), "bar".into()])
        );
        assert_eq!(cfg.tokenizer.stemmer, Stemmer::English);
        assert_eq!((cfg.bm25.k1, cfg.bm25.b), (2.0, 0.75));
        let none: TokenizerConfig =
            serde_json::from_str(r#"{"stopwords":"none","stemmer":"none"}"#).unwrap();
        assert_eq!(none.stopwords, Stopwords::Named(StopwordList::None));
        assert_eq!(none.stemmer, Stemmer::None);
        let back: FullTextIndexConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn t12_unknown_keys_are_refused() {
        let err = serde_json::from_str::<FullTextIndexConfig>(r#"{"fields":["a"],"bm52":{}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("bm52"), "{err}");
    }

    #[test]
    fn t20_validation_names_the_bad_setting() {
        let base = FullTextIndexConfig::new(["title"]);
        let with = |f: &dyn Fn(&mut FullTextIndexConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(with(&|c| c.fields.clear()), FtsConfigError::NoFields);
        assert!(matches!(
            with(&|c| c.fields.push(String::new())),
            FtsConfigError::InvalidField { index: 1, .. }
        ));
        assert!(matches!(
            with(&|c| c.fields.push("a..b".into())),
            FtsConfigError::InvalidField { .. }
        ));
        assert!(matches!(
            with(&|c| c.fields.push("title".into())),
            FtsConfigError::DuplicateField { .. }
        ));
        assert_eq!(with(&|c| c.bm25.k1 = -0.1), FtsConfigError::InvalidK1(-0.1));
        assert!(matches!(
            with(&|c| c.bm25.k1 = f64::NAN),
            FtsConfigError::InvalidK1(_)
        ));
        assert!(matches!(
            with(&|c| c.bm25.k1 = f64::INFINITY),
            FtsConfigError::InvalidK1(_)
        ));
        assert_eq!(with(&|c| c.bm25.b = 1.5), FtsConfigError::InvalidB(1.5));
        assert_eq!(with(&|c| c.bm25.b = -0.5), FtsConfigError::InvalidB(-0.5));
        assert!(matches!(
            with(&|c| c.bm25.b = f64::NAN),
            FtsConfigError::InvalidB(_)
        ));
        assert_eq!(
            with(&|c| c.tokenizer.min_length = 50),
            FtsConfigError::InvalidLengths { min: 50, max: 40 }
        );
        assert!(matches!(
            with(&|c| c.tokenizer.max_length = 0),
            FtsConfigError::InvalidLengths { .. }
        ));
        // Boundary values are accepted.
        let mut ok = base.clone();
        ok.bm25 = Bm25Config { k1: 0.0, b: 0.0 };
        ok.validate().unwrap();
        ok.bm25.b = 1.0;
        ok.validate().unwrap();
        let msg = FtsConfigError::InvalidB(1.5).to_string();
        assert!(
            msg.contains("bm25.b = 1.5") && msg.contains("from 0 to 1"),
            "{msg}"
        );
    }
}
