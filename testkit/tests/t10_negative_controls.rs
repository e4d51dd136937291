//! Negative controls: modules that break one promise each, built by
//! wrapping the default module (`StorageWrapper` / `ClusterWrapper`: only
//! the changed method is written), must fail the suite case that checks the
//! promise. Each test also runs the same case against the unwrapped module,
//! so the failure is the wrapper's and not the setup's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::RVec;
use futures::future::BoxFuture;
use hangar_core::config::StorageModuleConfig;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::cluster_types::{LockGrant, LockRelease, LockRequest};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::module::storage_types::{AckId, AckResult, ApplyBatch, OpOutcome};
use hangar_core::module::wrapper::{ClusterWrapper, StorageWrapper};
use hangar_core::module::{boxed, ModuleFuture};
use hangar_core::{MapOp, ModuleResult, Timestamp, WriteConcern};
use hangar_storage::persistence::{
    LoadedMap, PersistResult, PersistenceBackend, RedbBackend, StoredEntry, StoredMap, WriteBatch,
};

/// Acknowledges PERSISTED as soon as a write is applied: it asks the inner
/// module for APPLIED only and reports every success as PERSISTED.
struct AcksBeforeCommit(Arc<dyn StorageModule>);

impl StorageWrapper for AcksBeforeCommit {
    fn inner(&self) -> &dyn StorageModule {
        &*self.0
    }
    fn apply(&self, mut batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        for op in batch.ops.iter_mut() {
            op.concern = op.concern.min(WriteConcern::Applied);
        }
        self.inner().apply(batch)
    }
    fn await_acks(&self, acks: RVec<AckId>) -> ModuleFuture<RVec<AckResult>> {
        let waiting = self.inner().await_acks(acks);
        boxed(async move {
            let mut results = waiting.await?;
            for r in results.iter_mut().filter(|r| r.success) {
                r.achieved = WriteConcern::Persisted;
            }
            Ok(results)
        })
    }
}

/// Redb whose commits take a second before they start, as a slow disk's
/// would: an acknowledgement that does not wait for the commit is sure to
/// come before it.
struct SlowCommits(Arc<dyn PersistenceBackend>);

impl PersistenceBackend for SlowCommits {
    fn name(&self) -> &'static str {
        "redb with slow commits"
    }
    fn commit(&self, batch: WriteBatch) -> BoxFuture<'_, PersistResult<()>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.0.commit(batch).await
        })
    }
    fn load_map<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<LoadedMap>> {
        self.0.load_map(map)
    }
    fn load_keys<'a>(
        &'a self,
        map: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, PersistResult<Vec<(String, StoredEntry)>>> {
        self.0.load_keys(map, keys)
    }
    fn list_keys<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        self.0.list_keys(map)
    }
    fn load_or_tombstones<'a>(&'a self, map: &'a str) -> BoxFuture<'a, PersistResult<Vec<String>>> {
        self.0.load_or_tombstones(map)
    }
    fn list_maps(&self) -> BoxFuture<'_, PersistResult<Vec<StoredMap>>> {
        self.0.list_maps()
    }
    fn flush(&self) -> BoxFuture<'_, PersistResult<()>> {
        self.0.flush()
    }
    fn close(&self) -> BoxFuture<'_, PersistResult<()>> {
        self.0.close()
    }
}

/// The default storage module over [`SlowCommits`].
fn slow_disk_module(
    config: StorageModuleConfig,
    deps: StorageDeps,
) -> ModuleResult<Arc<dyn StorageModule>> {
    hangar_storage::create_with_backend(
        config,
        deps,
        "redb with slow commits",
        Arc::new(|c: &StorageModuleConfig| {
            std::fs::create_dir_all(&c.data_dir).map_err(|e| {
                hangar_storage::persistence::PersistenceError::storage("open", e.to_string())
            })?;
            let redb: Arc<dyn PersistenceBackend> = Arc::new(RedbBackend::open(&c.data_dir)?);
            Ok(Arc::new(SlowCommits(redb)) as Arc<dyn PersistenceBackend>)
        }),
    )
}

const CRASH_CASE: &str = "t86_a_persisted_ack_means_the_write_survives_a_crash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_module_that_acks_persisted_before_the_commit_fails_the_crash_case() {
    hangar_testkit::storage::try_case(CRASH_CASE, slow_disk_module)
        .await
        .expect("the default module over the same slow disk passes");
    let err = hangar_testkit::storage::try_case(CRASH_CASE, |c, d| {
        Ok(Arc::new(AcksBeforeCommit(slow_disk_module(c, d)?)) as Arc<dyn StorageModule>)
    })
    .await
    .expect_err("an ack before the commit must fail the suite");
    eprintln!("as expected: {err}");
    assert!(
        err.contains(CRASH_CASE) && err.contains("a crash right after the ack lost it"),
        "it fails on the lost write: {err}"
    );
}

/// Lets the last write to arrive win: every LWW op is stamped with a
/// timestamp later than any before it, so a stale op overwrites newer data.
struct LastArrivalWins(Arc<dyn StorageModule>, AtomicU64);

impl StorageWrapper for LastArrivalWins {
    fn inner(&self) -> &dyn StorageModule {
        &*self.0
    }
    fn apply(&self, mut batch: ApplyBatch) -> ModuleFuture<RVec<OpOutcome>> {
        for op in batch.ops.iter_mut() {
            if let MapOp::Lww(r) = &mut op.op.op {
                let millis = self.1.fetch_add(1, Ordering::Relaxed);
                r.timestamp = Timestamp::new(millis, 0, r.timestamp.node_id.as_str());
            }
        }
        self.inner().apply(batch)
    }
}

const STALE_CASE: &str = "t12_a_stale_op_never_overwrites_newer_data";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_a_module_that_lets_a_stale_write_win_fails_the_lww_case() {
    hangar_testkit::storage::try_case(STALE_CASE, hangar_storage::create)
        .await
        .expect("the default module passes");
    let err = hangar_testkit::storage::try_case(STALE_CASE, |c, d| {
        let start = hangar_core::hlc::system_millis();
        Ok(Arc::new(LastArrivalWins(
            hangar_storage::create(c, d)?,
            AtomicU64::new(start),
        )) as Arc<dyn StorageModule>)
    })
    .await
    .expect_err("a stale write that wins must fail the suite");
    eprintln!("as expected: {err}");
    assert!(err.contains(STALE_CASE), "{err}");
}

/// Hands out fencing tokens that go down: each grant's token is
/// `u64::MAX` minus the inner module's (and a release maps it back).
struct TokensGoBack(Arc<dyn ClusterModule>);

impl ClusterWrapper for TokensGoBack {
    fn inner(&self) -> &dyn ClusterModule {
        &*self.0
    }
    fn lock(&self, request: LockRequest) -> ModuleFuture<LockGrant> {
        let granting = self.inner().lock(request);
        boxed(async move {
            let mut g = granting.await?;
            if g.granted {
                g.fencing_token = u64::MAX - g.fencing_token;
            }
            Ok(g)
        })
    }
    fn unlock(&self, mut release: LockRelease) -> ModuleFuture<bool> {
        release.fencing_token = u64::MAX - release.fencing_token;
        self.inner().unlock(release)
    }
}

const LOCK_CASE: &str = "t30_locks_grant_refuse_and_release";

#[test]
fn t12_a_cluster_module_whose_fencing_tokens_go_backwards_fails_the_lock_case() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        hangar_testkit::cluster::try_case(
            LOCK_CASE,
            hangar_cluster::create,
            hangar_storage::create,
        )
        .await
        .expect("the default module passes");
        let err = hangar_testkit::cluster::try_case(
            LOCK_CASE,
            |c, d: ClusterDeps| {
                Ok(Arc::new(TokensGoBack(hangar_cluster::create(c, d)?)) as Arc<dyn ClusterModule>)
            },
            hangar_storage::create,
        )
        .await
        .expect_err("tokens that go backwards must fail the suite");
        eprintln!("as expected: {err}");
        assert!(
            err.contains(LOCK_CASE) && err.contains("tokens never go backwards"),
            "{err}"
        );
    });
}
