//! What the cluster licence costs the node that runs it: how long each
//! step holds the epoch state's lock (which the write path takes to count
//! every new OR tombstone), against the size of the unpruned backlog.
//!
//! For each backlog (keyed tombstones listed in closed epochs of 1,000,
//! one device that confirmed all of them), in memory, it times:
//! - `observe_tombstone`, the write path's cost per tombstone (listing
//!   and naming it), over the whole backlog;
//! - `licensed` (the proposal: [`MAX_ITEMS`] items), `licensed_among` (an
//!   acceptance of such a proposal) and `plan_commit` (a commit), each
//!   `REPEAT` times on the same backlog;
//! - `finish_commit` (unlisting [`MAX_ITEMS`] items), `REPEAT` times, each
//!   on a backlog smaller by the items before.
//!
//! p50 / p99 and the machine's conditions are printed. Run:
//! `cargo bench -p hangar-host --bench licence` (release).

mod common;

use std::time::{Duration, Instant};

use hangar_core::Timestamp;
use hangar_host::config::SyncConfig;
use hangar_host::server::epochs::licence::MAX_ITEMS;
use hangar_host::server::epochs::Epochs;

const BACKLOGS: [usize; 3] = [10_000, 100_000, 1_000_000];
const REPEAT: usize = 30;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn show(name: &str, mut v: Vec<Duration>) {
    let p50 = pct(&mut v, 0.50);
    let p99 = pct(&mut v, 0.99);
    println!(
        "  {name:<16} p50 {p50:>12.2?}  p99 {p99:>12.2?}  (n = {})",
        v.len()
    );
}

fn main() {
    println!(
        "{}; epochs of 1000, proposals of {MAX_ITEMS}",
        common::conditions("licence")
    );
    for backlog in BACKLOGS {
        let e = Epochs::open(
            SyncConfig {
                tombstone_epoch_width: 1_000,
                forget_after_epochs: u64::MAX,
                ..SyncConfig::default()
            },
            None,
        )
        .expect("in memory");
        let device = e.bind("", None).expect("randomness");
        let mut observe = Vec::with_capacity(backlog);
        for i in 0..backlog {
            let key = format!("key-{}", i % 50_000);
            let tag = format!("{}:0:client-{}", 1_700_000_000_000u64 + i as u64, i % 7);
            let t = Instant::now();
            e.observe_tombstone("todos", &key, &tag, || Timestamp::new(i as u64, 0, "n1"));
            observe.push(t.elapsed());
        }
        let current = e.current();
        e.apply_ack(&device.key, current, current);
        println!("backlog {backlog} tombstones ({current} closed epochs):");
        show("observe", observe);
        let (mut propose, mut accept, mut plan) = (vec![], vec![], vec![]);
        for _ in 0..REPEAT {
            let t = Instant::now();
            let items = e.licensed(MAX_ITEMS, |_| false);
            propose.push(t.elapsed());
            let t = Instant::now();
            let found = e.licensed_among(&items);
            accept.push(t.elapsed());
            assert_eq!(found.len(), items.len());
            let t = Instant::now();
            let p = e.plan_commit(&items);
            plan.push(t.elapsed());
            assert_eq!(p.items.len(), items.len());
        }
        show("licensed", propose);
        show("licensed_among", accept);
        show("plan_commit", plan);
        let mut finish = vec![];
        for round in 0..REPEAT as u64 {
            let items = e.licensed(MAX_ITEMS, |_| false);
            let p = e.plan_commit(&items);
            let t = Instant::now();
            e.finish_commit(&p, round + 1);
            finish.push(t.elapsed());
        }
        show("finish_commit", finish);
    }
}
