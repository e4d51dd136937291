//! The conformance suite of `StorageModule`: every implementation, loaded or
//! in-process, must pass it. Each case gets a fresh, started module.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use hangar_core::module::accessor::ScanRequest;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{
    ApplyBatch, ChangeEvent, ChangeSink, OpStatus, Origin, OriginKind, RecordState, WriteOp,
};
use hangar_core::types::{KeyedOp, LwwRecord, MapOp, RawValue, Timestamp, WriteConcern};
use hangar_core::ErrorKind;
use parking_lot::Mutex;

/// Builds a fresh module for each case.
pub type Builder<'a> = &'a (dyn Fn() -> Arc<dyn StorageModule> + Send + Sync);
type Case = fn(Arc<dyn StorageModule>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// An LWW put (or remove, with `value == None`) of a JSON value.
#[must_use]
pub fn lww(
    map: &str,
    key: &str,
    value: Option<serde_json::Value>,
    millis: u64,
    node: &str,
) -> KeyedOp {
    KeyedOp {
        map: map.into(),
        key: key.into(),
        op: MapOp::Lww(LwwRecord {
            value: value
                .map(|v| RawValue::encode(&v).expect("json encodes"))
                .into(),
            timestamp: Timestamp::new(millis, 0, node),
            ttl_ms: ROption::RNone,
        }),
    }
}

/// A batch from client connection 7 at one write concern.
#[must_use]
pub fn batch(ops: Vec<KeyedOp>, concern: WriteConcern) -> ApplyBatch {
    ApplyBatch {
        ops: ops
            .into_iter()
            .map(|op| WriteOp {
                op,
                concern,
                timeout_ms: ROption::RSome(300),
            })
            .collect(),
        origin: Origin::client(7, "suite"),
    }
}

async fn read_one(m: &Arc<dyn StorageModule>, map: &str, key: &str) -> RecordState {
    let mut r = m
        .read(map.into(), RVec::from(vec![RString::from(key)]))
        .await
        .expect("read works");
    assert_eq!(r.len(), 1, "one record per key asked");
    r.remove(0).state
}

fn lww_value(s: &RecordState) -> Option<serde_json::Value> {
    match s {
        RecordState::Lww(r) => r.value.as_ref().into_option().map(|v| {
            let bytes = v.as_bytes();
            rmpv::decode::read_value(&mut &bytes[..])
                .map(|v| serde_json::to_value(v).expect("msgpack to json"))
                .expect("value decodes")
        }),
        other => panic!("expected an LWW record, got {other:?}"),
    }
}

fn t10_info_names_the_module(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let i = m.info();
        assert!(!i.name.is_empty(), "info.name");
        assert!(
            semver::Version::parse(&i.version).is_ok(),
            "info.version is semver: {i:?}"
        );
    })
}

fn t11_put_then_read(m: Arc<dyn StorageModule>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let out = m
            .apply(batch(
                vec![lww(
                    "users",
                    "u1",
                    Some(serde_json::json!({"name": "Ann"})),
                    10,
                    "c1",
                )],
                WriteConcern::Applied,
            ))
            .await
            .expect("apply");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, OpStatus::Applied);
        assert_ne!(out[0].ack, 0, "an applied op has an ack id");
        assert!(out[0].change.is_some(), "an applied op reports its change");
        let s = read_one(&m, "users", "u1").await;
        assert_eq!(lww_value(&s), Some(serde_json::json!({"name": "Ann"})));
        assert_eq!(read_one(&m, "users", "nobody").await, RecordState::Missing);
        assert_eq!(
            read_one(&m, "no-such-map", "u1").await,
            RecordState::Missing
        );
    })
}

fn t12_a_stale_op_never_overwrites_newer_data(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        m.apply(batch(
            vec![lww("m", "k", Some(serde_json::json!("new")), 200, "a")],
            WriteConcern::Applied,
        ))
        .await
        .expect("apply new");
        let out = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!("old")), 100, "a")],
                WriteConcern::Applied,
            ))
            .await
            .expect("apply old");
        assert_eq!(out[0].status, OpStatus::Unchanged);
        assert!(out[0].change.is_none());
        assert_eq!(
            lww_value(&read_one(&m, "m", "k").await),
            Some(serde_json::json!("new"))
        );
    })
}

fn t13_an_equal_timestamp_is_a_no_op_and_node_id_breaks_ties(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        m.apply(batch(
            vec![lww("m", "k", Some(serde_json::json!(1)), 100, "b")],
            WriteConcern::Applied,
        ))
        .await
        .expect("apply");
        let same = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!(2)), 100, "b")],
                WriteConcern::Applied,
            ))
            .await
            .expect("apply");
        assert_eq!(
            same[0].status,
            OpStatus::Unchanged,
            "equal timestamps: no-op"
        );
        let lower_node = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!(3)), 100, "a")],
                WriteConcern::Applied,
            ))
            .await
            .expect("apply");
        assert_eq!(lower_node[0].status, OpStatus::Unchanged, "node a < node b");
        let higher_node = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!(4)), 100, "c")],
                WriteConcern::Applied,
            ))
            .await
            .expect("apply");
        assert_eq!(higher_node[0].status, OpStatus::Applied, "node c > node b");
        assert_eq!(
            lww_value(&read_one(&m, "m", "k").await),
            Some(serde_json::json!(4))
        );
    })
}

fn t14_a_remove_leaves_a_tombstone(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        m.apply(batch(
            vec![
                lww("m", "k", Some(serde_json::json!(1)), 100, "a"),
                lww("m", "k", None, 101, "a"),
            ],
            WriteConcern::Applied,
        ))
        .await
        .expect("apply");
        let s = read_one(&m, "m", "k").await;
        assert!(
            matches!(&s, RecordState::Lww(r) if r.is_tombstone() && r.timestamp.millis == 101),
            "{s:?}"
        );
    })
}

fn t15_outcomes_come_back_in_batch_order(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let out = m
            .apply(batch(
                vec![
                    lww("m", "a", Some(serde_json::json!(1)), 100, "n"),
                    lww("m", "a", Some(serde_json::json!(0)), 50, "n"),
                    lww("m", "b", Some(serde_json::json!(2)), 100, "n"),
                ],
                WriteConcern::Memory,
            ))
            .await
            .expect("apply");
        let statuses: Vec<OpStatus> = out.iter().map(|o| o.status).collect();
        assert_eq!(
            statuses,
            [OpStatus::Applied, OpStatus::Unchanged, OpStatus::Applied]
        );
    })
}

fn t20_memory_and_applied_acks_succeed_without_waiting(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        for level in [
            WriteConcern::FireAndForget,
            WriteConcern::Memory,
            WriteConcern::Applied,
        ] {
            let out = m
                .apply(batch(
                    vec![lww(
                        "m",
                        "k",
                        Some(serde_json::json!(1)),
                        100 + level as u64,
                        "n",
                    )],
                    level,
                ))
                .await
                .expect("apply");
            let acks = m
                .await_acks(out.iter().map(|o| o.ack).collect())
                .await
                .expect("await");
            assert_eq!(acks.len(), 1);
            assert!(acks[0].success, "{level}: {:?}", acks[0]);
            assert!(acks[0].achieved >= level, "{level}: {:?}", acks[0]);
        }
    })
}

fn t21_replicated_is_reached_when_the_caller_reports_it(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let out = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!(1)), 100, "n")],
                WriteConcern::Replicated,
            ))
            .await
            .expect("apply");
        let ids: RVec<u64> = out.iter().map(|o| o.ack).collect();
        m.notify_acks(ids.clone(), WriteConcern::Replicated);
        let acks = m.await_acks(ids).await.expect("await");
        assert!(acks[0].success, "{:?}", acks[0]);
        assert_eq!(acks[0].achieved, WriteConcern::Replicated);
    })
}

fn t22_an_unmet_level_fails_with_the_highest_level_reached(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let out = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!(1)), 100, "n")],
                WriteConcern::Replicated,
            ))
            .await
            .expect("apply");
        // Nobody reports REPLICATED: the ack must end unsuccessful, with
        // APPLIED as the highest level reached (after its timeout at most).
        let acks = m
            .await_acks(out.iter().map(|o| o.ack).collect())
            .await
            .expect("await");
        assert!(!acks[0].success, "{:?}", acks[0]);
        assert_eq!(acks[0].achieved, WriteConcern::Applied);
        assert!(acks[0].error.is_some());
    })
}

#[derive(Default)]
struct Recorder(Mutex<Vec<ChangeEvent>>);

impl ChangeSink for Recorder {
    fn on_change(&self, event: &ChangeEvent) {
        self.0.lock().push(event.clone());
    }
}

fn t30_the_change_sink_sees_applied_changes_with_their_origin(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let rec = Arc::new(Recorder::default());
        m.set_change_sink(rec.clone());
        m.apply(batch(
            vec![
                lww("m", "k", Some(serde_json::json!("v2")), 200, "n"),
                lww("m", "k", Some(serde_json::json!("v1")), 100, "n"),
            ],
            WriteConcern::Applied,
        ))
        .await
        .expect("apply");
        let seen = rec.0.lock().clone();
        assert_eq!(
            seen.len(),
            1,
            "only the applied change, not the stale one: {seen:?}"
        );
        assert_eq!(seen[0].op.key.as_str(), "k");
        assert_eq!(seen[0].origin.kind, OriginKind::Client);
        assert_eq!(seen[0].origin.connection, 7);
    })
}

fn t40_the_accessor_applies_replicated_changes_and_scans_partitions(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let acc = m.accessor();
        let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
        let changes: RVec<KeyedOp> = keys
            .iter()
            .map(|k| lww("rep", k, Some(serde_json::json!(k)), 100, "peer"))
            .collect();
        let st = acc
            .apply_replicated(
                changes,
                Origin {
                    kind: OriginKind::Replication,
                    connection: 0,
                    node: "peer".into(),
                },
            )
            .await
            .expect("apply_replicated");
        assert!(st.iter().all(|s| *s == OpStatus::Applied));
        let p = hangar_core::partition_of("key-1");
        let expected: std::collections::BTreeSet<&str> = keys
            .iter()
            .filter(|k| hangar_core::partition_of(k) == p)
            .map(String::as_str)
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut after = ROption::RNone;
        loop {
            let page = acc
                .scan_partition(ScanRequest {
                    partition: p,
                    after: after.clone(),
                    limit: 1,
                })
                .await
                .expect("scan");
            for it in page.items.iter() {
                assert!(seen.insert(it.record.key.to_string()), "each key once");
            }
            match page.next {
                ROption::RSome(c) => after = ROption::RSome(c),
                ROption::RNone => break,
            }
        }
        let seen: std::collections::BTreeSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(seen, expected);
        let maps = m.list_maps().await.expect("list");
        assert!(
            maps.iter()
                .any(|mi| mi.name.as_str() == "rep" && mi.entries == 50),
            "{maps:?}"
        );
    })
}

fn t50_calls_after_shutdown_fail_with_shut_down(
    m: Arc<dyn StorageModule>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        m.shutdown().await.expect("shutdown");
        m.shutdown().await.expect("shutdown is idempotent");
        let e = m
            .apply(batch(
                vec![lww("m", "k", Some(serde_json::json!(1)), 1, "n")],
                WriteConcern::Memory,
            ))
            .await
            .expect_err("apply after shutdown");
        assert_eq!(e.kind, ErrorKind::SHUT_DOWN, "{e}");
    })
}

/// Every case, by name.
#[must_use]
pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        ("t10_info_names_the_module", t10_info_names_the_module),
        ("t11_put_then_read", t11_put_then_read),
        (
            "t12_a_stale_op_never_overwrites_newer_data",
            t12_a_stale_op_never_overwrites_newer_data,
        ),
        (
            "t13_an_equal_timestamp_is_a_no_op_and_node_id_breaks_ties",
            t13_an_equal_timestamp_is_a_no_op_and_node_id_breaks_ties,
        ),
        (
            "t14_a_remove_leaves_a_tombstone",
            t14_a_remove_leaves_a_tombstone,
        ),
        (
            "t15_outcomes_come_back_in_batch_order",
            t15_outcomes_come_back_in_batch_order,
        ),
        (
            "t20_memory_and_applied_acks_succeed_without_waiting",
            t20_memory_and_applied_acks_succeed_without_waiting,
        ),
        (
            "t21_replicated_is_reached_when_the_caller_reports_it",
            t21_replicated_is_reached_when_the_caller_reports_it,
        ),
        (
            "t22_an_unmet_level_fails_with_the_highest_level_reached",
            t22_an_unmet_level_fails_with_the_highest_level_reached,
        ),
        (
            "t30_the_change_sink_sees_applied_changes_with_their_origin",
            t30_the_change_sink_sees_applied_changes_with_their_origin,
        ),
        (
            "t40_the_accessor_applies_replicated_changes_and_scans_partitions",
            t40_the_accessor_applies_replicated_changes_and_scans_partitions,
        ),
        (
            "t50_calls_after_shutdown_fail_with_shut_down",
            t50_calls_after_shutdown_fail_with_shut_down,
        ),
    ]
}

/// Runs every case against fresh modules from `build`.
///
/// # Panics
/// On the first case that fails, naming it.
pub async fn run(label: &str, build: Builder<'_>) {
    for (name, case) in cases() {
        let m = build();
        m.start()
            .await
            .unwrap_or_else(|e| panic!("[{label}] {name}: start failed: {e}"));
        let r = tokio::spawn(case(m.clone())).await;
        let _ = m.shutdown().await;
        if let Err(e) = r {
            let msg = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                })
                .unwrap_or_default();
            panic!("[{label}] storage case {name} failed: {msg}");
        }
        eprintln!("[{label}] storage case {name}: ok");
    }
}
