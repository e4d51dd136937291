//! [`PostgresBackend`]: a `PersistenceBackend` over PostgreSQL
//! (tokio-postgres with a deadpool connection pool). Tables and migrations
//! are in [`crate::schema`], row encoding in [`crate::rows`].
//!
//! # Commits
//!
//! A batch is one transaction. Its ops are first reduced to the last op per
//! slot (the contract's "last op wins"), then written with one statement per
//! kind of change (new catalog rows, entry upserts, entry deletes,
//! tombstone adds and removes), each over `UNNEST` arrays. `commit` returns
//! after `COMMIT` returned; the connection runs with
//! `synchronous_commit=on`, so the commit is flushed to the server's WAL.
//! Batching many writes into one transaction is the module's group
//! committer's work (`hangar_storage::persistence::GroupCommitter`).
//!
//! # A database that goes away
//!
//! A call that fails because the connection is gone or the server refuses
//! connections (restarting) is retried on a fresh connection every
//! [`RETRY_PAUSE`] until `retry_ms` (setting) has passed; then it fails with
//! [`PersistenceError::Storage`] naming the cause. Retrying a batch is safe
//! even when the first attempt's `COMMIT` may have reached the server: a
//! batch reduced to one op per slot gives the same rows applied once or
//! twice, and commits are serialised, so no later batch sits between the
//! two attempts. The cached catalog is reloaded after any failed commit.
//!
//! # Metrics (through the module's `MetricsSink`)
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `hangar_postgres_commit_seconds` | histogram | | one committed transaction, retries included |
//! | `hangar_postgres_errors_total` | counter | `op` | failed attempts of a call (each retry counts) |
//! | `hangar_postgres_retries_total` | counter | `op` | attempts retried after a connection error |
//! | `hangar_postgres_pool_connections` | gauge | `state` (`in_use`, `idle`) | pool connections after each call |
//! | `hangar_postgres_pool_max` | gauge | | the pool's size limit |

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use hangar_core::module::services::{MetricsExt, MetricsSink};
use hangar_core::MapKind;
use hangar_storage::persistence::{
    plan_kinds, LoadedMap, PersistResult, PersistenceBackend, PersistenceError, StoreOp,
    StoredEntry, StoredMap, WriteBatch,
};
use tokio::runtime::Handle;
use tokio::sync::{Mutex, RwLock};
use tokio_postgres::NoTls;

use crate::errors::{chain, describe_connect_error, is_transient, is_transient_pool};
use crate::rows;
use crate::schema;
use crate::settings::PostgresSettings;
use crate::sql::{PutColumns, Sql};

/// Pause between two attempts of a call while the database is unreachable.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why an attempt failed: passing connection trouble, or for good.
enum Attempt {
    Transient(String),
    Fatal(PersistenceError),
}

impl From<PoolError> for Attempt {
    fn from(e: PoolError) -> Self {
        if is_transient_pool(&e) {
            Attempt::Transient(chain(&e))
        } else {
            Attempt::Fatal(PersistenceError::storage("connect", chain(&e)))
        }
    }
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_transient(&e) {
            Attempt::Transient(chain(&e))
        } else {
            Attempt::Fatal(PersistenceError::storage("sql", chain(&e)))
        }
    }
}

impl From<PersistenceError> for Attempt {
    fn from(e: PersistenceError) -> Self {
        Attempt::Fatal(e)
    }
}

/// The catalog as this backend last read or wrote it.
struct Catalog {
    kinds: HashMap<String, MapKind>,
    /// Set after a failed commit (its fate is unknown): reload before the
    /// next plan.
    stale: bool,
}

struct Inner {
    /// `None` once closed. Calls hold the read lock for their whole run, so
    /// `close` (write lock) waits for calls in progress.
    pool: Arc<RwLock<Option<Pool>>>,
    /// The catalog as of the last commit.
    catalog: Mutex<Catalog>,
    /// Held by a commit (and `flush`) for its whole run, retries included,
    /// so that no other batch commits between two attempts of one batch.
    serial: Arc<Mutex<()>>,
    sql: Sql,
    settings: PostgresSettings,
    metrics: Arc<dyn MetricsSink>,
    /// A call found the database unreachable and no call has succeeded
    /// since: the outage is logged when it starts and when it ends, not at
    /// every retry.
    outage: AtomicBool,
}

/// The PostgreSQL backend. Cheap to share behind an `Arc`; every call runs
/// on the runtime that was current when it was opened.
pub struct PostgresBackend {
    inner: Arc<Inner>,
    runtime: Handle,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("url", &self.inner.settings.redacted_url())
            .field("schema", &self.inner.settings.schema)
            .finish_non_exhaustive()
    }
}

fn open_err(message: String) -> PersistenceError {
    PersistenceError::Storage {
        op: "open",
        message,
    }
}

impl PostgresBackend {
    /// Connects, creates or migrates the schema and reads the catalog.
    /// MUST be called inside a tokio runtime (it is kept for every call).
    ///
    /// # Errors
    /// [`PersistenceError::Storage`] with `op = "open"` and a message that
    /// names the URL (password redacted) and the cause: unreachable server,
    /// refused credentials, missing database, a schema from a newer
    /// plugin, invalid URL.
    pub async fn connect(
        settings: PostgresSettings,
        metrics: Arc<dyn MetricsSink>,
    ) -> PersistResult<Self> {
        settings.check().map_err(|e| open_err(e.to_string()))?;
        let url = settings.redacted_url();
        let mut pg: tokio_postgres::Config = settings.url().parse().map_err(|e| {
            open_err(format!(
                "{url} is not a PostgreSQL connection URL: {}; expected e.g. \
                 postgres://user:password@127.0.0.1:5432/database",
                chain(&e)
            ))
        })?;
        pg.connect_timeout(settings.connect_timeout());
        let options = match pg.get_options() {
            Some(o) => format!("{o} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_string(),
        };
        pg.options(options);
        let user = pg.get_user().unwrap_or("(default)").to_string();
        let database = pg
            .get_dbname()
            .map_or_else(|| user.clone(), ToString::to_string);
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(settings.connect_timeout()))
            .wait_timeout(Some(settings.connect_timeout() + settings.retry_window()))
            .build()
            .map_err(|e| open_err(format!("cannot build the connection pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| open_err(describe_connect_error(&e, &url, &user, &database)))?;
        let before = schema::migrate(&mut client, &settings.schema)
            .await
            .map_err(|e| open_err(format!("PostgreSQL at {url}: {}", chain(&e))))?;
        drop(client);
        let sql = Sql::new(&settings.schema);
        let inner = Arc::new(Inner {
            pool: Arc::new(RwLock::new(Some(pool.clone()))),
            catalog: Mutex::new(Catalog {
                kinds: HashMap::new(),
                stale: true,
            }),
            serial: Arc::new(Mutex::new(())),
            sql,
            settings,
            metrics,
            outage: AtomicBool::new(false),
        });
        inner.metrics.gauge("hangar_postgres_reachable", &[], 1.0);
        let kinds = inner.read_catalog(&pool).await.map_err(|e| match e {
            Attempt::Transient(m) => open_err(format!("PostgreSQL at {url}: {m}")),
            Attempt::Fatal(e) => e,
        })?;
        *inner.catalog.lock().await = Catalog {
            kinds: kinds.into_iter().map(|m| (m.name, m.kind)).collect(),
            stale: false,
        };
        tracing::info!(
            url = %url,
            schema = %inner.settings.schema,
            schema_version_before = before,
            schema_version = schema::LATEST_VERSION,
            "PostgreSQL backend open"
        );
        inner.report_pool(&pool);
        Ok(Self {
            inner,
            runtime: Handle::current(),
        })
    }

    /// [`Self::connect`] for a synchronous caller on a thread that may
    /// block (the storage module calls its backend opener on the blocking
    /// pool): runs it on the current runtime.
    ///
    /// # Errors
    /// As [`Self::connect`]; also when no tokio runtime is current.
    pub fn open_blocking(
        settings: PostgresSettings,
        metrics: Arc<dyn MetricsSink>,
    ) -> PersistResult<Self> {
        let handle = Handle::try_current()
            .map_err(|e| open_err(format!("the PostgreSQL backend needs a tokio runtime: {e}")))?;
        handle.block_on(Self::connect(settings, metrics))
    }

    /// The settings it was opened with.
    #[must_use]
    pub fn settings(&self) -> &PostgresSettings {
        &self.inner.settings
    }

    /// Runs `call` with a pool on the backend's runtime, retrying passing
    /// connection trouble within the retry window. `commit` and `flush`
    /// hold the commit lock for the whole run.
    fn run<T, F, Fut>(&self, op: &'static str, call: F) -> BoxFuture<'static, PersistResult<T>>
    where
        T: Send + 'static,
        F: Fn(Arc<Inner>, Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Attempt>> + Send + 'static,
    {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move {
            let guard = inner.pool.clone().read_owned().await;
            let pool = guard.as_ref().ok_or(PersistenceError::Closed)?.clone();
            let _serial = match op {
                "commit" | "flush" => Some(inner.serial.clone().lock_owned().await),
                _ => None,
            };
            let started = Instant::now();
            let deadline = started + inner.settings.retry_window();
            loop {
                let result = call(inner.clone(), pool.clone()).await;
                inner.report_pool(&pool);
                match result {
                    Ok(v) => {
                        inner.reachable(op);
                        if op == "commit" {
                            inner.metrics.observe(
                                "hangar_postgres_commit_seconds",
                                &[],
                                started.elapsed().as_secs_f64(),
                            );
                        }
                        return Ok(v);
                    }
                    Err(Attempt::Fatal(e)) => {
                        inner
                            .metrics
                            .counter("hangar_postgres_errors_total", &[("op", op)], 1.0);
                        return Err(e);
                    }
                    Err(Attempt::Transient(cause)) => {
                        inner
                            .metrics
                            .counter("hangar_postgres_errors_total", &[("op", op)], 1.0);
                        if Instant::now() + RETRY_PAUSE >= deadline {
                            return Err(PersistenceError::storage(
                                op,
                                format!(
                                    "PostgreSQL at {} unreachable; gave up retrying after {} ms \
                                     (retry_ms = {}): {cause}",
                                    inner.settings.redacted_url(),
                                    started.elapsed().as_millis(),
                                    inner.settings.retry_ms
                                ),
                            ));
                        }
                        inner.unreachable(op, &cause);
                        inner
                            .metrics
                            .counter("hangar_postgres_retries_total", &[("op", op)], 1.0);
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        });
        Box::pin(async move {
            task.await.map_err(|e| {
                PersistenceError::storage("task", format!("the call's task failed: {e}"))
            })?
        })
    }
}

impl Inner {
    /// A call failed for want of the database: the first such failure
    /// since the last success starts an outage (logged at warn, the
    /// `hangar_postgres_reachable` gauge goes to 0); later ones are
    /// debug-level.
    fn unreachable(&self, op: &str, cause: &str) {
        if self.outage.swap(true, Ordering::AcqRel) {
            tracing::debug!(op, %cause, "PostgreSQL still unreachable; retrying on a new connection");
            return;
        }
        self.metrics.gauge("hangar_postgres_reachable", &[], 0.0);
        tracing::warn!(
            op,
            %cause,
            retry_ms = self.settings.retry_ms,
            "PostgreSQL unreachable; calls retry on new connections (each for up to retry_ms) and writes wait"
        );
    }

    /// A call succeeded: ends an outage (logged at info, the gauge back
    /// to 1). Every successful call passes here: outside an outage it only
    /// reads the flag.
    fn reachable(&self, op: &str) {
        if self.outage.load(Ordering::Acquire) && self.outage.swap(false, Ordering::AcqRel) {
            self.metrics.gauge("hangar_postgres_reachable", &[], 1.0);
            tracing::info!(op, "PostgreSQL reachable again");
        }
    }

    fn report_pool(&self, pool: &Pool) {
        let s = pool.status();
        let in_use = s.size.saturating_sub(s.available);
        self.metrics.gauge(
            "hangar_postgres_pool_connections",
            &[("state", "in_use")],
            in_use as f64,
        );
        self.metrics.gauge(
            "hangar_postgres_pool_connections",
            &[("state", "idle")],
            s.available as f64,
        );
        self.metrics
            .gauge("hangar_postgres_pool_max", &[], s.max_size as f64);
    }

    async fn read_catalog(&self, pool: &Pool) -> Result<Vec<StoredMap>, Attempt> {
        let client = pool.get().await?;
        let stmt = client.prepare_cached(&self.sql.catalog).await?;
        let rows = client.query(&stmt, &[]).await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                let kind = rows::kind_of(r.try_get(1)?, &format!("catalog/{name}"))?;
                Ok(StoredMap { name, kind })
            })
            .collect()
    }

    /// One attempt of a commit: plan against the catalog, write, commit,
    /// and record the new maps once committed.
    async fn commit_once(&self, pool: &Pool, batch: &WriteBatch) -> Result<(), Attempt> {
        let mut catalog = self.catalog.lock().await;
        if catalog.stale {
            let maps = self.read_catalog(pool).await?;
            catalog.kinds = maps.into_iter().map(|m| (m.name, m.kind)).collect();
            catalog.stale = false;
        }
        let new_maps = plan_kinds(batch, |m| catalog.kinds.get(m).copied())?;
        if batch.is_empty() {
            return Ok(());
        }
        // Last op per slot wins.
        let mut entries: BTreeMap<(&str, &str), Option<&StoredEntry>> = BTreeMap::new();
        let mut tombstones: BTreeMap<(&str, &str), bool> = BTreeMap::new();
        for op in &batch.ops {
            match op {
                StoreOp::Put { map, key, entry } => {
                    entries.insert((map, key), Some(entry));
                }
                StoreOp::Delete { map, key } => {
                    entries.insert((map, key), None);
                }
                StoreOp::AddOrTombstone { map, tag } => {
                    tombstones.insert((map, tag), true);
                }
                StoreOp::RemoveOrTombstone { map, tag } => {
                    tombstones.insert((map, tag), false);
                }
                StoreOp::JournalAppend(_) | StoreOp::JournalPrune { .. } => {
                    return Err(Attempt::Fatal(PersistenceError::InvalidInput(
                        "the PostgreSQL backend keeps no event journal (keeps_journal is \
                         false); journal ops are refused"
                            .into(),
                    )));
                }
            }
        }
        let mut put = PutColumns::default();
        let (mut del_m, mut del_k) = (Vec::new(), Vec::new());
        for ((m, k), e) in &entries {
            match e {
                Some(entry) => put.push(m, k, rows::encode(k, entry)?),
                None => {
                    del_m.push(*m);
                    del_k.push(*k);
                }
            }
        }
        let (mut add_m, mut add_t, mut rm_m, mut rm_t) = (vec![], vec![], vec![], vec![]);
        for ((m, t), add) in &tombstones {
            if *add {
                add_m.push(*m);
                add_t.push(*t);
            } else {
                rm_m.push(*m);
                rm_t.push(*t);
            }
        }
        let result: Result<(), Attempt> = async {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            if !new_maps.is_empty() {
                let names: Vec<&str> = new_maps.iter().map(|(m, _)| m.as_str()).collect();
                let kinds: Vec<i16> = new_maps.iter().map(|(_, k)| rows::kind_code(*k)).collect();
                let s = tx.prepare_cached(&self.sql.insert_maps).await?;
                tx.execute(&s, &[&names, &kinds]).await?;
            }
            if !put.maps.is_empty() {
                let s = tx.prepare_cached(&self.sql.upsert_entries).await?;
                tx.execute(
                    &s,
                    &[
                        &put.maps,
                        &put.keys,
                        &put.partitions,
                        &put.kinds,
                        &put.millis,
                        &put.counters,
                        &put.nodes,
                        &put.values,
                    ],
                )
                .await?;
            }
            if !del_m.is_empty() {
                let s = tx.prepare_cached(&self.sql.delete_entries).await?;
                tx.execute(&s, &[&del_m, &del_k]).await?;
            }
            if !add_m.is_empty() {
                let s = tx.prepare_cached(&self.sql.add_tombstones).await?;
                tx.execute(&s, &[&add_m, &add_t]).await?;
            }
            if !rm_m.is_empty() {
                let s = tx.prepare_cached(&self.sql.remove_tombstones).await?;
                tx.execute(&s, &[&rm_m, &rm_t]).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                catalog.kinds.extend(new_maps);
                Ok(())
            }
            Err(e) => {
                catalog.stale = true;
                Err(e)
            }
        }
    }
}

fn decode_rows(
    map: &str,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<(String, StoredEntry)>, Attempt> {
    rows.iter()
        .map(|r| {
            let key: String = r.try_get(0)?;
            let kind: i16 = r.try_get(1)?;
            let value: &[u8] = r.try_get(2)?;
            let entry = rows::decode(kind, value, &format!("{map}/{key}"))?;
            Ok((key, entry))
        })
        .collect()
}

impl PersistenceBackend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        let batch = Arc::new(batch);
        self.run("commit", move |inner, pool| {
            let batch = batch.clone();
            async move { inner.commit_once(&pool, &batch).await }
        })
    }

    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        let map = map.to_string();
        self.run("load_map", move |inner, pool| {
            let map = map.clone();
            async move {
                let mut client = pool.get().await?;
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let s = tx.prepare_cached(&inner.sql.map_kind).await?;
                let kind = match tx.query_opt(&s, &[&map]).await? {
                    Some(r) => Some(rows::kind_of(r.try_get(0)?, &format!("catalog/{map}"))?),
                    None => None,
                };
                let s = tx.prepare_cached(&inner.sql.map_entries).await?;
                let entries = decode_rows(&map, &tx.query(&s, &[&map]).await?)?;
                let s = tx.prepare_cached(&inner.sql.map_tombstones).await?;
                let or_tombstones = tx
                    .query(&s, &[&map])
                    .await?
                    .iter()
                    .map(|r| r.try_get::<_, String>(0))
                    .collect::<Result<Vec<_>, _>>()?;
                tx.commit().await?;
                Ok(LoadedMap {
                    kind,
                    entries,
                    or_tombstones,
                })
            }
        })
    }

    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        let map = map.to_string();
        let keys = keys.to_vec();
        self.run("load_keys", move |inner, pool| {
            let (map, keys) = (map.clone(), keys.clone());
            async move {
                let client = pool.get().await?;
                let s = client.prepare_cached(&inner.sql.some_entries).await?;
                decode_rows(&map, &client.query(&s, &[&map, &keys]).await?)
            }
        })
    }

    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        let map = map.to_string();
        self.run("list_keys", move |inner, pool| {
            let map = map.clone();
            async move {
                let client = pool.get().await?;
                let s = client.prepare_cached(&inner.sql.map_keys).await?;
                Ok(client
                    .query(&s, &[&map])
                    .await?
                    .iter()
                    .map(|r| r.try_get::<_, String>(0))
                    .collect::<Result<Vec<_>, _>>()?)
            }
        })
    }

    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        let map = map.to_string();
        self.run("load_or_tombstones", move |inner, pool| {
            let map = map.clone();
            async move {
                let client = pool.get().await?;
                let s = client.prepare_cached(&inner.sql.map_tombstones).await?;
                Ok(client
                    .query(&s, &[&map])
                    .await?
                    .iter()
                    .map(|r| r.try_get::<_, String>(0))
                    .collect::<Result<Vec<_>, _>>()?)
            }
        })
    }

    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        self.run("list_maps", |inner, pool| async move {
            inner.read_catalog(&pool).await
        })
    }

    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        // Every commit is durable when it returns; `run` takes the commit
        // lock, which waits for the commit in progress (retries included).
        self.run("flush", |_inner, _pool| async move { Ok(()) })
    }

    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move {
            if let Some(pool) = inner.pool.write().await.take() {
                pool.close();
            }
        });
        Box::pin(async move {
            task.await.map_err(|e| {
                PersistenceError::storage("close", format!("the close task failed: {e}"))
            })
        })
    }
}
