//! Per-change cost of a grouped live query against an ungrouped one, on
//! the host side (where grouping happens: `host/src/server/grouped`).
//!
//! Both sinks get the same stream of row changes of one live query over
//! `RECORDS` records (`{status, team, score}`, `GROUPS` teams; 10% of the
//! changes delete a record, which comes back later as ENTER): the
//! ungrouped one is the front end's `UpdateSink` (one `QUERY_UPDATE` frame
//! per change), the grouped one a `GroupedSink` grouping by `team` with
//! `sum`, `avg`, `min` and `max` of `score` (decodes the value, updates at
//! most two groups, encodes their rows). The storage module's side (the
//! filter, the change fan-out) is the same for both: the grouped query
//! subscribes the ungrouped one. Each delivery is timed on its own;
//! p50 / p99 / p99.9 and the machine conditions are printed.
//!
//! Run: `cargo bench -p hangar-host --bench grouped_query` (release), or
//! with `--profile dev` for a debug build (say which in any report).

mod common;

use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{ROption, RString};
use hangar_core::module::storage_types::{ChangeType, QueryRow, QuerySink, QueryUpdate};
use hangar_core::RawValue;
use hangar_host::metrics::Registry;
use hangar_host::server::grouped::{split, GroupedSink, Groups};
use hangar_host::server::handlers::UpdateSink;
use hangar_host::server::outbound::{Out, Outbound};
use hdrhistogram::Histogram;
use rmpv::Value;

const RECORDS: usize = 100_000;
const GROUPS: u64 = 100;
const CHANGES: usize = 200_000;
const WARMUP: usize = 20_000;

/// xorshift64*: a fixed, dependency-free stream of choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn record(rng: &mut Rng) -> RawValue {
    let team = rng.next() % GROUPS;
    let score = i64::try_from(rng.next() % 10_000).expect("small") - 5_000;
    let v = Value::Map(vec![
        (Value::from("status"), Value::from("open")),
        (Value::from("team"), Value::from(format!("team-{team}"))),
        (Value::from("score"), Value::from(score)),
    ]);
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &v).expect("Vec write");
    RawValue::from_msgpack(buf)
}

/// The change stream: (key, change, value), the same for both sinks.
fn changes(rng: &mut Rng) -> Vec<QueryUpdate> {
    let mut present = vec![true; RECORDS];
    (0..WARMUP + CHANGES)
        .map(|_| {
            let i = usize::try_from(rng.next() % RECORDS as u64).expect("small");
            let key = RString::from(format!("k{i}"));
            let (change, value) = if !present[i] {
                present[i] = true;
                (ChangeType::Enter, ROption::RSome(record(rng)))
            } else if rng.next() % 10 == 0 {
                present[i] = false;
                (ChangeType::Leave, ROption::RNone)
            } else {
                (ChangeType::Update, ROption::RSome(record(rng)))
            };
            QueryUpdate {
                subscription: 1,
                key,
                value,
                change,
            }
        })
        .collect()
}

fn drain(rx: &mut tokio::sync::mpsc::Receiver<Out>, out: &Outbound) -> usize {
    let mut frames = 0;
    while let Ok(o) = rx.try_recv() {
        if let Out::Frame(f) = o {
            out.taken(f.len());
            frames += 1;
        }
    }
    frames
}

fn run(
    name: &str,
    sink: &dyn QuerySink,
    updates: &[QueryUpdate],
    rx: &mut tokio::sync::mpsc::Receiver<Out>,
    out: &Outbound,
) {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut frames = 0;
    for (n, u) in updates.iter().enumerate() {
        let t = Instant::now();
        sink.deliver(u);
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if n >= WARMUP {
            h.record(ns.max(1)).expect("in range");
        }
        if n % 1024 == 0 {
            frames += drain(rx, out);
        }
    }
    frames += drain(rx, out);
    println!(
        "{name:<10} per change: p50 {:>7} ns  p99 {:>7} ns  p99.9 {:>7} ns  mean {:>9.0} ns  ({} changes timed, {frames} frames sent)",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.mean(),
        h.len(),
    );
}

fn main() {
    println!(
        "{}; {RECORDS} records in {GROUPS} groups, {CHANGES} changes (10% deletes)",
        common::conditions("grouped_query")
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let snapshot: Vec<QueryRow> = (0..RECORDS)
        .map(|i| QueryRow {
            key: format!("k{i}").into(),
            value: record(&mut rng),
        })
        .collect();
    let updates = changes(&mut rng);
    let cap = 1 << 16;

    let (out, mut rx, _kill) = Outbound::new(1, cap, usize::MAX / 4, Arc::new(Registry::default()));
    let plain = UpdateSink::new(out.clone(), "q".into(), cap);
    plain.go_live();
    run("ungrouped", &plain, &updates, &mut rx, &out);

    let query = rmpv::ext::to_value(serde_json::json!({
        "where": {"status": "open"},
        "groupBy": ["team"],
        "aggregations": [
            {"func": "sum", "field": "score"}, {"func": "avg", "field": "score"},
            {"func": "min", "field": "score"}, {"func": "max", "field": "score"}]
    }))
    .expect("query");
    let spec = split(&query).expect("valid").group.expect("grouped");
    let (out, mut rx, _kill) = Outbound::new(2, cap, usize::MAX / 4, Arc::new(Registry::default()));
    let grouped = GroupedSink::new(out.clone(), "q".into(), Groups::new(spec), cap);
    let t = Instant::now();
    let rows = grouped.load(&snapshot);
    println!(
        "grouped    snapshot of {RECORDS} records into {} group rows: {:.1} ms",
        rows.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    grouped.go_live();
    run("grouped", &grouped, &updates, &mut rx, &out);
}
