//! [`Groups`]: the group rows of one grouped query, kept up to date one
//! changed record at a time.
//!
//! Each record the query's filter matches contributes to exactly one group
//! (its bucket); the record's contribution (bucket id plus the inputs of
//! every aggregation) is remembered by key, so a change subtracts the old
//! contribution and adds the new one: O(1) hash work, plus O(log n) in the
//! group's multiset for each `min` / `max` (deleting the current minimum
//! falls back to the next smallest value). Nothing is ever rescanned.
//!
//! Numbers: integers and finite floats are numeric; NaN and infinities are
//! not (they would make an incremental sum unrecoverable). Integer sums are
//! exact (128-bit); float parts are summed in f64 and reset to exactly 0
//! whenever the group holds no float, so a sum can differ from a fresh
//! summation only in the last bits of float arithmetic.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use hangar_core::module::storage_types::ChangeType;
use rmpv::Value;

use super::spec::{Func, GroupSpec};

/// A numeric value as it was stored (its type kept for `min` / `max`).
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    F32(f32),
    F64(f64),
}

impl Num {
    fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Integer(i) => i
                .as_i64()
                .map(i128::from)
                .or_else(|| i.as_u64().map(i128::from))
                .map(Self::Int),
            Value::F32(f) if f.is_finite() => Some(Self::F32(*f)),
            Value::F64(f) if f.is_finite() => Some(Self::F64(*f)),
            _ => None,
        }
    }

    #[allow(
        clippy::cast_precision_loss,
        reason = "ordering ints against floats by their nearest f64; ties fall back to exact order"
    )]
    fn approx(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::F32(f) => f64::from(f),
            Self::F64(f) => f,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Self::Int(_) => 0,
            Self::F32(_) => 1,
            Self::F64(_) => 2,
        }
    }

    fn value(self) -> Value {
        match self {
            Self::Int(i) => int_value(i),
            Self::F32(f) => Value::F32(f),
            Self::F64(f) => Value::F64(f),
        }
    }
}

fn int_value(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        Value::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Value::from(v)
    } else {
        #[allow(
            clippy::cast_precision_loss,
            reason = "a sum beyond the 64-bit range can only be reported as a float"
        )]
        Value::F64(i as f64)
    }
}

// Lexicographic on (nearest f64, type, exact integer): a total order in
// which integers compare exactly and floats numerically.
impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        if let (Self::Int(a), Self::Int(b)) = (self, other) {
            return a.cmp(b);
        }
        self.approx()
            .total_cmp(&other.approx())
            .then(self.tag().cmp(&other.tag()))
    }
}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Num {}

/// What one record gives one aggregation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    /// Nothing (not numeric / nil or missing).
    None,
    /// Present and not nil (for a `count` of a field).
    Present,
    /// A numeric value.
    Num(Num),
}

/// One record's share of its group.
#[derive(Debug, Clone, PartialEq)]
struct Contribution {
    bucket: String,
    inputs: Vec<Input>,
}

#[derive(Debug, Default, Clone)]
struct Sum {
    ints: i128,
    floats: f64,
    n_floats: u64,
    n: u64,
}

impl Sum {
    fn add(&mut self, x: Num, sign: i8) {
        let s = i128::from(sign);
        match x {
            Num::Int(i) => self.ints += s * i,
            Num::F32(_) | Num::F64(_) => {
                self.floats += f64::from(sign) * x.approx();
                if sign > 0 {
                    self.n_floats += 1;
                } else {
                    self.n_floats -= 1;
                }
                if self.n_floats == 0 {
                    self.floats = 0.0;
                }
            }
        }
        if sign > 0 {
            self.n += 1;
        } else {
            self.n -= 1;
        }
    }

    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "a float total is reported as f64; a whole one within i64 as an int"
    )]
    fn total(&self) -> Value {
        if self.n_floats == 0 {
            return int_value(self.ints);
        }
        let t = self.ints as f64 + self.floats;
        if t.fract() == 0.0 && t.abs() < 9.0e15 {
            Value::from(t as i64)
        } else {
            Value::F64(t)
        }
    }

    #[allow(clippy::cast_precision_loss, reason = "an average is a float")]
    fn avg(&self) -> Value {
        if self.n == 0 {
            return Value::Nil;
        }
        Value::F64((self.ints as f64 + self.floats) / self.n as f64)
    }
}

#[derive(Debug, Clone)]
enum State {
    Count(u64),
    Sum(Sum),
    Avg(Sum),
    Min(BTreeMap<Num, u32>),
    Max(BTreeMap<Num, u32>),
}

impl State {
    fn new(func: Func) -> Self {
        match func {
            Func::Count => Self::Count(0),
            Func::Sum => Self::Sum(Sum::default()),
            Func::Avg => Self::Avg(Sum::default()),
            Func::Min => Self::Min(BTreeMap::new()),
            Func::Max => Self::Max(BTreeMap::new()),
        }
    }

    fn apply(&mut self, input: Input, sign: i8) {
        match (self, input) {
            (_, Input::None) => {}
            (Self::Count(n), Input::Present | Input::Num(_)) => {
                if sign > 0 {
                    *n += 1;
                } else {
                    *n -= 1;
                }
            }
            (Self::Sum(s) | Self::Avg(s), Input::Num(x)) => s.add(x, sign),
            (Self::Min(set) | Self::Max(set), Input::Num(x)) => {
                if sign > 0 {
                    *set.entry(x).or_insert(0) += 1;
                } else if let Some(c) = set.get_mut(&x) {
                    *c -= 1;
                    if *c == 0 {
                        set.remove(&x);
                    }
                }
            }
            (_, Input::Present) => {}
        }
    }

    fn value(&self) -> Value {
        match self {
            Self::Count(n) => Value::from(*n),
            Self::Sum(s) => s.total(),
            Self::Avg(s) => s.avg(),
            Self::Min(set) => set.keys().next().map_or(Value::Nil, |n| n.value()),
            Self::Max(set) => set.keys().next_back().map_or(Value::Nil, |n| n.value()),
        }
    }
}

#[derive(Debug, Clone)]
struct Group {
    columns: Vec<Value>,
    count: u64,
    states: Vec<State>,
}

/// The live group rows of one grouped query.
///
/// Feed it the ungrouped query's changes with [`Groups::apply`]; read rows
/// with [`Groups::row`] / [`Groups::rows`]. A group row's key is its bucket
/// id (see [`bucket_id`]); its value is the map `{__key, __count,
/// __<func>_<field>..., <groupBy field>...}`.
#[derive(Debug, Clone)]
pub struct Groups {
    spec: GroupSpec,
    group_paths: Vec<Vec<String>>,
    agg_paths: Vec<Vec<String>>,
    records: HashMap<String, Contribution>,
    groups: BTreeMap<String, Group>,
}

fn path_of(field: &str) -> Vec<String> {
    field.split('.').map(str::to_string).collect()
}

fn lookup<'v>(mut v: &'v Value, path: &[String]) -> Option<&'v Value> {
    for seg in path {
        let Value::Map(entries) = v else {
            return None;
        };
        v = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(seg.as_str()))
            .map(|(_, v)| v)?;
    }
    Some(v)
}

/// The opaque bucket id of one typed value, appended to `out`: `N` for nil
/// or missing, `B0`/`B1` for booleans, `I<n>;` for integers, `F<f64 bits>;`
/// for floats, `S<len>:<s>` for strings (length in bytes) and, for any
/// other value (binary, array, map, extension), `V<len>:<hex of its
/// msgpack>`. So `"1"` and `1` fall in different groups, nil and missing in
/// the same.
pub fn bucket_id(out: &mut String, v: Option<&Value>) {
    match v {
        None | Some(Value::Nil) => out.push('N'),
        Some(Value::Boolean(b)) => out.push_str(if *b { "B1" } else { "B0" }),
        Some(Value::Integer(i)) => {
            let _ = write!(out, "I{i};");
        }
        Some(Value::F32(f)) => {
            let _ = write!(out, "F{};", f64::from(*f).to_bits());
        }
        Some(Value::F64(f)) => {
            let _ = write!(out, "F{};", f.to_bits());
        }
        Some(Value::String(s)) => {
            let bytes = s.as_bytes();
            let _ = write!(out, "S{}:", bytes.len());
            out.push_str(&String::from_utf8_lossy(bytes));
        }
        Some(other) => {
            let mut buf = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut buf, other);
            let _ = write!(out, "V{}:", buf.len() * 2);
            for b in buf {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
}

impl Groups {
    /// No rows yet, grouped by `spec`.
    #[must_use]
    pub fn new(spec: GroupSpec) -> Self {
        Self {
            group_paths: spec.group_by.iter().map(|f| path_of(f)).collect(),
            agg_paths: spec
                .aggregations
                .iter()
                .map(|a| path_of(a.field.as_deref().unwrap_or_default()))
                .collect(),
            spec,
            records: HashMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// How many groups there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when no record matches.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn contribution(&self, v: &Value) -> Contribution {
        let mut bucket = String::new();
        for p in &self.group_paths {
            bucket_id(&mut bucket, lookup(v, p));
        }
        let inputs = self
            .spec
            .aggregations
            .iter()
            .zip(&self.agg_paths)
            .map(|(a, p)| {
                let x = lookup(v, p);
                match a.func {
                    Func::Count => match x {
                        None | Some(Value::Nil) => Input::None,
                        Some(_) => Input::Present,
                    },
                    _ => x.and_then(Num::of).map_or(Input::None, Input::Num),
                }
            })
            .collect();
        Contribution { bucket, inputs }
    }

    /// Adds `c`; true when its group is new.
    fn add(&mut self, c: &Contribution, v: &Value) -> bool {
        let mut created = false;
        let g = self.groups.entry(c.bucket.clone()).or_insert_with(|| {
            created = true;
            Group {
                columns: self
                    .group_paths
                    .iter()
                    .map(|p| lookup(v, p).cloned().unwrap_or(Value::Nil))
                    .collect(),
                count: 0,
                states: self
                    .spec
                    .aggregations
                    .iter()
                    .map(|a| State::new(a.func))
                    .collect(),
            }
        });
        g.count += 1;
        for (s, i) in g.states.iter_mut().zip(&c.inputs) {
            s.apply(*i, 1);
        }
        created
    }

    /// Removes `c`; true when its group is now empty (and gone).
    fn subtract(&mut self, c: &Contribution) -> bool {
        let Some(g) = self.groups.get_mut(&c.bucket) else {
            return false;
        };
        g.count -= 1;
        if g.count == 0 {
            self.groups.remove(&c.bucket);
            return true;
        }
        for (s, i) in g.states.iter_mut().zip(&c.inputs) {
            s.apply(*i, -1);
        }
        false
    }

    /// Applies one change of the ungrouped query: `value` is the record's
    /// new value (`Some` on ENTER / UPDATE), or `None` when it left.
    /// Returns the group rows that changed: ENTER for a new group, UPDATE
    /// for a changed one, LEAVE for one that is now empty; at most two
    /// (the record's old and new group), none when no aggregate moved.
    pub fn apply(&mut self, key: &str, value: Option<&Value>) -> Vec<(String, ChangeType)> {
        let new = value.map(|v| self.contribution(v));
        let old = match &new {
            Some(n) => {
                if self.records.get(key) == Some(n) {
                    return Vec::new();
                }
                self.records.insert(key.to_string(), n.clone())
            }
            None => self.records.remove(key),
        };
        let mut out = Vec::with_capacity(2);
        // Add before subtracting, so a record moving within its group never
        // empties it on the way.
        let created = match (&new, value) {
            (Some(n), Some(v)) => self.add(n, v),
            _ => false,
        };
        let emptied = old.as_ref().is_some_and(|o| self.subtract(o));
        match (&old, &new) {
            (Some(o), Some(n)) if o.bucket == n.bucket => {
                out.push((n.bucket.clone(), ChangeType::Update));
            }
            _ => {
                if let Some(o) = old {
                    let change = if emptied {
                        ChangeType::Leave
                    } else {
                        ChangeType::Update
                    };
                    out.push((o.bucket, change));
                }
                if let Some(n) = new {
                    let change = if created {
                        ChangeType::Enter
                    } else {
                        ChangeType::Update
                    };
                    out.push((n.bucket, change));
                }
            }
        }
        out
    }

    /// The row of the group `bucket`, if it exists.
    #[must_use]
    pub fn row(&self, bucket: &str) -> Option<Value> {
        let g = self.groups.get(bucket)?;
        let mut m = Vec::with_capacity(2 + g.states.len() + g.columns.len());
        m.push((Value::from("__key"), Value::from(bucket)));
        m.push((Value::from("__count"), Value::from(g.count)));
        for (a, s) in self.spec.aggregations.iter().zip(&g.states) {
            m.push((Value::from(a.column.as_str()), s.value()));
        }
        for (f, c) in self.spec.group_by.iter().zip(&g.columns) {
            m.push((Value::from(f.as_str()), c.clone()));
        }
        Some(Value::Map(m))
    }

    /// Every group row, ordered by bucket id.
    #[must_use]
    pub fn rows(&self) -> Vec<(String, Value)> {
        self.groups
            .keys()
            .filter_map(|k| self.row(k).map(|v| (k.clone(), v)))
            .collect()
    }
}
