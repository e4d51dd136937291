//! The Raft log and vote, persisted in the node's redb file.
//!
//! # Contract (openraft's `RaftLogStorage`)
//!
//! - When `append` returns, the entries are readable; the flush callback
//!   runs only after they are on disk (fsynced). This implementation writes
//!   them durably before returning, so both hold at once.
//! - A saved vote is on disk before `save_vote` returns.
//! - The log never has a hole: `truncate` removes a suffix, `purge` a
//!   prefix, and the purged log id is recorded in the same transaction that
//!   removes the entries.
//! - Writes are serialized: openraft calls them one at a time (`&mut self`)
//!   and each one completes before it returns.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, Vote};
use redb::{Durability, ReadableDatabase, ReadableTable};

use super::db::{
    decode, encode, io_error, text, RaftDb, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG, META,
};
use super::types::{LogEntry, LogId, RaftNodeId, StorageError, TypeConfig};

/// The log store; clones share the file and serve as log readers.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<RaftDb>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<RaftDb>) -> Self {
        Self { db }
    }

    async fn write_entries(&self, entries: Vec<LogEntry>) -> Result<(), String> {
        let encoded = entries
            .iter()
            .map(|e| Ok((e.log_id.index, encode(e)?)))
            .collect::<Result<Vec<_>, String>>()?;
        self.db
            .run("append", move |db| {
                let mut txn = db.begin_write().map_err(text)?;
                txn.set_durability(Durability::Immediate).map_err(text)?;
                {
                    let mut log = txn.open_table(LOG).map_err(text)?;
                    for (index, bytes) in &encoded {
                        log.insert(*index, bytes.as_slice()).map_err(text)?;
                    }
                }
                txn.commit().map_err(text)
            })
            .await
    }
}

fn bound_start(b: Bound<&u64>) -> Option<u64> {
    match b {
        Bound::Included(i) => Some(*i),
        Bound::Excluded(i) => i.checked_add(1),
        Bound::Unbounded => Some(0),
    }
}

fn bound_end(b: Bound<&u64>) -> Option<u64> {
    // Exclusive end; None = unbounded.
    match b {
        Bound::Included(i) => i.checked_add(1),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let Some(start) = bound_start(range.start_bound()) else {
            return Ok(Vec::new());
        };
        let end = bound_end(range.end_bound());
        self.db
            .run("read log", move |db| {
                let txn = db.begin_read().map_err(text)?;
                let log = txn.open_table(LOG).map_err(text)?;
                let iter = match end {
                    Some(end) if end <= start => return Ok(Vec::new()),
                    Some(end) => log.range(start..end),
                    None => log.range(start..),
                }
                .map_err(text)?;
                let mut out = Vec::new();
                for item in iter {
                    let (_, v) = item.map_err(text)?;
                    out.push(decode::<LogEntry>(v.value())?);
                }
                Ok(out)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self
            .db
            .get_meta(KEY_PURGED)
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last: Option<LogId> = self
            .db
            .run("read last log", |db| {
                let txn = db.begin_read().map_err(text)?;
                let log = txn.open_table(LOG).map_err(text)?;
                let last = match log.last().map_err(text)? {
                    Some((_, v)) => Some(decode::<LogEntry>(v.value())?.log_id),
                    None => None,
                };
                Ok(last)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), StorageError> {
        self.db
            .put_meta(KEY_VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, StorageError> {
        self.db
            .get_meta(KEY_VOTE)
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced on its own: see the durability note in `db`.
        self.db
            .put_meta(KEY_COMMITTED, &committed, Durability::None)
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let v: Option<Option<LogId>> = self
            .db
            .get_meta(KEY_COMMITTED)
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(v.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<LogEntry> = entries.into_iter().collect();
        match self.write_entries(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.db
            .run("truncate log", move |db| {
                let mut txn = db.begin_write().map_err(text)?;
                txn.set_durability(Durability::Immediate).map_err(text)?;
                txn.open_table(LOG)
                    .map_err(text)?
                    .retain_in(from.., |_, _| false)
                    .map_err(text)?;
                txn.commit().map_err(text)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes =
            encode(&log_id).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let upto = log_id.index;
        self.db
            .run("purge log", move |db| {
                let mut txn = db.begin_write().map_err(text)?;
                txn.set_durability(Durability::Immediate).map_err(text)?;
                txn.open_table(META)
                    .map_err(text)?
                    .insert(KEY_PURGED, bytes.as_slice())
                    .map_err(text)?;
                txn.open_table(LOG)
                    .map_err(text)?
                    .retain_in(..=upto, |_, _| false)
                    .map_err(text)?;
                txn.commit().map_err(text)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
