//! Legacy defects that must stay fixed.

use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::types::{MapKind, WriteConcern};
use serde_json::json;

use super::helpers::{apply, lww, lww_value, or_add, read_one};
use super::Ctx;

pub(super) async fn t90_a_stale_op_never_overwrites_newer_data_on_disk(cx: Ctx) {
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
    let m = cx.restart().await;
    assert_eq!(lww_value(&read_one(&m, "m", "k").await), Some(json!("new")));
}

pub(super) async fn t91_a_stale_op_before_the_load_never_reaches_the_disk(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![lww("m", "k", Some(json!("new")), 200, "a")],
        WriteConcern::Applied,
    )
    .await;
    let m = cx.restart().await;
    // The first use of the map after the restart is this stale write.
    let out = apply(
        &m,
        vec![lww("m", "k", Some(json!("old")), 100, "a")],
        WriteConcern::Applied,
    )
    .await;
    assert_eq!(out[0].status, OpStatus::Unchanged);
    let m = cx.restart().await;
    assert_eq!(lww_value(&read_one(&m, "m", "k").await), Some(json!("new")));
}

pub(super) async fn t92_writes_before_a_load_keep_the_maps_kind_and_records(cx: Ctx) {
    let m = cx.m();
    apply(
        &m,
        vec![or_add("o", "k", json!(1), 100, 0, "n")],
        WriteConcern::Applied,
    )
    .await;
    let m = cx.restart().await;
    // The first use is a write to the same key: the stored record must not
    // be replaced by a row holding only the new one (the legacy map swap).
    apply(
        &m,
        vec![or_add("o", "k", json!(2), 101, 0, "n")],
        WriteConcern::Applied,
    )
    .await;
    let m = cx.restart().await;
    match read_one(&m, "o", "k").await {
        RecordState::Or(recs) => assert_eq!(recs.len(), 2, "both records kept"),
        other => panic!("{other:?}"),
    }
    assert_ne!(m.merkle_root("o".into(), MapKind::Or).await.unwrap(), 0);
}
