//! The conformance suite of `StorageModule`: every implementation, loaded or
//! in-process, must pass it.
//!
//! Each case gets a fresh module built by the caller's [`Builder`] from the
//! suite's config ([`suite_config`]: the embedded backend in a temporary
//! data directory, full-text search on map `articles`, a 300 ms write-ack
//! timeout) and started. Cases that restart the module
//! ([`Ctx::restart`]) build a second one over the same data directory, as
//! a new process would.
//!
//! # Layout
//!
//! - `helpers`: op, query and request builders; recording sinks.
//! - `basics`: writes and reads, LWW rules, kinds, names (`t10`–`t19`).
//! - `acks`: write concern levels and timeouts (`t20`–`t29`).
//! - `or_ttl`: change events, OR maps, TTL (`t30`–`t39`).
//! - `accessor`: what the cluster module uses (`t40`–`t49`).
//! - `queries`: one-shot queries (`t50`–`t59`).
//! - `live`: live queries (`t60`–`t69`).
//! - `search_merkle`: full-text search and Merkle sync (`t70`–`t79`).
//! - `lifecycle`: shutdown, restart, lazy loading (`t80`–`t89`).
//! - `regressions`: legacy defects that must stay fixed (`t90`–`t99`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hangar_core::config::{PluginSettings, StorageModuleConfig};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_storage::settings::{FullTextSettings, StorageSettings};
use parking_lot::Mutex;

use crate::support::storage_deps;

/// Declares a module's case list: `case_list![t10_a, t11_b]` gives the
/// `(name, fn)` pairs of those async fns.
macro_rules! case_list {
    ($($f:ident),* $(,)?) => {
        pub(super) fn cases() -> Vec<(&'static str, super::Case)> {
            vec![$((
                stringify!($f),
                (|cx| -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send>> {
                    Box::pin($f(cx))
                }) as super::Case,
            )),*]
        }
    };
}

mod accessor;
mod acks;
mod basics;
pub mod helpers;
mod lifecycle;
mod live;
mod or_ttl;
mod queries;
mod regressions;
mod search_merkle;

pub use helpers::{batch, lww};

/// Builds a module (not yet started) from a config and deps.
pub type Builder =
    Arc<dyn Fn(StorageModuleConfig, StorageDeps) -> Arc<dyn StorageModule> + Send + Sync>;

/// The node id the suite's modules run as.
pub const NODE: &str = "suite-node";

/// The map with full-text search configured in [`suite_config`].
pub const FTS_MAP: &str = "articles";

/// The suite's config: embedded backend in `dir`, search on
/// [`FTS_MAP`] (`title`, `body`), 300 ms write-ack timeout.
#[must_use]
pub fn suite_config(dir: &std::path::Path) -> StorageModuleConfig {
    let mut fts = BTreeMap::new();
    fts.insert(
        FTS_MAP.to_string(),
        FullTextSettings {
            fields: vec!["title".into(), "body".into()],
            ..FullTextSettings::default()
        },
    );
    let settings = StorageSettings {
        full_text_search: fts,
        ..StorageSettings::default()
    };
    StorageModuleConfig {
        write_ack_timeout_ms: 300,
        ..StorageModuleConfig::new(NODE, dir.join("storage"), PluginSettings::of(&settings))
    }
}

/// What a case works with: the current module, and how to restart it.
pub struct Ctx {
    slot: Arc<Mutex<Arc<dyn StorageModule>>>,
    /// The config the module was built with.
    pub config: StorageModuleConfig,
    build: Builder,
}

impl Ctx {
    /// The current module.
    #[must_use]
    pub fn m(&self) -> Arc<dyn StorageModule> {
        self.slot.lock().clone()
    }

    /// Shuts the module down and starts a new one over the same data with
    /// `deps` (a process restart).
    pub async fn restart_with(&self, deps: StorageDeps) -> Arc<dyn StorageModule> {
        self.m().shutdown().await.expect("shutdown before restart");
        let m = (self.build)(self.config.clone(), deps);
        m.start().await.expect("the restarted module starts");
        *self.slot.lock() = m.clone();
        m
    }

    /// [`Self::restart_with`] the suite's default deps (a fresh clock).
    pub async fn restart(&self) -> Arc<dyn StorageModule> {
        self.restart_with(storage_deps(NODE)).await
    }
}

type Case = fn(Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case, by name.
#[must_use]
pub fn cases() -> Vec<(&'static str, Case)> {
    let mut all = Vec::new();
    all.extend(basics::cases());
    all.extend(acks::cases());
    all.extend(or_ttl::cases());
    all.extend(accessor::cases());
    all.extend(queries::cases());
    all.extend(live::cases());
    all.extend(search_merkle::cases());
    all.extend(lifecycle::cases());
    all.extend(regressions::cases());
    all
}

/// Runs every case against fresh modules from `build`.
///
/// # Panics
/// On the first case that fails, naming it.
pub async fn run(label: &str, build: Builder) {
    for (name, case) in cases() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = suite_config(dir.path());
        let m = build(config.clone(), storage_deps(NODE));
        m.start()
            .await
            .unwrap_or_else(|e| panic!("[{label}] {name}: start failed: {e}"));
        let slot = Arc::new(Mutex::new(m));
        let cx = Ctx {
            slot: slot.clone(),
            config,
            build: build.clone(),
        };
        let r = tokio::spawn(case(cx)).await;
        let last = slot.lock().clone();
        let _ = last.shutdown().await;
        drop(last);
        drop(slot);
        if let Err(e) = r {
            let msg = crate::support::join_error_message(e);
            panic!("[{label}] storage case {name} failed: {msg}");
        }
        eprintln!("[{label}] storage case {name}: ok");
    }
}
