//! Conversions between the core (wire-facing, FFI-safe) types and the
//! internal engines: full-text configs, msgpack values, query pages and
//! live-query updates.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::storage_types::{
    QueryResponse, QueryRow, QuerySink as CoreSink, QueryUpdate as CoreUpdate,
};
use hangar_core::RawValue;
use rmpv::Value;

use crate::query::{LiveSink, LiveUpdate, Page};
use crate::search::{
    Bm25Config, FullTextIndexConfig, Stemmer, StopwordList, Stopwords, TokenizerConfig,
};
use crate::settings::FullTextSettings;

/// The search engine's config for a map's full-text settings.
pub(crate) fn fts_config(c: &FullTextSettings) -> FullTextIndexConfig {
    FullTextIndexConfig {
        fields: c.fields.clone(),
        tokenizer: TokenizerConfig {
            lowercase: c.tokenizer.lowercase,
            stopwords: Stopwords::Named(if c.tokenizer.stopwords {
                StopwordList::English
            } else {
                StopwordList::None
            }),
            stemmer: if c.tokenizer.stemmer {
                Stemmer::English
            } else {
                Stemmer::None
            },
            min_length: c.tokenizer.min_length,
            max_length: c.tokenizer.max_length,
        },
        bm25: Bm25Config {
            k1: c.bm25.k1,
            b: c.bm25.b,
        },
    }
}

/// Decodes stored msgpack bytes; `None` (logged) when they are not one
/// well-formed value, so that a bad value never matches a query.
pub(crate) fn decode(bytes: &[u8]) -> Option<Value> {
    match rmpv::decode::read_value(&mut &bytes[..]) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "a stored value is not valid msgpack; ignored by queries");
            None
        }
    }
}

/// Encodes a value as msgpack.
pub(crate) fn encode(v: &Value) -> RawValue {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut buf, v);
    RawValue::from_msgpack(buf)
}

/// A query page as the core response.
pub(crate) fn response(page: Page) -> QueryResponse {
    QueryResponse {
        rows: page
            .rows
            .into_iter()
            .map(|r| QueryRow {
                key: RString::from(&*r.key),
                value: encode(&r.value),
            })
            .collect(),
        next_cursor: page.next_cursor.map(RString::from).into(),
        has_more: page.has_more,
        cursor_status: page.cursor_status,
    }
}

/// Forwards a registry subscription's updates to the host's sink, with the
/// (projected) values re-encoded as msgpack.
pub(crate) struct SinkAdapter {
    pub(crate) sink: Arc<dyn CoreSink>,
}

thread_local! {
    /// The last value encoded on this thread. One change reaches every
    /// subscription that shows the whole value with the same `Arc`, so the
    /// encoding is done once per change, not once per subscription. The
    /// cached `Arc` keeps its value alive, so a pointer match is the same
    /// value.
    static LAST_ENCODED: std::cell::RefCell<Option<(Arc<Value>, RawValue)>> =
        const { std::cell::RefCell::new(None) };
}

fn encode_shared(v: &Arc<Value>) -> RawValue {
    LAST_ENCODED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some((cached, raw)) = &*cell {
            if Arc::ptr_eq(cached, v) {
                return raw.clone();
            }
        }
        let raw = encode(v);
        *cell = Some((v.clone(), raw.clone()));
        raw
    })
}

impl LiveSink for SinkAdapter {
    fn deliver(&self, update: LiveUpdate) {
        self.sink.deliver(&CoreUpdate {
            subscription: update.subscription.0,
            key: RString::from(&*update.key),
            value: update.value.as_ref().map(encode_shared).into(),
            change: update.change,
        });
    }
}

/// The request's `fields` as owned strings (`None`: whole values).
pub(crate) fn fields(f: &ROption<RVec<RString>>) -> Option<Vec<String>> {
    f.as_ref()
        .into_option()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
}
