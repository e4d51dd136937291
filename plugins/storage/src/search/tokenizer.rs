//! Text to terms, the same way for documents and for queries.
//!
//! The rules, in order (legacy `BM25Tokenizer`):
//!
//! 1. a value that is not a string has no terms;
//! 2. lowercase (when configured), then split on every run of characters that
//!    are neither letters (`\p{L}`) nor numbers (`\p{N}`);
//! 3. drop words shorter than `min_length` UTF-16 code units (the client
//!    counts JavaScript string length);
//! 4. drop stopwords, compared *before* stemming;
//! 5. stem;
//! 6. drop stems shorter than `min_length` or longer than `max_length`.
//!
//! The hot path is [`Tokenizer::for_each_term`]: it writes into a buffer the
//! caller keeps and hands each term out as a `&str`, so indexing a document
//! allocates nothing here beyond what the stemmer returns for words it
//! changes.

use std::borrow::Cow;
use std::fmt;

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use super::config::{Stemmer, StopwordList, Stopwords, TokenizerConfig};
use super::stopwords::ENGLISH_STOPWORDS;

/// A tokenizer built from a validated [`TokenizerConfig`].
///
/// Contract: the output depends only on the config and the input text, never
/// on earlier calls; it is `Send + Sync` and cheap to share.
pub struct Tokenizer {
    lowercase: bool,
    stopwords: foldhash::HashSet<Box<str>>,
    stemmer: Option<rust_stemmers::Stemmer>,
    min_length: usize,
    max_length: usize,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("lowercase", &self.lowercase)
            .field("stopwords", &self.stopwords.len())
            .field("stemmer", &self.stemmer.is_some())
            .field("min_length", &self.min_length)
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer. The config is expected to have passed
    /// [`TokenizerConfig::validate`]; an invalid one yields a tokenizer that
    /// keeps no term.
    #[must_use]
    pub fn new(config: &TokenizerConfig) -> Self {
        let stopwords = match &config.stopwords {
            Stopwords::Named(StopwordList::English) => {
                ENGLISH_STOPWORDS.iter().map(|w| Box::from(*w)).collect()
            }
            Stopwords::Named(StopwordList::None) => foldhash::HashSet::default(),
            Stopwords::Custom(words) => words
                .iter()
                .map(|w| {
                    if config.lowercase {
                        w.to_lowercase().into_boxed_str()
                    } else {
                        w.as_str().into()
                    }
                })
                .collect(),
        };
        let stemmer = match config.stemmer {
            Stemmer::English => Some(rust_stemmers::Stemmer::create(
                rust_stemmers::Algorithm::English,
            )),
            Stemmer::None => None,
        };
        Self {
            lowercase: config.lowercase,
            stopwords,
            stemmer,
            min_length: config.min_length,
            max_length: config.max_length,
        }
    }

    /// The terms of a msgpack value: none unless it is a (UTF-8) string.
    #[must_use]
    pub fn tokenize_value(&self, value: &rmpv::Value) -> Vec<String> {
        match value.as_str() {
            Some(text) => self.tokenize(text),
            None => Vec::new(),
        }
    }

    /// The terms of `text`, in order, with repeats.
    #[must_use]
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = String::new();
        self.for_each_term(text, &mut buf, |t| out.push(t.to_owned()));
        out
    }

    /// Calls `emit` with each term of `text`, in order, with repeats.
    ///
    /// `buf` is scratch space: its content on entry is ignored and on return
    /// is unspecified. Reusing one buffer across calls avoids allocating.
    pub fn for_each_term(&self, text: &str, buf: &mut String, mut emit: impl FnMut(&str)) {
        self.for_each_word(text, buf, |word| {
            if let Some(stem) = self.stem(word) {
                emit(&stem);
            }
        });
    }

    /// Rules 1 to 4: calls `emit` with each word of `text` that is long
    /// enough and not a stopword, before stemming. Each such word yields
    /// exactly the term [`Tokenizer::stem`] returns for it, whatever its
    /// context, which lets the index cache word → term.
    ///
    /// `buf` is scratch space as in [`Tokenizer::for_each_term`].
    pub fn for_each_word(&self, text: &str, buf: &mut String, mut emit: impl FnMut(&str)) {
        let source: &str = if self.lowercase {
            buf.clear();
            if text.is_ascii() {
                buf.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            } else {
                // Full Unicode lowercasing, including the context-dependent
                // final sigma, as JavaScript's `toLowerCase` does it.
                buf.push_str(&text.to_lowercase());
            }
            buf.as_str()
        } else {
            text
        };
        for word in source.split(|c: char| !is_word_char(c)) {
            if word.is_empty() || utf16_len(word) < self.min_length {
                continue;
            }
            if self.stopwords.contains(word) {
                continue;
            }
            emit(word);
        }
    }

    /// Rules 5 and 6: the term of a word from [`Tokenizer::for_each_word`],
    /// or `None` when its stem is shorter than `min_length` or longer than
    /// `max_length`.
    #[must_use]
    pub fn stem<'w>(&self, word: &'w str) -> Option<Cow<'w, str>> {
        let stem = match &self.stemmer {
            Some(stemmer) => stemmer.stem(word),
            None => Cow::Borrowed(word),
        };
        let len = utf16_len(&stem);
        (self.min_length..=self.max_length)
            .contains(&len)
            .then_some(stem)
    }
}

/// Letters and numbers by Unicode general category (`\p{L}`, `\p{N}`), the
/// classes of the client's split pattern.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    )
}

/// Length in UTF-16 code units, JavaScript's `String.length`.
fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().map(char::len_utf16).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Tokenizer {
        Tokenizer::new(&TokenizerConfig::default())
    }

    fn plain() -> TokenizerConfig {
        TokenizerConfig {
            stopwords: Stopwords::Named(StopwordList::None),
            stemmer: Stemmer::None,
            ..TokenizerConfig::default()
        }
    }

    #[test]
    fn t10_splits_on_non_letters_and_lowercases() {
        let t = Tokenizer::new(&plain());
        assert_eq!(
            t.tokenize("Hello, World!  foo-bar_baz/42x"),
            ["hello", "world", "foo", "bar", "baz", "42x"]
        );
        let keep_case = Tokenizer::new(&TokenizerConfig {
            lowercase: false,
            ..plain()
        });
        assert_eq!(keep_case.tokenize("Hello World"), ["Hello", "World"]);
    }

    #[test]
    fn t11_non_string_values_have_no_terms() {
        let t = default();
        assert!(t.tokenize_value(&rmpv::Value::from(42)).is_empty());
        assert!(t.tokenize_value(&rmpv::Value::Nil).is_empty());
        assert!(t
            .tokenize_value(&rmpv::Value::Array(vec!["running".into()]))
            .is_empty());
        assert_eq!(t.tokenize_value(&rmpv::Value::from("running")), ["run"]);
    }

    #[test]
    fn t12_short_words_are_dropped_by_utf16_length() {
        let t = Tokenizer::new(&plain());
        assert_eq!(t.tokenize("a bb c dd"), ["bb", "dd"]);
        // U+1D400 is one char but two UTF-16 units: long enough for min 2.
        assert_eq!(t.tokenize("\u{1D400}"), ["\u{1D400}"]);
        // "é" is one UTF-16 unit: too short.
        assert!(t.tokenize("é").is_empty());
        let t3 = Tokenizer::new(&TokenizerConfig {
            min_length: 3,
            max_length: 4,
            ..plain()
        });
        assert_eq!(t3.tokenize("ab abc abcd abcde"), ["abc", "abcd"]);
    }

    #[test]
    fn t13_stopwords_are_checked_before_stemming() {
        let t = default();
        // "the" is a stopword; "running" is not and stems to "run".
        assert_eq!(t.tokenize("The running dogs"), ["run", "dog"]);
        // A custom list matches the raw word: "runs" is dropped, while
        // "running" stems to "run" yet survives since the check came first.
        let custom = Tokenizer::new(&TokenizerConfig {
            stopwords: Stopwords::Custom(vec!["RUNS".into(), "run".into()]),
            ..TokenizerConfig::default()
        });
        assert_eq!(custom.tokenize("runs running run the"), ["run", "the"]);
    }

    #[test]
    fn t14_stems_outside_the_length_bounds_are_dropped() {
        let t = Tokenizer::new(&TokenizerConfig {
            min_length: 2,
            max_length: 5,
            ..TokenizerConfig::default()
        });
        // "generalization" stems to "general" (7) > 5: dropped; "cats" -> "cat".
        assert_eq!(t.tokenize("generalization cats"), ["cat"]);
        let long = "x".repeat(41);
        assert!(default().tokenize(&long).is_empty());
        assert_eq!(default().tokenize(&"x".repeat(40)).len(), 1);
    }

    #[test]
    fn t15_english_stemmer_conflates_inflections() {
        let t = default();
        assert_eq!(
            t.tokenize("connect connected connecting connection connections"),
            ["connect"; 5]
        );
        // Two-letter words are left alone by the stemmer.
        assert_eq!(t.tokenize("ox"), ["ox"]);
    }

    #[test]
    fn t16_unicode_letters_and_numbers_form_words() {
        let t = Tokenizer::new(&plain());
        assert_eq!(t.tokenize("Привет, мир!"), ["привет", "мир"]);
        assert_eq!(
            t.tokenize("東京タワー・スカイツリー"),
            ["東京タワー", "スカイツリー"]
        );
        // Full-width digits and superscripts are numbers (\p{N}).
        assert_eq!(t.tokenize("１２３ x²y"), ["１２３", "x²y"]);
        // Emoji and symbols separate words.
        assert_eq!(t.tokenize("rust🦀async"), ["rust", "async"]);
        // Final sigma lowercases as in JavaScript.
        assert_eq!(t.tokenize("ΟΔΟΣ"), ["οδος"]);
    }

    #[test]
    fn t17_marks_split_words_like_the_client_pattern() {
        // U+0301 (combining acute) is a mark, not \p{L}: the client's regex
        // splits there, and so do we.
        let t = Tokenizer::new(&plain());
        assert_eq!(t.tokenize("cafe\u{301}s ab"), ["cafe", "ab"]);
    }

    #[test]
    fn t18_scratch_buffer_content_does_not_leak_into_terms() {
        let t = default();
        let mut buf = String::from("garbage left over");
        let mut got = Vec::new();
        t.for_each_term("Searching", &mut buf, |x| got.push(x.to_owned()));
        t.for_each_term("engines", &mut buf, |x| got.push(x.to_owned()));
        assert_eq!(got, ["search", "engin"]);
    }

    #[test]
    fn t19_words_then_stems_compose_to_terms() {
        let t = default();
        let mut words = Vec::new();
        t.for_each_word("The Running of 40 dogs", &mut String::new(), |w| {
            words.push(w.to_owned());
        });
        assert_eq!(words, ["running", "40", "dogs"]);
        let stems: Vec<_> = words.iter().filter_map(|w| t.stem(w)).collect();
        assert_eq!(stems, t.tokenize("The Running of 40 dogs"));
        assert_eq!(t.stem(&"y".repeat(41)), None);
    }
}
