//! A failed commit: its writes fail their PERSISTED acks, later writes are
//! refused while the failed ones wait to be committed again, reads keep
//! working, and the module takes writes again by itself once a commit
//! succeeds, with the failed writes durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::{ErrorKind, WriteConcern};
use hangar_storage::persistence::testing::FailureStyle;
use hangar_storage::persistence::{MemoryStore, PersistenceBackend};
use hangar_storage::STORE_FAILED;

use super::support::{apply, config, module_on, put, read, Metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_after_a_commit_failure_writes_are_refused_until_a_commit_succeeds_again() {
    let metrics = Arc::new(Metrics::default());
    let (m, inst) = module_on(&MemoryStore::new(), config(), metrics.clone());
    m.start().await.unwrap();
    let first = apply(&m, vec![put("m", "ok", 1, 10)], WriteConcern::Persisted).await;
    m.notify_acks(vec![first[0].ack].into(), WriteConcern::Replicated);
    assert!(m.await_acks(vec![first[0].ack].into()).await.unwrap()[0].success);
    inst.fail_commits_after(0, FailureStyle::BeforeWrite);
    let out = apply(&m, vec![put("m", "k", 2, 11)], WriteConcern::Persisted).await;
    assert_eq!(out[0].status, OpStatus::Applied, "applied in memory");
    m.notify_acks(vec![out[0].ack].into(), WriteConcern::Replicated);
    let ack = m.await_acks(vec![out[0].ack].into()).await.unwrap();
    assert!(!ack[0].success);
    let msg = ack[0].error.as_ref().into_option().unwrap().to_string();
    assert!(msg.contains("Persistence failed"), "{msg}");
    let later = apply(&m, vec![put("m", "z", 3, 12)], WriteConcern::Memory).await;
    assert_eq!(later[0].status, OpStatus::Rejected);
    let e = later[0].error.as_ref().into_option().unwrap();
    assert_eq!(e.kind, ErrorKind::STORAGE);
    assert!(
        e.message.contains("injected") && e.message.contains("commits the failed writes again"),
        "{e}"
    );
    assert!(
        matches!(read(&m, "m", "ok").await, RecordState::Lww(_)),
        "reads work"
    );
    let gauge = || metrics.named(STORE_FAILED).last().map(|(_, v)| *v);
    assert_eq!(gauge(), Some(1.0), "the store reports failed");

    // The backend is back: the module commits the failed write by itself
    // and takes writes again.
    inst.heal();
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        let out = apply(&m, vec![put("m", "z", 3, 12)], WriteConcern::Persisted).await;
        if out[0].status == OpStatus::Applied {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "writes are still refused: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    m.notify_acks(vec![again[0].ack].into(), WriteConcern::Replicated);
    assert!(m.await_acks(vec![again[0].ack].into()).await.unwrap()[0].success);
    assert_eq!(gauge(), Some(0.0), "the store reports ok again");
    assert_eq!(
        inst.list_keys("m").await.unwrap(),
        ["k", "ok", "z"],
        "the write whose ack failed is durable now, as memory said"
    );
    let _ = m.shutdown().await;
}
