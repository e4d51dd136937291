//! The files of [`super::Epochs`]: `epochs.json`, written whole through a
//! temporary file and a rename (a crash leaves the old or the new one),
//! and `epoch-<n>.json` per closed, unpruned epoch.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Persisted, Tombstone};

/// A file of the epoch state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("tombstone epoch state {path}: {message}")]
pub struct StoreError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was wrong.
    pub message: String,
}

fn err(path: &Path, message: impl ToString) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The state directory.
#[derive(Debug)]
pub struct EpochStore {
    dir: PathBuf,
}

const STATE: &str = "epochs.json";

impl EpochStore {
    /// Creates the directory if needed.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be created.
    pub fn open(dir: PathBuf) -> Result<Self, StoreError> {
        fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("cannot create: {e}")))?;
        Ok(Self { dir })
    }

    fn epoch_file(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("epoch-{epoch}.json"))
    }

    /// Reads the state and the closed epochs' lists (defaults when new).
    ///
    /// # Errors
    /// [`StoreError`] naming the file that is unreadable or malformed.
    pub fn load(&self) -> Result<(Persisted, BTreeMap<u64, Vec<Tombstone>>), StoreError> {
        let path = self.dir.join(STATE);
        let p: Persisted = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                err(
                    &path,
                    format!("malformed (expected the JSON this node writes): {e}"),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(err(&path, format!("cannot read: {e}"))),
        };
        let mut closed = BTreeMap::new();
        let entries =
            fs::read_dir(&self.dir).map_err(|e| err(&self.dir, format!("cannot list: {e}")))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("epoch-"))
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let b = fs::read(&path).map_err(|e| err(&path, format!("cannot read: {e}")))?;
            let list: Vec<Tombstone> = serde_json::from_slice(&b).map_err(|e| {
                err(
                    &path,
                    format!("malformed (expected a list of [map, tag, key]): {e}"),
                )
            })?;
            closed.insert(n, list);
        }
        Ok((p, closed))
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(|e| err(&tmp, format!("cannot create: {e}")))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| err(&tmp, format!("cannot write: {e}")))?;
        fs::rename(&tmp, &path).map_err(|e| err(&path, format!("cannot replace: {e}")))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Writes the state, already encoded (`epochs.json`).
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be written.
    pub fn write_state_bytes(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_atomic(STATE, bytes)
    }

    /// Writes a closed epoch's tombstones.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be written.
    pub fn write_epoch(&self, epoch: u64, list: &[Tombstone]) -> Result<(), StoreError> {
        let name = format!("epoch-{epoch}.json");
        let bytes = serde_json::to_vec(list).map_err(|e| err(&self.epoch_file(epoch), e))?;
        self.write_atomic(&name, &bytes)
    }

    /// Removes a pruned epoch's file (a failure is logged: the file is
    /// read again at start, and pruning its tags twice is harmless).
    pub fn remove_epoch(&self, epoch: u64) {
        let path = self.epoch_file(epoch);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a pruned epoch's file");
            }
        }
    }
}
