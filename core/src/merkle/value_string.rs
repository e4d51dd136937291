//! The canonical string of a msgpack value inside an OR-map entry hash (the
//! `valueStr` of `tag:valueStr:millis:counter:nodeId`).
//!
//! # What we chose, and why
//!
//! The TypeScript client hashes the JavaScript value that msgpack decoded to:
//! `null`/`undefined` as `"null"`/`"undefined"`, objects (arrays included) as
//! `JSON.stringify(v, Object.keys(v).sort())`, anything else as `String(v)`.
//! We reproduce that exactly for every JSON-like value (nil, booleans,
//! numbers, strings, arrays, maps with string keys), **including** the
//! whitelist quirk: the sorted top-level keys act as the property list at
//! every nesting level, so a nested map keeps only the keys that also occur
//! at the top level (under a top-level array, only keys spelling an index
//! below its length), in sorted order.
//!
//! Reproducing it is cheap (a membership test per nested key) and buys equal
//! roots with TypeScript peers, so OR-map Merkle sync with them descends only
//! into buckets that really differ. The quirk's blind spot (a change inside
//! a nested map that the whitelist drops) does not cost convergence in
//! practice: an OR tag names one add, so a changed value arrives under a new
//! tag, which the hash does see.
//!
//! Where the TypeScript result depends on the platform or cannot be
//! expressed, we define our own deterministic form (TS peers disagree there,
//! which only costs sync efficiency, never correctness):
//!
//! - binary: a JSON array of the byte values, `[1,2,3]` (Node's `Buffer` and
//!   the browser's `Uint8Array` stringify differently);
//! - extension type 0, which msgpackr decodes as `undefined`, is
//!   `undefined` at top level, skipped as a map value and `null` as an array
//!   element, as JavaScript has it;
//! - other extension types: `ext:<type>:<lowercase hex>` (a JSON string of
//!   that when nested);
//! - non-string map keys: the key's own value string (`1` for integer 1);
//! - integers beyond 2^53: converted to the nearest `f64`, as msgpackr's
//!   default `number` decoding does;
//! - bytes that are not one msgpack value: `raw:<lowercase hex>`.
//!
//! Numbers follow ECMAScript `Number::toString` (shortest round-trip digits,
//! exponent form outside `1e-7 < |x| < 1e21`); non-finite numbers are
//! `NaN`/`Infinity` at top level and `null` inside JSON, as in JavaScript.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::{self, Write};

use rmpv::Value;

use super::or::cmp_utf16;

/// Writes the canonical value string of the msgpack value in `bytes`.
///
/// # Errors
/// Only those of `out`.
pub fn write_value_string_bytes(bytes: &[u8], out: &mut impl Write) -> fmt::Result {
    let mut rd = bytes;
    match rmpv::decode::read_value(&mut rd) {
        Ok(v) if rd.is_empty() => write_value_string(&v, out),
        _ => {
            out.write_str("raw:")?;
            write_hex(bytes, out)
        }
    }
}

/// Writes the canonical value string of `value` (see the module docs).
///
/// # Errors
/// Only those of `out`.
pub fn write_value_string(value: &Value, out: &mut impl Write) -> fmt::Result {
    match value {
        Value::Nil => out.write_str("null"),
        Value::Boolean(b) => out.write_str(if *b { "true" } else { "false" }),
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            write_js_number(number_of(value).unwrap_or(f64::NAN), out)
        }
        Value::String(s) => match s.as_str() {
            Some(s) => out.write_str(s),
            None => out.write_str(&String::from_utf8_lossy(s.as_bytes())),
        },
        Value::Ext(UNDEFINED_EXT, _) => out.write_str("undefined"),
        Value::Binary(_) | Value::Ext(..) => write_json(value, &Whitelist::Indices(0), out),
        Value::Array(items) => write_json(value, &Whitelist::Indices(items.len()), out),
        Value::Map(entries) => {
            let mut keys: Vec<Cow<'_, str>> = entries.iter().map(|(k, _)| key_string(k)).collect();
            keys.sort_by(|a, b| cmp_utf16(a, b));
            keys.dedup();
            write_json(value, &Whitelist::Keys(keys), out)
        }
    }
}

/// The extension type msgpackr decodes as JavaScript `undefined`.
const UNDEFINED_EXT: i8 = 0;

/// The property list of `JSON.stringify(v, list)`.
enum Whitelist<'a> {
    /// Sorted (UTF-16 order), deduplicated keys of a top-level map.
    Keys(Vec<Cow<'a, str>>),
    /// The index strings `"0"..n` of a top-level array of length `n`.
    Indices(usize),
}

impl Whitelist<'_> {
    fn contains(&self, key: &str) -> bool {
        match self {
            Self::Keys(keys) => keys.binary_search_by(|k| cmp_utf16(k, key)).is_ok(),
            Self::Indices(n) => {
                let canonical = key == "0"
                    || (!key.is_empty()
                        && !key.starts_with('0')
                        && key.bytes().all(|b| b.is_ascii_digit()));
                canonical && key.parse::<usize>().is_ok_and(|i| i < *n)
            }
        }
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        // Rounding to nearest f64 is the intended conversion (see module docs).
        Value::Integer(i) => i
            .as_i64()
            .map(|i| i as f64)
            .or(i.as_u64().map(|u| u as f64)),
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        _ => None,
    }
}

fn key_string(k: &Value) -> Cow<'_, str> {
    match k {
        Value::String(s) => s
            .as_str()
            .map_or_else(|| String::from_utf8_lossy(s.as_bytes()), Cow::Borrowed),
        other => {
            let mut s = String::new();
            let _ = write_value_string(other, &mut s);
            Cow::Owned(s)
        }
    }
}

fn write_hex(bytes: &[u8], out: &mut impl Write) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(out, "{b:02x}"))
}

/// JSON.stringify's serialization of a nested value under `list`.
fn write_json(v: &Value, list: &Whitelist<'_>, out: &mut impl Write) -> fmt::Result {
    match v {
        Value::Nil => out.write_str("null"),
        Value::Boolean(b) => out.write_str(if *b { "true" } else { "false" }),
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => match number_of(v) {
            Some(x) if x.is_finite() => write_js_number(x, out),
            _ => out.write_str("null"),
        },
        Value::String(s) => match s.as_str() {
            Some(s) => write_json_string(s, out),
            None => write_json_string(&String::from_utf8_lossy(s.as_bytes()), out),
        },
        Value::Binary(b) => {
            out.write_char('[')?;
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write!(out, "{byte}")?;
            }
            out.write_char(']')
        }
        // `undefined` as an array element; map values skip it (below).
        Value::Ext(UNDEFINED_EXT, _) => out.write_str("null"),
        Value::Ext(ty, data) => {
            let mut s = format!("ext:{ty}:");
            write_hex(data, &mut s)?;
            write_json_string(&s, out)
        }
        Value::Array(items) => {
            out.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write_json(item, list, out)?;
            }
            out.write_char(']')
        }
        Value::Map(entries) => {
            // Keys in property-list order (sorted), last duplicate wins, as a
            // JavaScript object built from the map would have it.
            let mut kept: Vec<(usize, Cow<'_, str>)> = entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (i, key_string(k)))
                .filter(|(i, k)| {
                    !matches!(entries[*i].1, Value::Ext(UNDEFINED_EXT, _)) && list.contains(k)
                })
                .collect();
            kept.sort_by(|a, b| match cmp_utf16(&a.1, &b.1) {
                Ordering::Equal => b.0.cmp(&a.0),
                o => o,
            });
            kept.dedup_by(|later, first| later.1 == first.1);
            out.write_char('{')?;
            for (n, (i, k)) in kept.iter().enumerate() {
                if n > 0 {
                    out.write_char(',')?;
                }
                write_json_string(k, out)?;
                out.write_char(':')?;
                write_json(&entries[*i].1, list, out)?;
            }
            out.write_char('}')
        }
    }
}

/// JSON.stringify's QuoteJSONString.
fn write_json_string(s: &str, out: &mut impl Write) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\u{8}' => out.write_str("\\b")?,
            '\t' => out.write_str("\\t")?,
            '\n' => out.write_str("\\n")?,
            '\u{c}' => out.write_str("\\f")?,
            '\r' => out.write_str("\\r")?,
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// ECMAScript `Number::toString(10)`.
fn write_js_number(x: f64, out: &mut impl Write) -> fmt::Result {
    if x.is_nan() {
        return out.write_str("NaN");
    }
    if x == 0.0 {
        return out.write_str("0");
    }
    if x.is_infinite() {
        return out.write_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if x < 0.0 {
        out.write_char('-')?;
    }
    // Rust's `{:e}` yields the shortest round-trip digits, as ECMAScript asks.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    if k <= n && n <= 21 {
        out.write_str(&digits)?;
        (0..n - k).try_for_each(|_| out.write_char('0'))
    } else if 0 < n && n <= 21 {
        // 0 < n < k here, so the split point is inside `digits`.
        let (int, frac) = digits.split_at(usize::try_from(n).unwrap_or(0));
        write!(out, "{int}.{frac}")
    } else if -6 < n && n <= 0 {
        out.write_str("0.")?;
        (0..-n).try_for_each(|_| out.write_char('0'))?;
        out.write_str(&digits)
    } else {
        let e = n - 1;
        let sign = if e >= 0 { '+' } else { '-' };
        let (first, rest) = digits.split_at(1);
        if rest.is_empty() {
            write!(out, "{first}e{sign}{}", e.abs())
        } else {
            write!(out, "{first}.{rest}e{sign}{}", e.abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(v: &Value) -> String {
        let mut s = String::new();
        write_value_string(v, &mut s).unwrap();
        s
    }

    fn js(json: serde_json::Value) -> String {
        let bytes = rmp_serde::to_vec_named(&json).unwrap();
        let mut s = String::new();
        write_value_string_bytes(&bytes, &mut s).unwrap();
        s
    }

    fn num(x: f64) -> String {
        let mut s = String::new();
        write_js_number(x, &mut s).unwrap();
        s
    }

    #[test]
    fn t10_scalars_are_string_of_v() {
        assert_eq!(vs(&Value::Nil), "null");
        assert_eq!(js(json!(true)), "true");
        assert_eq!(
            js(json!("hi \"there\"")),
            "hi \"there\"",
            "top-level strings are not quoted"
        );
        assert_eq!(js(json!(1)), "1");
        assert_eq!(
            js(json!("1")),
            "1",
            "String(1) and '1' collide, as in TypeScript"
        );
        assert_eq!(js(json!(-42)), "-42");
        assert_eq!(js(json!(1.5)), "1.5");
    }

    #[test]
    fn t11_numbers_follow_ecmascript_number_to_string() {
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(100.0), "100");
        assert_eq!(num(123.456), "123.456");
        assert_eq!(num(1e21), "1e+21");
        assert_eq!(num(1e20), "100000000000000000000");
        assert_eq!(num(1.5e-7), "1.5e-7");
        assert_eq!(num(0.000_001), "0.000001");
        assert_eq!(num(1.234e-5), "0.00001234");
        assert_eq!(num(5e-324), "5e-324");
        assert_eq!(num(1.797_693_134_862_315_7e308), "1.7976931348623157e+308");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(num(9_007_199_254_740_993.0), "9007199254740992");
        assert_eq!(vs(&Value::F32(0.5)), "0.5");
    }

    #[test]
    fn t12_maps_stringify_with_sorted_keys() {
        assert_eq!(
            js(json!({"b": 1, "a": "x", "c": null})),
            r#"{"a":"x","b":1,"c":null}"#
        );
        assert_eq!(js(json!({})), "{}");
        assert_eq!(js(json!([1, "a", null, true])), r#"[1,"a",null,true]"#);
        assert_eq!(js(json!([])), "[]");
        assert_eq!(
            js(json!({"s": "q\"\\\n\u{1}é"})),
            r#"{"s":"q\"\\\n\u0001é"}"#
        );
    }

    #[test]
    fn t13_the_whitelist_quirk_is_reproduced() {
        // Nested keys absent from the top level are dropped.
        assert_eq!(
            js(json!({"b": {"a": 1, "z": 2, "b": 3}, "a": 0})),
            r#"{"a":0,"b":{"a":1,"b":3}}"#
        );
        // Under a top-level array the list is its index strings.
        assert_eq!(
            js(json!([{"0": "x", "5": "y", "name": "n"}, [{"1": 2}]])),
            r#"[{"0":"x"},[{"1":2}]]"#
        );
        // Nested map keys come out in list (sorted) order.
        assert_eq!(
            js(json!({"k": {"k": 1, "a": 2}, "a": 9})),
            r#"{"a":9,"k":{"a":2,"k":1}}"#
        );
    }

    #[test]
    fn t14_non_json_values_have_a_documented_form() {
        assert_eq!(vs(&Value::Binary(vec![1, 2, 255])), "[1,2,255]");
        assert_eq!(vs(&Value::Ext(5, vec![0xab, 1])), r#""ext:5:ab01""#);
        assert_eq!(
            vs(&Value::Map(vec![(Value::from(1), Value::from("x"))])),
            r#"{"1":"x"}"#
        );
        let mut s = String::new();
        write_value_string_bytes(&[0x92, 0x01], &mut s).unwrap();
        assert_eq!(s, "raw:9201", "a truncated array is not a value");
        s.clear();
        write_value_string_bytes(&[0x01, 0x02], &mut s).unwrap();
        assert_eq!(s, "raw:0102", "trailing bytes are not one value");
    }

    #[test]
    fn t16_extension_0_is_javascript_undefined() {
        let undef = || Value::Ext(0, vec![0]);
        assert_eq!(vs(&undef()), "undefined");
        assert_eq!(vs(&Value::Array(vec![undef(), Value::from(1)])), "[null,1]");
        let m = Value::Map(vec![
            (Value::from("a"), Value::from(1)),
            (Value::from("b"), undef()),
        ]);
        assert_eq!(vs(&m), r#"{"a":1}"#, "undefined members are skipped");
    }

    #[test]
    fn t15_duplicate_map_keys_keep_the_last_value() {
        let v = Value::Map(vec![
            (Value::from("a"), Value::from(1)),
            (Value::from("a"), Value::from(2)),
        ]);
        assert_eq!(vs(&v), r#"{"a":2}"#);
    }
}
