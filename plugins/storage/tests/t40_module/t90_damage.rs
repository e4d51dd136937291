//! A damaged embedded store: refused at start with what is wrong and what
//! to do; started empty only on purpose (the damaged file kept aside); and
//! damage met at run time fails the store visibly (`hangar_storage_failed`)
//! with a clear error per call, never a panic.

use std::path::Path;
use std::sync::Arc;

use abi_stable::std_types::RString;
use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::module::storage::StorageModule;
use hangar_core::{ErrorKind, WriteConcern};
use hangar_storage::persistence::{PersistenceBackend, RedbBackend, RedbOptions, DB_FILE_NAME};
use hangar_storage::{DefaultStorage, STORE_FAILED};

use super::support::{apply, deps, put, Metrics, NODE};

fn embedded(dir: &Path) -> StorageModuleConfig {
    StorageModuleConfig {
        write_ack_timeout_ms: 500,
        // No event journal: its rows repeat the keys, and t92 finds the
        // page to damage by a key's bytes, which must be an entries page.
        ..StorageModuleConfig::new(
            NODE,
            dir,
            PluginSettings::default()
                .with("backend", "embedded")
                .with("journal_capacity", 0),
        )
    }
}

async fn filled(dir: &Path, n: usize) {
    let m = DefaultStorage::new(embedded(dir), deps(Arc::default())).unwrap();
    m.start().await.unwrap();
    let ops = (0..n)
        .map(|i| put("m", &format!("key-{i:05}"), i as i64, 10))
        .collect();
    apply(&m, ops, WriteConcern::Persisted).await;
    m.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_a_damaged_store_refuses_the_start_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE_NAME), b"").unwrap();
    let m = DefaultStorage::new(embedded(dir.path()), deps(Arc::default())).unwrap();
    let e = m.start().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::STORAGE, "{e}");
    for part in [
        "storage.start",
        "hangar.redb is damaged",
        "empty (0 bytes)",
        "Restore the file from a backup",
        "reset_damaged_store",
    ] {
        assert!(e.message.contains(part), "{part:?} missing from: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_reset_damaged_store_starts_empty_and_keeps_the_damaged_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 100).await;
    let file = dir.path().join(DB_FILE_NAME);
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let m = DefaultStorage::new(embedded(dir.path()), deps(Arc::default())).unwrap();
    assert!(m.start().await.is_err(), "refused without the setting");
    let mut config = embedded(dir.path());
    config.settings = config.settings.with("reset_damaged_store", true);
    let m = DefaultStorage::new(config, deps(Arc::default())).unwrap();
    m.start().await.unwrap();
    assert!(m.list_maps().await.unwrap().is_empty());
    m.shutdown().await.unwrap();
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("hangar.redb.damaged-")
        })
        .map(|e| e.metadata().unwrap().len())
        .collect::<Vec<_>>();
    assert_eq!(aside, vec![len / 2], "the damaged file is kept, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_damage_met_at_run_time_fails_the_store_visibly_without_a_panic_per_call() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 2_000).await;
    let metrics = Arc::new(Metrics::default());
    let data_dir = dir.path().to_path_buf();
    // no page cache to speak of, so that reads after the open go to the file
    let m = DefaultStorage::with_backend(
        embedded(dir.path()),
        deps(metrics.clone()),
        "redb without cache",
        Arc::new(move |_| {
            let opts = RedbOptions {
                cache_size_bytes: Some(0),
                ..RedbOptions::default()
            };
            Ok(Arc::new(RedbBackend::open_with(&data_dir, &opts)?) as Arc<dyn PersistenceBackend>)
        }),
    )
    .unwrap();
    m.start().await.unwrap();
    assert_eq!(metrics.named(STORE_FAILED).last().map(|s| s.1), Some(0.0));
    // a page of the entries table goes bad while the node runs
    let file = dir.path().join(DB_FILE_NAME);
    let bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"key-01500")
        .expect("the key is stored") as u64
        & !4095;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[0xa5; 4096]).unwrap();
    }
    let read = || m.read("m".into(), vec![RString::from("key-01500")].into());
    let e = read().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::STORAGE, "{e}");
    assert!(e.message.contains("is damaged"), "{e}");
    assert_eq!(
        metrics.named(STORE_FAILED).last().map(|s| s.1),
        Some(1.0),
        "the store is reported failed"
    );
    // every later use answers the same clear error (redb is not touched again)
    let again = read().await.unwrap_err();
    assert!(again.message.contains("is damaged"), "{again}");
    let _ = m.shutdown().await;
}
