//! Basics: writes and reads, the LWW rules, map kinds, refused names.

use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::types::WriteConcern;
use hangar_core::ErrorKind;
use serde_json::json;

use super::helpers::{apply, lww, lww_value, or_add, read_one};
use super::Ctx;

pub(super) async fn t10_info_names_the_module(cx: Ctx) {
    let i = cx.m().info();
    assert!(!i.name.is_empty(), "info.name");
    assert!(
        semver::Version::parse(&i.version).is_ok(),
        "info.version is semver: {i:?}"
    );
}

pub(super) async fn t11_put_then_read(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![lww("users", "u1", Some(json!({"name": "Ann"})), 10, "c1")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, OpStatus::Applied);
    assert_ne!(out[0].ack, 0, "an applied op has an ack id");
    assert!(out[0].change.is_some(), "an applied op reports its change");
    let s = read_one(&m, "users", "u1").await;
    assert_eq!(lww_value(&s), Some(json!({"name": "Ann"})));
    assert_eq!(read_one(&m, "users", "nobody").await, RecordState::Missing);
    assert_eq!(
        read_one(&m, "no-such-map", "u1").await,
        RecordState::Missing
    );
}

pub(super) async fn t12_a_stale_op_never_overwrites_newer_data(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww("m", "k", Some(json!("new")), 200, "a")],
        WriteConcern::Applied,
    )
    .await;
    let out = apply(
        &m,
        vec![lww("m", "k", Some(json!("old")), 100, "a")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Unchanged);
    assert!(out[0].change.is_none());
    assert_eq!(lww_value(&read_one(&m, "m", "k").await), Some(json!("new")));
}

pub(super) async fn t13_an_equal_timestamp_is_a_no_op_and_node_id_breaks_ties(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww("m", "k", Some(json!(1)), 100, "b")],
        WriteConcern::Applied,
    )
    .await;
    let same = apply(
        &m,
        vec![lww("m", "k", Some(json!(2)), 100, "b")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(
        same[0].status,
        OpStatus::Unchanged,
        "equal timestamps: no-op"
    );
    let lower = apply(
        &m,
        vec![lww("m", "k", Some(json!(3)), 100, "a")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(lower[0].status, OpStatus::Unchanged, "node a < node b");
    let higher = apply(
        &m,
        vec![lww("m", "k", Some(json!(4)), 100, "c")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(higher[0].status, OpStatus::Applied, "node c > node b");
    assert_eq!(lww_value(&read_one(&m, "m", "k").await), Some(json!(4)));
}

pub(super) async fn t14_a_remove_leaves_a_tombstone(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![
            lww("m", "k", Some(json!(1)), 100, "a"),
            lww("m", "k", None, 101, "a"),
        ],
        WriteConcern::Applied,
    )
    .await;
    let s = read_one(&m, "m", "k").await;
    assert!(
        matches!(&s, RecordState::Lww(r) if r.is_tombstone() && r.timestamp.millis == 101),
        "{s:?}"
    );
    // A later value resurrects the key.
    apply(
        &m,
        vec![lww("m", "k", Some(json!(2)), 102, "a")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(lww_value(&read_one(&m, "m", "k").await), Some(json!(2)));
}

pub(super) async fn t15_outcomes_come_back_in_batch_order(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![
            lww("m", "a", Some(json!(1)), 100, "n"),
            lww("other", "x", Some(json!(9)), 100, "n"),
            lww("m", "a", Some(json!(0)), 50, "n"),
            lww("m", "b", Some(json!(2)), 100, "n"),
        ],
        WriteConcern::Memory,
    )
    .await;
    let statuses: Vec<OpStatus> = out.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            OpStatus::Applied,
            OpStatus::Applied,
            OpStatus::Unchanged,
            OpStatus::Applied
        ]
    );
}

pub(super) async fn t16_an_op_of_the_other_kind_is_a_conflict_naming_both_kinds(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww("lwwmap", "k", Some(json!(1)), 100, "n")],
        WriteConcern::Applied,
    )
    .await;
    apply(
        &m,
        vec![or_add("ormap", "k", json!(1), 100, 0, "n")],
        WriteConcern::Applied,
    )
    .await;
    let out = apply(
        &m,
        vec![
            or_add("lwwmap", "k", json!(2), 101, 0, "n"),
            lww("ormap", "k", Some(json!(2)), 101, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    for (o, (have, want)) in out.iter().zip([("LWW", "OR"), ("OR", "LWW")]) {
        assert_eq!(o.status, OpStatus::Rejected, "{o:?}");
        assert_eq!(o.ack, 0, "a rejected op has no ack");
        let e = o
            .error
            .as_ref()
            .into_option()
            .expect("a rejection says why");
        assert_eq!(e.kind, ErrorKind::CONFLICT, "{e}");
        assert!(
            e.message.contains(have) && e.message.contains(want),
            "names both kinds: {e}"
        );
    }
    assert_eq!(
        lww_value(&read_one(&m, "lwwmap", "k").await),
        Some(json!(1))
    );
}

pub(super) async fn t17_unstorable_names_are_rejected_and_the_rest_applies(cx: Ctx) {
    let m = cx.m();
    let out = apply(
        &m,
        vec![
            lww("", "k", Some(json!(1)), 100, "n"),
            lww("m", "bad\0key", Some(json!(1)), 100, "n"),
            lww("m", "good", Some(json!(1)), 100, "n"),
        ],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Rejected);
    assert_eq!(out[1].status, OpStatus::Rejected);
    for o in &out[..2] {
        let e = o.error.as_ref().into_option().unwrap();
        assert_eq!(e.kind, ErrorKind::INVALID_INPUT, "{e}");
    }
    assert_eq!(out[2].status, OpStatus::Applied);
}
