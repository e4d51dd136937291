//! Cursors: opaque tokens that resume a query after the last row of a page.
//!
//! # Format (version 1)
//!
//! The wire string is base64url without padding of a msgpack array:
//!
//! ```text
//! [ 1,              // format version
//!   bin sort_bytes, // the last row's encoded sort values (see `sort`)
//!   str key,        // the last row's key
//!   u64 filter_hash,// hash of the query's `predicate` (or `where`, or nil)
//!   u64 sort_hash,  // hash of the normalized sort fields
//!   u64 issued_ms ] // when the cursor was made
//! ```
//!
//! Carrying the *encoded* sort values means resuming uses exactly the order
//! that produced the page, for every sort field (the legacy cursor kept only
//! the first field). Clients treat the string as opaque; it is
//! not the legacy JSON layout, and a legacy cursor decodes as `invalid`.
//!
//! # Status
//!
//! - `none`: the query had no cursor.
//! - `valid`: rows strictly after the cursor position are returned.
//! - `invalid`: undecodable, or made for another filter or sort.
//! - `expired`: older than the maximum age (10 minutes by default).
//!
//! An `invalid` or `expired` cursor is ignored: results restart from the
//! beginning and the status says why.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rmpv::Value;

use super::sort::SortKey;

/// Default maximum age of a cursor: 10 minutes, as in the legacy server.
pub const DEFAULT_CURSOR_MAX_AGE_MS: u64 = 600_000;

/// Longest cursor string accepted; longer ones are `invalid` unread.
pub const MAX_CURSOR_LEN: usize = 64 * 1024;

const FORMAT_VERSION: u64 = 1;

/// What became of the cursor a query carried: core's type, so a page's
/// status crosses the module boundary unchanged.
pub use hangar_core::module::storage_types::CursorStatus;

/// Makes the cursor string for a page whose last row is `last`.
#[must_use]
pub fn encode_cursor(last: &SortKey, filter_hash: u64, sort_hash: u64, now_ms: u64) -> String {
    let v = Value::Array(vec![
        Value::from(FORMAT_VERSION),
        Value::Binary(last.bytes().to_vec()),
        Value::from(&**last.key()),
        Value::from(filter_hash),
        Value::from(sort_hash),
        Value::from(now_ms),
    ]);
    let mut buf = Vec::with_capacity(64 + last.bytes().len() + last.key().len());
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut buf, &v);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Reads `cursor` for a query with the given hashes.
///
/// Returns the position to resume after (only when `Valid`) and the status.
#[must_use]
pub fn decode_cursor(
    cursor: &str,
    filter_hash: u64,
    sort_hash: u64,
    now_ms: u64,
    max_age_ms: u64,
) -> (Option<SortKey>, CursorStatus) {
    let Some(parts) = parse(cursor) else {
        return (None, CursorStatus::Invalid);
    };
    if parts.filter_hash != filter_hash || parts.sort_hash != sort_hash {
        return (None, CursorStatus::Invalid);
    }
    if now_ms.saturating_sub(parts.issued_ms) > max_age_ms {
        return (None, CursorStatus::Expired);
    }
    (
        Some(SortKey::from_parts(parts.bytes.into(), parts.key.into())),
        CursorStatus::Valid,
    )
}

struct Parts {
    bytes: Vec<u8>,
    key: String,
    filter_hash: u64,
    sort_hash: u64,
    issued_ms: u64,
}

fn parse(cursor: &str) -> Option<Parts> {
    if cursor.len() > MAX_CURSOR_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let mut slice = raw.as_slice();
    let v = rmpv::decode::read_value(&mut slice).ok()?;
    if !slice.is_empty() {
        return None;
    }
    let Value::Array(items) = v else { return None };
    let [version, bytes, key, fh, sh, ts] = <[Value; 6]>::try_from(items).ok()?;
    if version.as_u64()? != FORMAT_VERSION {
        return None;
    }
    let Value::Binary(bytes) = bytes else {
        return None;
    };
    Some(Parts {
        bytes,
        key: key.as_str()?.to_string(),
        filter_hash: fh.as_u64()?,
        sort_hash: sh.as_u64()?,
        issued_ms: ts.as_u64()?,
    })
}
