//! The PostgreSQL backend beyond the shared contract: restart restores OR
//! tombstones exactly, the schema's columns and indexes, migrations, each
//! start-up failure's own message, a database restart while writing, and
//! metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::contract::{lww, or_record};
use common::{admin, open, Recorder};
use hangar_core::{partition_of, MapKind};
use hangar_storage::persistence::{PersistenceBackend, StoredEntry, WriteBatch};
use hangar_storage_postgres::test_server::PgTestServer;
use hangar_storage_postgres::{PostgresBackend, PostgresSettings};

fn settings_with_url(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_string(),
        connect_timeout_ms: 3_000,
        ..PostgresSettings::default()
    }
}

async fn open_err(settings: PostgresSettings) -> String {
    match PostgresBackend::connect(settings, Arc::new(hangar_core::module::services::NoMetrics))
        .await
    {
        Ok(_) => panic!("the open must fail"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_restart_restores_entries_records_and_tombstones_exactly() {
    let s = PgTestServer::shared().fresh_settings();
    let or_entry = StoredEntry::Or {
        records: vec![or_record("x", 5, None), or_record("y", 6, Some(60_000))],
    };
    {
        let b = open(&s).await;
        b.commit(
            WriteBatch::new()
                .put("lww", "a", lww(Some(1), 10, Some(5_000)))
                .put("lww", "dead", lww(None, 11, None))
                .put("tags", "k", or_entry.clone())
                .add_or_tombstone("tags", "3:0:n")
                .add_or_tombstone("tags", "1:0:n")
                .add_or_tombstone("tags", "2:0:n"),
        )
        .await
        .unwrap();
        b.commit(WriteBatch::new().remove_or_tombstone("tags", "2:0:n"))
            .await
            .unwrap();
        // Dropped without close, as a killed process would leave it.
        drop(b);
    }
    let b = open(&s).await;
    let lww_map = b.load_map("lww").await.unwrap();
    assert_eq!(lww_map.kind, Some(MapKind::Lww));
    assert_eq!(
        lww_map.entries,
        vec![
            ("a".to_string(), lww(Some(1), 10, Some(5_000))),
            ("dead".to_string(), lww(None, 11, None)),
        ]
    );
    let tags = b.load_map("tags").await.unwrap();
    assert_eq!(tags.kind, Some(MapKind::Or));
    assert_eq!(tags.entries, vec![("k".to_string(), or_entry)]);
    assert_eq!(tags.or_tombstones, ["1:0:n", "3:0:n"]);
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_rows_carry_partition_and_hlc_and_partitions_are_an_index_range() {
    let server = PgTestServer::shared();
    let s = server.fresh_settings();
    let b = open(&s).await;
    b.commit(
        WriteBatch::new()
            .put("m", "alpha", lww(Some(1), 1234, None))
            .put("m", "beta", lww(Some(2), 99, None)),
    )
    .await
    .unwrap();
    let c = admin(server.url()).await;
    let rows = c
        .query(
            &format!(
                "SELECT key, partition_id, hlc_millis, hlc_counter, hlc_node FROM \"{}\".hangar_entries ORDER BY key",
                s.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, i64, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "alpha".into(),
                partition_of("alpha") as i32,
                1234,
                0,
                "node-a".into()
            ),
            (
                "beta".into(),
                partition_of("beta") as i32,
                99,
                0,
                "node-a".into()
            ),
        ]
    );
    let versions: Vec<i32> = c
        .query(
            &format!("SELECT version FROM \"{}\".hangar_migrations", s.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1]);
    // Loading some partitions of one map is a scan of the partition index.
    c.batch_execute("SET enable_seqscan = off").await.unwrap();
    let plan: Vec<String> = c
        .query(
            &format!(
                "EXPLAIN SELECT key FROM \"{}\".hangar_entries WHERE map_name = 'm' AND partition_id = ANY('{{1,2}}')",
                s.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("hangar_entries_by_partition")),
        "{plan:#?}"
    );
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_a_schema_from_a_newer_version_is_refused_unchanged() {
    let server = PgTestServer::shared();
    let s = server.fresh_settings();
    open(&s).await.close().await.unwrap();
    let c = admin(server.url()).await;
    c.execute(
        &format!(
            "INSERT INTO \"{}\".hangar_migrations (version, description) VALUES (7, 'future')",
            s.schema
        ),
        &[],
    )
    .await
    .unwrap();
    let e = open_err(s.clone()).await;
    assert!(
        e.contains("is at version 7, newer than the 1 this plugin knows"),
        "{e}"
    );
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".hangar_migrations", s.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_start_up_failures_each_have_their_own_message_without_the_password() {
    let server = PgTestServer::shared();
    let url = server.url();
    let (_, rest) = url.split_once('@').unwrap();
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    // Nothing listens: a port taken from a socket we close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = open_err(settings_with_url(&format!(
        "postgres://postgres:{password}@127.0.0.1:{port}/postgres"
    )))
    .await;
    assert!(
        e.contains("cannot reach PostgreSQL at postgres://postgres:***@127.0.0.1:"),
        "{e}"
    );
    assert!(
        e.contains("refused") || e.contains("error connecting"),
        "the cause: {e}"
    );
    assert!(!e.contains(password), "{e}");
    let e = open_err(settings_with_url(&format!(
        "postgres://postgres:wrong@{rest}"
    )))
    .await;
    assert!(
        e.contains("refused the credentials of user \"postgres\""),
        "{e}"
    );
    assert!(!e.contains(":wrong@"), "{e}");
    let host = rest.rsplit_once('/').unwrap().0;
    let e = open_err(settings_with_url(&format!(
        "postgres://postgres:{password}@{host}/no_such_db"
    )))
    .await;
    assert!(
        e.contains("the database \"no_such_db\" does not exist"),
        "{e}"
    );
    assert!(!e.contains(password), "{e}");
    let e = open_err(settings_with_url("mysql://x")).await;
    assert!(e.contains("is not a PostgreSQL connection URL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_database_restart_while_writing_is_retried_and_nothing_is_lost() {
    // A server of its own: this test stops it.
    let server = PgTestServer::start();
    let s = PostgresSettings {
        retry_ms: 20_000,
        ..server.fresh_settings()
    };
    let metrics = Arc::new(Recorder::default());
    let b = Arc::new(
        PostgresBackend::connect(s.clone(), metrics.clone())
            .await
            .unwrap(),
    );
    b.commit(WriteBatch::new().put("m", "before", lww(Some(1), 1, None)))
        .await
        .unwrap();
    server.halt();
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            b.commit(WriteBatch::new().put("m", "during", lww(Some(2), 2, None)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A later batch on the same key waits for the one being retried, so
    // the later value wins whichever attempt reaches the server first.
    let later = {
        let b = b.clone();
        tokio::spawn(async move {
            b.commit(WriteBatch::new().put("m", "during", lww(Some(20), 3, None)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!writer.is_finished(), "the commit waits for the database");
    // One outage, reported once (not at every retry of every call).
    let reachable = |m: &Recorder| -> Vec<f64> {
        m.named("hangar_postgres_reachable")
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(
        reachable(&metrics),
        [1.0, 0.0],
        "connected, then one outage"
    );
    server.resume();
    writer
        .await
        .unwrap()
        .expect("the commit lands once the database is back");
    assert_eq!(reachable(&metrics), [1.0, 0.0, 1.0], "and its end");
    later
        .await
        .unwrap()
        .expect("the later commit lands after it");
    assert_eq!(b.list_keys("m").await.unwrap(), ["before", "during"]);
    assert_eq!(
        b.load_keys("m", &["during".to_string()]).await.unwrap()[0].1,
        lww(Some(20), 3, None)
    );
    assert!(
        !metrics.named("hangar_postgres_retries_total").is_empty(),
        "retries are counted"
    );

    // A short window: the commit fails with a clear reason, and the
    // backend recovers by itself once the database is back.
    let short = PostgresBackend::connect(
        PostgresSettings {
            retry_ms: 600,
            ..s.clone()
        },
        metrics.clone(),
    )
    .await
    .unwrap();
    server.halt();
    let e = short
        .commit(WriteBatch::new().put("m", "lost", lww(Some(3), 3, None)))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unreachable; gave up retrying"),
        "{e}"
    );
    // It names the setting that bounds the retries.
    assert!(e.to_string().contains("(retry_ms = 600)"), "{e}");
    server.resume();
    short
        .commit(WriteBatch::new().put("m", "after", lww(Some(4), 4, None)))
        .await
        .expect("the backend recovers by itself");
    assert_eq!(
        short.list_keys("m").await.unwrap(),
        ["after", "before", "during"]
    );
    assert!(!metrics.named("hangar_postgres_errors_total").is_empty());
    server.destroy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_commit_latency_and_pool_use_are_reported() {
    let s = PgTestServer::shared().fresh_settings();
    let metrics = Arc::new(Recorder::default());
    let b = PostgresBackend::connect(s, metrics.clone()).await.unwrap();
    b.commit(WriteBatch::new().put("m", "k", lww(Some(1), 1, None)))
        .await
        .unwrap();
    let commits = metrics.named("hangar_postgres_commit_seconds");
    assert_eq!(commits.len(), 1, "{commits:?}");
    assert!(commits[0].1 > 0.0);
    let max = metrics.named("hangar_postgres_pool_max");
    assert_eq!(max.last().unwrap().1, 4.0);
    let states: Vec<String> = metrics
        .named("hangar_postgres_pool_connections")
        .iter()
        .map(|(l, _)| l[0].1.clone())
        .collect();
    assert!(states.contains(&"in_use".to_string()) && states.contains(&"idle".to_string()));
    b.close().await.unwrap();
}
