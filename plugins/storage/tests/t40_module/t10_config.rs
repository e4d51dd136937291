//! Configuration errors, and what the memory backend keeps across a
//! restart of the module.

use std::sync::Arc;

use hangar_core::config::PluginSettings;
use hangar_core::module::storage::StorageModule;
use hangar_core::module::storage_types::RecordState;
use hangar_core::{ErrorKind, WriteConcern};
use hangar_storage::persistence::MemoryStore;
use hangar_storage::settings::{FullTextSettings, StorageSettings};
use hangar_storage::DefaultStorage;

use super::support::{apply, config, deps, put, read, restarted, started};

#[tokio::test]
async fn t10_a_bad_full_text_config_is_a_config_error_naming_the_map_and_field() {
    let mut c = config();
    let mut s = StorageSettings::memory();
    s.full_text_search.insert(
        "docs".into(),
        FullTextSettings {
            fields: vec!["title".into(), "".into()],
            ..FullTextSettings::default()
        },
    );
    c.settings = PluginSettings::of(&s);
    let e = DefaultStorage::new(c, deps(Arc::default()))
        .err()
        .expect("refused");
    assert_eq!(e.kind, ErrorKind::CONFIG);
    assert!(
        e.message.contains("docs") && e.message.contains("fields[1]"),
        "{e}"
    );
    let mut c = config();
    c.node_id = "a:b".into();
    let e = DefaultStorage::new(c, deps(Arc::default()))
        .err()
        .expect("refused");
    assert_eq!(e.kind, ErrorKind::CONFIG);
}

#[tokio::test]
async fn t11_the_memory_backend_keeps_maps_across_a_module_restart_in_the_process() {
    let store = MemoryStore::new();
    let m = started(&store).await;
    let out = apply(&m, vec![put("m", "k", 1, 10)], WriteConcern::Persisted).await;
    m.notify_acks(vec![out[0].ack].into(), WriteConcern::Replicated);
    let acks = m.await_acks(vec![out[0].ack].into()).await.unwrap();
    assert!(
        acks[0].success,
        "PERSISTED = committed to the memory store: {:?}",
        acks[0]
    );
    let m = restarted(m, &store).await;
    assert!(matches!(read(&m, "m", "k").await, RecordState::Lww(r) if r.timestamp.millis == 10));
    m.shutdown().await.unwrap();
}
