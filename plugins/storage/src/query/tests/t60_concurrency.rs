//! Registration is atomic with the snapshot: subscribing while a writer runs
//! misses nothing.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use rmpv::Value;
use serde_json::json;

use super::{q, v, Recorder};
use crate::query::{execute, ChangeType, Projection, QueryRegistry, Row};

#[test]
fn t60_subscribing_during_concurrent_writes_misses_no_change() {
    let reg = Arc::new(QueryRegistry::default());
    let store: Arc<RwLock<HashMap<String, Value>>> = Arc::new(RwLock::new(HashMap::new()));

    let writer = {
        let (reg, store) = (reg.clone(), store.clone());
        std::thread::spawn(move || {
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            for _ in 0..4_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = format!("k{}", x % 64);
                let new =
                    (x % 5 != 0).then(|| v(json!({"score": (x >> 8) % 100, "grp": (x >> 16) % 3})));
                // Apply, then notify (one writer: notifications are in apply order).
                let old = {
                    let mut s = store.write();
                    match &new {
                        Some(n) => s.insert(key.clone(), n.clone()),
                        None => s.remove(&key),
                    }
                };
                reg.on_change("m", &key, old.as_ref(), new.as_ref());
            }
        })
    };

    let queries = [
        q(json!({})),
        q(json!({"where": {"grp": 1}})),
        q(json!({"sort": [{"field": "score", "direction": "desc"}], "limit": 5})),
        q(
            json!({"predicate": {"op": "gt", "attribute": "score", "value": 50}, "sort": {"score": "asc"}, "limit": 3}),
        ),
    ];
    let mut clients = Vec::new();
    for i in 0..60 {
        let query = queries[i % queries.len()].clone();
        let rec = Recorder::new();
        // The snapshot is read under the store's read lock, held across the
        // call: no write can complete its apply-then-notify in between.
        let sub = {
            let s = store.read();
            reg.subscribe(
                "m",
                query.clone(),
                Projection::all(),
                rec.clone(),
                s.iter().map(|(k, v)| Row::live(k, v)),
                0,
            )
        };
        let held: HashMap<String, Value> = sub
            .page
            .rows
            .into_iter()
            .map(|r| (r.key.to_string(), r.value))
            .collect();
        clients.push((query, rec, held));
        std::thread::yield_now();
    }
    writer.join().unwrap();

    let data = store.read();
    for (query, rec, mut held) in clients {
        for (change, key, value) in rec.take() {
            match change {
                ChangeType::Enter | ChangeType::Update => {
                    held.insert(key, value.unwrap());
                }
                ChangeType::Leave => {
                    held.remove(&key);
                }
            }
        }
        let fresh = execute(
            &query,
            &Projection::all(),
            data.iter().map(|(k, v)| Row::live(k, v)),
            0,
        );
        let expected: HashMap<String, Value> = fresh
            .rows
            .into_iter()
            .map(|r| (r.key.to_string(), r.value))
            .collect();
        assert_eq!(held, expected);
    }
}
