//! A throwaway PostgreSQL server for tests, started through
//! `scripts/pg-test-server` (the one place that knows how to start and stop
//! one): its own data directory and loopback port, stopped and deleted
//! when the test process exits.
//!
//! Tests require it: when the server cannot start (the `postgresql`
//! package is not installed) they fail with the script's message, unless
//! `HANGAR_PG_TESTS=skip` is set, which skips them with a loud message.
//! CI installs the package (`.ci/run`) and never sets it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::settings::PostgresSettings;

/// One running test server.
#[derive(Debug)]
pub struct PgTestServer {
    dir: PathBuf,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-server")
}

fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new(script())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{} {} failed ({}): {}",
            script().display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True when the PostgreSQL tests were switched off with
/// `HANGAR_PG_TESTS=skip`; prints a loud message saying so.
#[must_use]
pub fn skipped(test: &str) -> bool {
    let skip = std::env::var("HANGAR_PG_TESTS").is_ok_and(|v| v == "skip");
    if skip {
        eprintln!(
            "\n!!!!! SKIPPED {test}: HANGAR_PG_TESTS=skip is set, so the PostgreSQL tests \
             did NOT run !!!!!\n"
        );
    }
    skip
}

impl PgTestServer {
    /// Starts a new server whose data directory is deleted when this
    /// process exits (or when [`Self::destroy`] is called).
    ///
    /// # Panics
    /// When the server cannot start; the message says why (e.g. the
    /// `postgresql` package is missing and how to install it).
    #[must_use]
    pub fn start() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hangar-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let pid = std::process::id().to_string();
        let url = run_script(&["start", &dir.to_string_lossy(), &pid])
            .unwrap_or_else(|e| panic!("cannot start a PostgreSQL test server: {e}"));
        Self { dir, url }
    }

    /// One server shared by every test of this process.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<PgTestServer> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Settings for a fresh schema of its own on this server, so tests on
    /// one server do not see each other's data.
    #[must_use]
    pub fn fresh_settings(&self) -> PostgresSettings {
        static N: AtomicU32 = AtomicU32::new(0);
        PostgresSettings {
            url: self.url.clone(),
            schema: format!(
                "t{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            pool_size: 4,
            ..PostgresSettings::default()
        }
    }

    /// Stops the server, keeping its data (as an operator's restart would).
    ///
    /// # Panics
    /// When the script fails.
    pub fn halt(&self) {
        run_script(&["halt", &self.dir.to_string_lossy()]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server again on the same port and data.
    ///
    /// # Panics
    /// When the script fails.
    pub fn resume(&self) {
        run_script(&["resume", &self.dir.to_string_lossy()]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server and deletes its data directory.
    pub fn destroy(&self) {
        if let Err(e) = run_script(&["destroy", &self.dir.to_string_lossy()]) {
            eprintln!("{e}");
        }
    }
}
