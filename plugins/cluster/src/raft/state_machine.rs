//! The applied state ([`ClusterState`]) and its snapshots.
//!
//! # Contract (openraft's `RaftStateMachine`)
//!
//! - The state is kept in memory and rebuilt on open from the last persisted
//!   snapshot; openraft then re-applies the committed log after it. So every
//!   snapshot MUST be on disk (fsynced) before openraft may purge the logs
//!   it covers: `build_snapshot` and `install_snapshot` write it durably
//!   before returning.
//! - A snapshot never replaces a newer one on disk: a build that finishes
//!   after a newer snapshot was installed is discarded.
//! - After every applied batch and every installed snapshot the new state
//!   is published on the `state` watch, and the applied (= committed)
//!   membership on the `membership` watch.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, SnapshotId,
    StorageIOError,
};
use redb::{Durability, ReadableDatabase, ReadableTable};
use tokio::sync::watch;

use super::db::{decode, encode, text, RaftDb, StoredSnapshot, KEY_SNAPSHOT, META};
use super::types::{
    Applied, ClusterState, LogEntry, LogId, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// Where the state machine publishes what it applied.
#[derive(Clone)]
pub(crate) struct Published {
    pub(crate) state: watch::Sender<Arc<ClusterState>>,
    pub(crate) membership: watch::Sender<Arc<StoredMembership>>,
}

/// The state machine openraft drives.
pub(crate) struct StateMachine {
    db: Arc<RaftDb>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
    publish: Published,
    /// Distinguishes snapshots built at the same log id.
    builds: Arc<AtomicU64>,
}

impl StateMachine {
    /// Restores the state from the persisted snapshot (or starts empty) and
    /// publishes it.
    pub(crate) async fn open(db: Arc<RaftDb>, publish: Published) -> Result<Self, String> {
        let stored: Option<StoredSnapshot> = db.get_meta(KEY_SNAPSHOT).await?;
        let mut sm = Self {
            db,
            last_applied: None,
            membership: StoredMembership::default(),
            state: ClusterState::default(),
            publish,
            builds: Arc::new(AtomicU64::new(0)),
        };
        if let Some(s) = stored {
            sm.state = decode(&s.data)
                .map_err(|e| format!("{}: snapshot: {e}", sm.db.path().display()))?;
            sm.last_applied = s.meta.last_log_id;
            sm.membership = s.meta.last_membership;
        }
        sm.publish_all();
        Ok(sm)
    }

    fn publish_all(&self) {
        self.publish
            .state
            .send_replace(Arc::new(self.state.clone()));
        self.publish
            .membership
            .send_replace(Arc::new(self.membership.clone()));
    }
}

/// Persists `snap` unless the file already holds a snapshot at or after its
/// last log id. Returns whether it was written.
async fn persist_snapshot(db: &RaftDb, snap: &StoredSnapshot) -> Result<bool, String> {
    let bytes = encode(snap)?;
    let last = snap.meta.last_log_id;
    db.run("write snapshot", move |db| {
        let mut txn = db.begin_write().map_err(text)?;
        txn.set_durability(Durability::Immediate).map_err(text)?;
        {
            let mut meta = txn.open_table(META).map_err(text)?;
            let newer = match meta.get(KEY_SNAPSHOT).map_err(text)? {
                Some(v) => decode::<StoredSnapshot>(v.value())?.meta.last_log_id >= last,
                None => false,
            };
            if newer {
                return Ok(false);
            }
            meta.insert(KEY_SNAPSHOT, bytes.as_slice()).map_err(text)?;
        }
        txn.commit().map_err(text)?;
        Ok(true)
    })
    .await
}

async fn read_snapshot(db: &RaftDb) -> Result<Option<StoredSnapshot>, String> {
    db.run("read snapshot", |db| {
        let txn = db.begin_read().map_err(text)?;
        let meta = txn.open_table(META).map_err(text)?;
        match meta.get(KEY_SNAPSHOT).map_err(text)? {
            Some(v) => decode(v.value()).map(Some),
            None => Ok(None),
        }
    })
    .await
}

fn snapshot_error(meta: Option<&SnapshotMeta>, verb: ErrorVerb, e: String) -> StorageError {
    let sig = meta.map(|m| m.signature());
    StorageIOError::new(
        ErrorSubject::Snapshot(sig),
        verb,
        openraft::AnyError::error(e),
    )
    .into()
}

/// Builds a snapshot of the state as it was when the builder was taken.
pub(crate) struct SnapshotBuilder {
    db: Arc<RaftDb>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
    build: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = encode(&self.state).map_err(|e| snapshot_error(None, ErrorVerb::Write, e))?;
        let snapshot_id: SnapshotId = match &self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.build),
            None => format!("none-{}", self.build),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        persist_snapshot(&self.db, &stored)
            .await
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut membership_changed = false;
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => Applied(None),
                EntryPayload::Normal(cmd) => Applied(Some(self.state.apply(&cmd))),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    membership_changed = true;
                    Applied(None)
                }
            });
        }
        if out.iter().any(|a| a.0.is_some()) {
            self.publish
                .state
                .send_replace(Arc::new(self.state.clone()));
        }
        if membership_changed {
            self.publish
                .membership
                .send_replace(Arc::new(self.membership.clone()));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.clone(),
            build: self.builds.fetch_add(1, Ordering::Relaxed),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state: ClusterState =
            decode(&data).map_err(|e| snapshot_error(Some(meta), ErrorVerb::Read, e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        persist_snapshot(&self.db, &stored)
            .await
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Write, e))?;
        self.state = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publish_all();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = read_snapshot(&self.db)
            .await
            .map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Used by the storage conformance test: opening a state machine must not
/// depend on a running Raft.
#[cfg(test)]
pub(crate) fn published_for_test() -> Published {
    Published {
        state: watch::channel(Arc::new(ClusterState::default())).0,
        membership: watch::channel(Arc::new(StoredMembership::default())).0,
    }
}
