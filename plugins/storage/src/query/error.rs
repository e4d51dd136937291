//! [`QueryError`]: why a client's query object was refused.
//!
//! Every variant names *where* in the query the problem sits (`at`, a path
//! such as `predicate.children[1].value`) and what was expected, so a client
//! developer can fix the query from the message alone. A refused query is
//! never turned into a silent non-match.

/// A query that cannot be run, with the place and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A value has the wrong msgpack type.
    #[error("invalid query at `{at}`: expected {expected}, found {found}")]
    WrongType {
        /// Where in the query.
        at: String,
        /// What the engine accepts there.
        expected: &'static str,
        /// A short description of what the client sent.
        found: String,
    },
    /// An operator name the engine does not know.
    #[error("invalid query at `{at}`: unknown operator {op:?}; expected one of {expected}")]
    UnknownOperator {
        /// Where in the query.
        at: String,
        /// The operator as sent.
        op: String,
        /// The operators accepted at that place.
        expected: &'static str,
    },
    /// A required member is absent.
    #[error("invalid query at `{at}`: missing `{member}`")]
    Missing {
        /// Where in the query.
        at: String,
        /// The member that must be present.
        member: &'static str,
    },
    /// A `regex` or `like` pattern that does not compile, or compiles too big.
    #[error("invalid query at `{at}`: bad pattern {pattern:?}: {reason}")]
    BadPattern {
        /// Where in the query.
        at: String,
        /// The pattern as sent (truncated to 200 characters).
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
    /// A feature the live-query engine deliberately does not implement.
    #[error("invalid query at `{at}`: {feature} is not supported here ({hint})")]
    Unsupported {
        /// Where in the query.
        at: String,
        /// The feature.
        feature: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// The query exceeds a size bound (nesting depth, node count, list length).
    #[error("invalid query: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// The bound in force.
        limit: usize,
    },
    /// A value has the right type but an unusable content.
    #[error("invalid query at `{at}`: {problem}")]
    Invalid {
        /// Where in the query.
        at: String,
        /// What is wrong, and what is expected.
        problem: String,
    },
}

/// Short human description of a value for error messages: its type and, for
/// scalars, the value itself (truncated).
pub(crate) fn describe(v: &rmpv::Value) -> String {
    use rmpv::Value as V;
    let s = match v {
        V::Nil => "nil".to_string(),
        V::Boolean(b) => format!("boolean {b}"),
        V::Integer(i) => format!("integer {i}"),
        V::F32(f) => format!("float {f}"),
        V::F64(f) => format!("float {f}"),
        V::String(s) => match s.as_str() {
            Some(s) => format!("string {:?}", truncate(s, 60)),
            None => "invalid UTF-8 string".to_string(),
        },
        V::Binary(b) => format!("binary ({} bytes)", b.len()),
        V::Array(a) => format!("array of {} items", a.len()),
        V::Map(m) => format!("map of {} entries", m.len()),
        V::Ext(t, b) => format!("ext type {t} ({} bytes)", b.len()),
    };
    s
}

/// `s` cut to at most `max` characters, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}
