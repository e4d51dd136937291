//! The PN counter CRDT behind `COUNTER_*`: per-writer increments and
//! per-writer decrements, merged by taking each writer's maximum.
//!
//! Every writer (a client's node id) only ever raises its own two totals,
//! so the maximum of two copies is the later one, and merging is
//! commutative, associative and idempotent: replicas that have seen the
//! same updates hold the same state in any order, any number of times.
//! The value is Σ increments − Σ decrements.
//!
//! # Wire form
//!
//! `{p: {writer: total}, n: {writer: total}}` (the schema's spelling) or
//! `{positive: {…}, negative: {…}}` (what the TopGun client sends and
//! reads). Both are accepted, and a state that carries both has both
//! merged; [`PnCounter::to_wire`] writes both, so either reader finds its
//! keys. Totals are float64 on the wire (whole numbers may come as ints).

use std::collections::BTreeMap;

use rmpv::Value;

/// Most writers one side of a counter may hold; a state with more is
/// refused (hostile input is bounded before it is kept).
pub const MAX_WRITERS: usize = 4096;

/// A PN counter's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PnCounter {
    /// Writer → its total of increments.
    pub p: BTreeMap<String, f64>,
    /// Writer → its total of decrements.
    pub n: BTreeMap<String, f64>,
}

/// Why a wire state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PN counter state: {0}")]
pub struct StateError(pub String);

impl PnCounter {
    /// Σ increments − Σ decrements.
    #[must_use]
    pub fn value(&self) -> f64 {
        self.p.values().sum::<f64>() - self.n.values().sum::<f64>()
    }

    /// Merges `other` into `self` (each writer's maximum, per side).
    /// Returns true when `self` changed.
    pub fn merge(&mut self, other: &PnCounter) -> bool {
        let a = merge_side(&mut self.p, &other.p);
        let b = merge_side(&mut self.n, &other.n);
        a || b
    }

    /// Number of writers over both sides.
    #[must_use]
    pub fn writers(&self) -> usize {
        self.p.len().max(self.n.len())
    }

    /// Reads a wire state (see the module docs).
    ///
    /// # Errors
    /// When it is not a map, a side is not a map of string to number, a
    /// total is negative or not finite, or a side has more than
    /// [`MAX_WRITERS`] writers.
    pub fn from_wire(v: &Value) -> Result<Self, StateError> {
        let Value::Map(entries) = v else {
            return Err(StateError(format!(
                "expected a map {{p, n}} or {{positive, negative}}, found {}",
                kind(v)
            )));
        };
        let mut out = PnCounter::default();
        for (k, side) in entries {
            let into = match k.as_str() {
                Some("p" | "positive") => &mut out.p,
                Some("n" | "negative") => &mut out.n,
                _ => continue,
            };
            let name = k.as_str().unwrap_or_default();
            let parsed = side_from_wire(name, side)?;
            merge_side(into, &parsed);
        }
        Ok(out)
    }

    /// The wire form: both spellings, totals as float64.
    #[must_use]
    pub fn to_wire(&self) -> Value {
        let side = |m: &BTreeMap<String, f64>| {
            Value::Map(
                m.iter()
                    .map(|(k, v)| (Value::from(k.as_str()), Value::F64(*v)))
                    .collect(),
            )
        };
        Value::Map(vec![
            (Value::from("p"), side(&self.p)),
            (Value::from("n"), side(&self.n)),
            (Value::from("positive"), side(&self.p)),
            (Value::from("negative"), side(&self.n)),
        ])
    }
}

fn merge_side(into: &mut BTreeMap<String, f64>, from: &BTreeMap<String, f64>) -> bool {
    let mut changed = false;
    for (k, &v) in from {
        match into.get_mut(k) {
            Some(have) if *have >= v => {}
            Some(have) => {
                *have = v;
                changed = true;
            }
            None => {
                into.insert(k.clone(), v);
                changed = true;
            }
        }
    }
    changed
}

fn side_from_wire(name: &str, v: &Value) -> Result<BTreeMap<String, f64>, StateError> {
    let Value::Map(entries) = v else {
        return Err(StateError(format!(
            "`{name}` must be a map of writer id to total, found {}",
            kind(v)
        )));
    };
    if entries.len() > MAX_WRITERS {
        return Err(StateError(format!(
            "`{name}` has {} writers; at most {MAX_WRITERS} are kept",
            entries.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, total) in entries {
        let Some(writer) = k.as_str() else {
            return Err(StateError(format!(
                "`{name}` keys must be writer ids (strings), found {}",
                kind(k)
            )));
        };
        let t = match total {
            Value::F64(f) => *f,
            Value::F32(f) => f64::from(*f),
            Value::Integer(i) => i.as_f64().unwrap_or(f64::NAN),
            other => {
                return Err(StateError(format!(
                    "`{name}.{writer}` must be a number, found {}",
                    kind(other)
                )))
            }
        };
        if !t.is_finite() || t < 0.0 {
            return Err(StateError(format!(
                "`{name}.{writer}` is {t}; totals are finite and not negative"
            )));
        }
        let e = out.entry(writer.to_string()).or_insert(t);
        *e = e.max(t);
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an extension value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(p: &[(&str, f64)], n: &[(&str, f64)]) -> PnCounter {
        PnCounter {
            p: p.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            n: n.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        }
    }

    #[test]
    fn t10_value_is_increments_minus_decrements_and_merge_keeps_each_writers_maximum() {
        let mut a = state(&[("x", 3.0), ("y", 1.0)], &[("x", 1.0)]);
        let b = state(&[("x", 2.0), ("z", 4.0)], &[("x", 2.0)]);
        assert!(a.merge(&b));
        assert_eq!(
            a,
            state(&[("x", 3.0), ("y", 1.0), ("z", 4.0)], &[("x", 2.0)])
        );
        assert!((a.value() - 6.0).abs() < 1e-9);
        assert!(!a.merge(&b), "merging again changes nothing");
    }

    #[test]
    fn t11_both_spellings_are_read_and_both_are_written() {
        let client = rmpv::ext::to_value(serde_json::json!({
            "positive": {"c1": 5, "c2": 1.5}, "negative": {"c1": 2}
        }))
        .unwrap();
        let schema = rmpv::ext::to_value(serde_json::json!({
            "p": {"c1": 4, "c3": 1}, "n": {}
        }))
        .unwrap();
        let a = PnCounter::from_wire(&client).unwrap();
        let b = PnCounter::from_wire(&schema).unwrap();
        assert!((a.value() - 4.5).abs() < 1e-9);
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(
            m,
            state(&[("c1", 5.0), ("c2", 1.5), ("c3", 1.0)], &[("c1", 2.0)])
        );
        let wire = m.to_wire();
        let keys: Vec<&str> = wire
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["p", "n", "positive", "negative"]);
        assert_eq!(PnCounter::from_wire(&wire).unwrap(), m, "round trip");
    }

    #[test]
    fn t12_malformed_states_are_refused_with_the_reason() {
        let bad = |j: serde_json::Value| {
            PnCounter::from_wire(&rmpv::ext::to_value(j).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(bad(serde_json::json!([1])).contains("expected a map"));
        assert!(bad(serde_json::json!({"p": 3})).contains("`p` must be a map"));
        assert!(bad(serde_json::json!({"p": {"a": "x"}})).contains("must be a number"));
        assert!(bad(serde_json::json!({"n": {"a": -1}})).contains("not negative"));
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_WRITERS)
            .map(|i| (format!("w{i}"), serde_json::json!(1)))
            .collect();
        assert!(bad(serde_json::json!({ "p": many })).contains("writers"));
    }

    fn arb_counter() -> impl Strategy<Value = PnCounter> {
        let side = proptest::collection::btree_map("[a-e]", 0u32..1000, 0..5).prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, f64::from(v)))
                .collect::<BTreeMap<String, f64>>()
        });
        (side.clone(), side).prop_map(|(p, n)| PnCounter { p, n })
    }

    fn merged(a: &PnCounter, b: &PnCounter) -> PnCounter {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    proptest! {
        #[test]
        fn t20_merge_is_commutative(a in arb_counter(), b in arb_counter()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn t21_merge_is_associative(a in arb_counter(), b in arb_counter(), c in arb_counter()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn t22_merge_is_idempotent(a in arb_counter(), b in arb_counter()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
        }

        #[test]
        fn t23_merge_never_loses_an_update_and_the_wire_form_round_trips(a in arb_counter(), b in arb_counter()) {
            let m = merged(&a, &b);
            for (k, v) in a.p.iter().chain(b.p.iter()) {
                prop_assert!(m.p[k] >= *v);
            }
            prop_assert_eq!(PnCounter::from_wire(&m.to_wire()).unwrap(), m);
        }
    }
}
