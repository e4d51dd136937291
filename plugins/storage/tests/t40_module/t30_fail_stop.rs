//! Fail-stop persistence: after a commit failure writes are refused and
//! reads keep working.

use std::sync::Arc;

use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::{OpStatus, RecordState};
use hangar_core::{ErrorKind, WriteConcern};
use hangar_storage::persistence::testing::FailureStyle;
use hangar_storage::persistence::MemoryStore;

use super::support::{apply, config, module_on, put, read};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_after_a_commit_failure_writes_are_refused_and_reads_keep_working() {
    let (m, inst) = module_on(&MemoryStore::new(), config(), Arc::default());
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
    assert!(e.message.contains("restart"), "{e}");
    assert!(
        matches!(read(&m, "m", "ok").await, RecordState::Lww(_)),
        "reads work"
    );
    let _ = m.shutdown().await;
}
