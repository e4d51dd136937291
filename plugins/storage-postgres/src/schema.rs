//! The plugin's tables and their versioned migrations, applied at start.
//!
//! # Layout (in the configured schema, `hangar` by default)
//!
//! ```text
//! hangar_migrations (version INT PK, description TEXT, applied_at TIMESTAMPTZ)
//! hangar_maps       (map_name TEXT PK, kind SMALLINT)            -- the catalog: 0 LWW, 1 OR
//! hangar_entries    (map_name, key) PK, partition_id INT, kind SMALLINT,
//!                   hlc_millis BIGINT, hlc_counter BIGINT, hlc_node TEXT, value BYTEA
//! hangar_or_tombstones (map_name, tag) PK                         -- one row per removed tag
//! ```
//!
//! It mirrors the redb backend's three tables
//! (`plugins/storage/src/persistence/redb_backend.rs`): entries keyed by
//! `(map, key)`, tombstones by `(map, tag)`, and the catalog. Every text
//! column uses the `"C"` collation, so `ORDER BY` is the byte order the
//! backend contract asks for and a map is one range of the primary key.
//! `value` is the msgpack of the key's winning state (see `crate::rows`);
//! the HLC columns hold its timestamp (the newest record's for an OR key,
//! NULL for an OR key without records). The index on
//! `(map_name, partition_id, key)` makes loading only some partitions of a
//! map a range scan per partition.
//!
//! # Migrations
//!
//! [`migrate`] runs in one transaction under an advisory lock (two nodes
//! starting on one schema do not race): it creates the schema and the
//! migrations table, refuses a schema whose recorded version is newer than
//! [`LATEST_VERSION`] ([`SchemaError::Newer`]), and applies each missing
//! migration in order, recording it.

use tokio_postgres::Client;

/// One migration: its version, what it does, and its SQL (`{schema}` is
/// replaced by the quoted schema name).
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description:
        "maps catalog, entries keyed by (map, key) with partition and HLC columns, OR tombstones",
    sql: r#"
CREATE TABLE {schema}.hangar_maps (
    map_name TEXT COLLATE "C" PRIMARY KEY,
    kind SMALLINT NOT NULL CHECK (kind IN (0, 1))
);
CREATE TABLE {schema}.hangar_entries (
    map_name TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    partition_id INT NOT NULL,
    kind SMALLINT NOT NULL CHECK (kind IN (0, 1)),
    hlc_millis BIGINT,
    hlc_counter BIGINT,
    hlc_node TEXT COLLATE "C",
    value BYTEA NOT NULL,
    PRIMARY KEY (map_name, key)
);
CREATE INDEX hangar_entries_by_partition
    ON {schema}.hangar_entries (map_name, partition_id, key);
CREATE TABLE {schema}.hangar_or_tombstones (
    map_name TEXT COLLATE "C" NOT NULL,
    tag TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (map_name, tag)
);
"#,
}];

/// The schema version this build creates and understands.
pub const LATEST_VERSION: i32 = 1;

/// Why the schema could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema was written by a newer version of the plugin.
    #[error(
        "the schema {schema:?} is at version {found}, newer than the {latest} this plugin knows: \
         it was written by a newer hangar-storage-postgres; run that version, or point \
         [storage] schema (HANGAR_POSTGRES_SCHEMA) at another schema"
    )]
    Newer {
        /// The schema name.
        schema: String,
        /// The version recorded in it.
        found: i32,
        /// [`LATEST_VERSION`].
        latest: i32,
    },
    /// A statement failed.
    #[error("migrating the schema {schema:?} failed: {source}")]
    Sql {
        /// The schema name.
        schema: String,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// The schema name quoted for SQL text (it is validated as a plain
/// identifier by `PostgresSettings::check`).
#[must_use]
pub fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Creates or upgrades the tables in `schema`; returns the version found
/// before (0 for a new schema).
///
/// # Errors
/// [`SchemaError::Newer`] for a schema of a newer plugin (nothing changed);
/// [`SchemaError::Sql`] when a statement fails (the transaction is rolled
/// back).
pub async fn migrate(client: &mut Client, schema: &str) -> Result<i32, SchemaError> {
    let sql_err = |source| SchemaError::Sql {
        schema: schema.to_string(),
        source,
    };
    let q = quoted(schema);
    let tx = client.transaction().await.map_err(sql_err)?;
    // One lock key per schema name, so that concurrent starters queue.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('hangar-migrate:' || $1))",
        &[&schema],
    )
    .await
    .map_err(sql_err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.hangar_migrations (
             version INT PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(sql_err)?;
    let found: i32 = tx
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {q}.hangar_migrations"),
            &[],
        )
        .await
        .map_err(sql_err)?
        .get(0);
    if found > LATEST_VERSION {
        return Err(SchemaError::Newer {
            schema: schema.to_string(),
            found,
            latest: LATEST_VERSION,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(&m.sql.replace("{schema}", &q))
            .await
            .map_err(sql_err)?;
        tx.execute(
            &format!("INSERT INTO {q}.hangar_migrations (version, description) VALUES ($1, $2)"),
            &[&m.version, &m.description],
        )
        .await
        .map_err(sql_err)?;
        tracing::info!(
            schema,
            version = m.version,
            "applied migration: {}",
            m.description
        );
    }
    tx.commit().await.map_err(sql_err)?;
    Ok(found)
}
