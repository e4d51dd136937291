//! Helpers shared by this crate's test files.

#![allow(dead_code, reason = "each test file uses a different part")]

pub mod contract;

use std::sync::Arc;

use futures::future::BoxFuture;
use hangar_core::module::services::{MetricSample, MetricsSink, NoMetrics};
use hangar_storage::persistence::PersistenceBackend;
use hangar_storage_postgres::test_server::PgTestServer;
use hangar_storage_postgres::{PostgresBackend, PostgresSettings};
use parking_lot::Mutex;

/// Opens a backend, panicking with the open error.
pub async fn open(settings: &PostgresSettings) -> PostgresBackend {
    PostgresBackend::connect(settings.clone(), Arc::new(NoMetrics))
        .await
        .unwrap_or_else(|e| panic!("the backend opens: {e}"))
}

/// A client on the test server's `postgres` database, for inspecting
/// tables and changing them behind the backend's back.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the admin connection opens");
    tokio::spawn(conn);
    client
}

/// The contract suite's harness: a store is a fresh schema on the shared
/// test server.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgHarness;

impl contract::SuiteHarness for PgHarness {
    type Store = PostgresSettings;

    fn new_store(&self) -> PostgresSettings {
        PgTestServer::shared().fresh_settings()
    }

    fn open<'a>(
        &'a self,
        store: &'a PostgresSettings,
    ) -> BoxFuture<'a, Arc<dyn PersistenceBackend>> {
        Box::pin(async move {
            let b: Arc<dyn PersistenceBackend> = Arc::new(
                PostgresBackend::connect(store.clone(), Arc::new(NoMetrics))
                    .await
                    .unwrap_or_else(|e| panic!("the backend opens: {e}")),
            );
            b
        })
    }
}

/// Label pairs of one sample.
pub type Labels = Vec<(String, String)>;

/// A metrics sink that keeps every sample's name, labels and value.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<(String, Labels, f64)>>);

impl MetricsSink for Recorder {
    fn record(&self, s: MetricSample<'_>) {
        self.0.lock().push((
            s.name.to_string(),
            s.labels
                .iter()
                .map(|t| (t.0.to_string(), t.1.to_string()))
                .collect(),
            s.value,
        ));
    }
}

impl Recorder {
    /// The samples named `name`.
    pub fn named(&self, name: &str) -> Vec<(Labels, f64)> {
        self.0
            .lock()
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }
}

/// Settings for the storage module suite: one schema per data directory,
/// so a case that restarts its module over the same directory finds its
/// data again, and every case starts empty.
///
/// The schema is also written into the directory ([`SCHEMA_MARKER`]): a
/// case that copies a data directory to simulate a crash
/// (`t86_a_persisted_ack_means_the_write_survives_a_crash`) copies the
/// marker with it, so the module on the copy opens the same schema and
/// sees exactly what PostgreSQL committed, as a restart after a crash
/// would.
pub fn settings_for_dir(dir: &std::path::Path) -> PostgresSettings {
    static BY_DIR: Mutex<Vec<(std::path::PathBuf, PostgresSettings)>> = Mutex::new(Vec::new());
    let mut all = BY_DIR.lock();
    if let Some((_, s)) = all.iter().find(|(d, _)| d == dir) {
        return s.clone();
    }
    let marker = dir.join(SCHEMA_MARKER);
    let s = match std::fs::read_to_string(&marker) {
        Ok(schema) => PostgresSettings {
            schema,
            ..PgTestServer::shared().fresh_settings()
        },
        Err(_) => {
            let s = PgTestServer::shared().fresh_settings();
            std::fs::create_dir_all(dir).expect("the data directory can be created");
            std::fs::write(&marker, &s.schema).expect("the schema marker can be written");
            s
        }
    };
    all.push((dir.to_path_buf(), s.clone()));
    s
}

/// The file in a suite case's data directory that names its schema.
pub const SCHEMA_MARKER: &str = "pg-test-schema";
