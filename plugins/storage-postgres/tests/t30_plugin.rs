//! The plugin's module in-process: the storage module suite over
//! PostgreSQL, its name for `/health`, and a start that fails with the
//! backend's message.

mod common;

use hangar_storage_postgres::{create_with_settings, PostgresSettings};
use hangar_tests::support::{embedded_storage_config, storage_deps};

/// The storage module suite over PostgreSQL, one test per case, each on a
/// schema of its own.
mod t10_storage_suite_in_process {
    hangar_testkit::storage_suite!(|c: hangar_core::config::StorageModuleConfig, d| {
        let s = crate::common::settings_for_dir(&c.data_dir);
        hangar_storage_postgres::create_with_settings(c, d, s)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_the_module_is_named_after_the_plugin_and_a_failed_start_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = create_with_settings(
        embedded_storage_config("n1", dir.path()),
        storage_deps("n1"),
        PostgresSettings {
            url: format!("postgres://u:secret@127.0.0.1:{port}/db"),
            connect_timeout_ms: 2_000,
            ..PostgresSettings::default()
        },
    )
    .unwrap();
    assert_eq!(m.info().name.as_str(), "hangar-storage-postgres");
    let e = m.start().await.unwrap_err().message.to_string();
    assert!(
        e.contains(&format!(
            "cannot reach PostgreSQL at postgres://u:***@127.0.0.1:{port}/db"
        )),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
}

#[test]
fn t21_bad_settings_are_refused_when_the_module_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let e = create_with_settings(
        embedded_storage_config("n1", dir.path()),
        storage_deps("n1"),
        PostgresSettings::default(),
    )
    .err()
    .expect("no URL is refused");
    assert!(
        e.message.contains("HANGAR_POSTGRES_URL or DATABASE_URL"),
        "{e:?}"
    );
}
