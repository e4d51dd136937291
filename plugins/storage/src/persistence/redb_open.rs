//! Opening the redb file so that a damaged store is never taken for an
//! empty one, and containing redb's panics on damaged pages.
//!
//! # Files in the data directory
//!
//! ```text
//! hangar.redb                       the store
//! hangar.redb.open                  clean-shutdown marker: written once the store is open,
//!                                   removed by a clean close; found at open = unclean shutdown
//! hangar.redb.new                   a new store while it is created; renamed to hangar.redb
//!                                   once initialised, so hangar.redb is never a half-made file
//! hangar.redb.damaged-<unix ms>     a damaged store moved aside by `reset_damaged`
//! ```
//!
//! # Rules at open
//!
//! - No store and no marker: a new store is created.
//! - A store file that is empty, that redb cannot open, that fails the
//!   integrity check, whose tables or catalog cannot be read, or a marker
//!   without a store: damaged. Refused with [`PersistenceError::Damaged`]
//!   (saying what is wrong and what the operator can do), unless
//!   `reset_damaged` is set: then the file is moved aside and a new store
//!   created, with a warning naming where the damaged file went.
//! - The integrity check (every page checksum, redb's
//!   `set_check_integrity_on_open`) runs when the marker says the store was
//!   not closed cleanly, or always with `check_integrity`.
//! - A panic inside redb while opening is caught and counts as damage
//!   (redb's debug builds panic on some corrupt pages).

use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hangar_core::MapKind;
use redb::Database;

use super::backend::PersistResult;
use super::error::PersistenceError;
use super::redb_backend::RedbOptions;

/// Suffix of the clean-shutdown marker next to the store file.
pub(crate) const MARKER_SUFFIX: &str = ".open";

/// Why opening failed: damage (the operator decides), or anything else
/// (another process holds the file, permissions...), reported as is.
pub(crate) enum OpenFailure {
    Damaged(String),
    Other(PersistenceError),
}

/// An open store and the map kinds of its catalog.
pub(crate) struct Opened {
    pub(crate) db: Database,
    pub(crate) kinds: HashMap<String, MapKind>,
}

/// The marker of the store at `path`.
pub(crate) fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(MARKER_SUFFIX);
    PathBuf::from(name)
}

/// The panic message of a caught panic.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    hangar_core::error::panic_message(payload)
}

/// True when a redb error means the file's contents are bad (not a lock, a
/// permission or a full disk).
pub(crate) fn is_damage(e: &redb::Error) -> bool {
    match e {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => matches!(io.kind(), IoKind::UnexpectedEof | IoKind::InvalidData),
        _ => false,
    }
}

/// Runs a redb step, turning a panic or a damage error into
/// [`OpenFailure::Damaged`] and any other error into [`OpenFailure::Other`].
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, OpenFailure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_damage(&e) => Err(OpenFailure::Damaged(format!("{what}: {e}"))),
        Ok(Err(e)) => Err(OpenFailure::Other(PersistenceError::storage(
            "open",
            format!("{what}: {e}"),
        ))),
        Err(p) => Err(OpenFailure::Damaged(format!(
            "{what}: the storage engine panicked reading it ({})",
            panic_text(p.as_ref())
        ))),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> PersistenceError {
    PersistenceError::storage("open", format!("cannot {what} {}: {e}", path.display()))
}

/// Opens or creates the store at `path` by the rules in the module docs.
/// `prepare` creates the tables and reads the catalog of an open database.
///
/// # Errors
/// [`PersistenceError::Damaged`] for a damaged store (without
/// `reset_damaged`); [`PersistenceError::Storage`] for anything else.
pub(crate) fn open_store(
    path: &Path,
    options: &RedbOptions,
    builder: impl Fn(bool) -> redb::Builder,
    prepare: impl Fn(&Database) -> PersistResult<HashMap<String, MapKind>>,
) -> PersistResult<Opened> {
    let opened = match open_existing(path, options, &builder, &prepare) {
        Ok(Some(o)) => o,
        Ok(None) => create_new(path, &builder, &prepare)?,
        Err(OpenFailure::Other(e)) => return Err(e),
        Err(OpenFailure::Damaged(detail)) if options.reset_damaged => {
            let aside = move_aside(path)?;
            tracing::warn!(
                store = %path.display(),
                moved_to = %aside.display(),
                %detail,
                "the store was damaged; reset_damaged_store is set: moved it aside and started an empty store"
            );
            create_new(path, &builder, &prepare)?
        }
        Err(OpenFailure::Damaged(detail)) => {
            return Err(PersistenceError::Damaged {
                path: path.display().to_string(),
                detail,
            })
        }
    };
    write_marker(path)?;
    Ok(opened)
}

fn open_existing(
    path: &Path,
    options: &RedbOptions,
    builder: &impl Fn(bool) -> redb::Builder,
    prepare: &impl Fn(&Database) -> PersistResult<HashMap<String, MapKind>>,
) -> Result<Option<Opened>, OpenFailure> {
    let marker = marker_path(path);
    let unclean = marker.exists();
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == IoKind::NotFound => {
            if unclean {
                return Err(OpenFailure::Damaged(format!(
                    "the file is missing, but {} shows a store was open here and not closed",
                    marker.display()
                )));
            }
            return Ok(None);
        }
        Err(e) => return Err(OpenFailure::Other(io_err("read", path, e))),
    };
    if len == 0 {
        return Err(OpenFailure::Damaged(
            "the file is empty (0 bytes); a store that was ever opened holds at least its header"
                .to_string(),
        ));
    }
    let check = unclean || options.check_integrity;
    if unclean {
        tracing::warn!(
            store = %path.display(),
            "the store was not closed cleanly; checking its integrity (reads the whole file)"
        );
    }
    let db = guarded(
        if check {
            "opening it with an integrity check failed"
        } else {
            "opening it failed"
        },
        || builder(check).open(path).map_err(redb::Error::from),
    )?;
    let kinds = match catch_unwind(AssertUnwindSafe(|| prepare(&db))) {
        Ok(Ok(k)) => k,
        Ok(Err(e @ PersistenceError::Damaged { .. }))
        | Ok(Err(e @ PersistenceError::Corrupt { .. })) => {
            return Err(OpenFailure::Damaged(format!(
                "reading its catalog failed: {e}"
            )))
        }
        Ok(Err(e)) => return Err(OpenFailure::Other(e)),
        Err(p) => {
            return Err(OpenFailure::Damaged(format!(
                "reading its catalog: the storage engine panicked ({})",
                panic_text(p.as_ref())
            )))
        }
    };
    Ok(Some(Opened { db, kinds }))
}

/// Creates a new store beside `path` and renames it into place once its
/// tables exist, then opens it.
fn create_new(
    path: &Path,
    builder: &impl Fn(bool) -> redb::Builder,
    prepare: &impl Fn(&Database) -> PersistResult<HashMap<String, MapKind>>,
) -> PersistResult<Opened> {
    let mut new = path.as_os_str().to_owned();
    new.push(".new");
    let new = PathBuf::from(new);
    match std::fs::remove_file(&new) {
        Ok(()) => {}
        Err(e) if e.kind() == IoKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &new, e)),
    }
    let db = builder(false).create(&new).map_err(|e| {
        PersistenceError::storage("open", format!("cannot create {}: {e}", new.display()))
    })?;
    prepare(&db)?;
    db.close()
        .map_err(|e| PersistenceError::storage("open", e))?;
    std::fs::rename(&new, path).map_err(|e| io_err("rename into place", &new, e))?;
    sync_dir(path)?;
    let db = builder(false).open(path).map_err(|e| {
        PersistenceError::storage("open", format!("cannot open {}: {e}", path.display()))
    })?;
    let kinds = prepare(&db)?;
    Ok(Opened { db, kinds })
}

/// Moves a damaged store (and its marker) aside; returns where it went.
fn move_aside(path: &Path) -> PersistResult<PathBuf> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".damaged-{millis}"));
    let aside = PathBuf::from(aside);
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // A marker without a store: nothing to keep.
        Err(e) if e.kind() == IoKind::NotFound => {}
        Err(e) => return Err(io_err("move aside", path, e)),
    }
    match std::fs::remove_file(marker_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == IoKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &marker_path(path), e)),
    }
    sync_dir(path)?;
    Ok(aside)
}

fn write_marker(path: &Path) -> PersistResult<()> {
    let marker = marker_path(path);
    let body = format!(
        "the store {} is open (pid {}); a clean close removes this file\n",
        path.display(),
        std::process::id()
    );
    let f = std::fs::File::create(&marker).map_err(|e| io_err("create", &marker, e))?;
    std::io::Write::write_all(&mut &f, body.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("write", &marker, e))?;
    sync_dir(path)
}

/// Removes the marker after a clean close.
pub(crate) fn remove_marker(path: &Path) -> PersistResult<()> {
    let marker = marker_path(path);
    match std::fs::remove_file(&marker) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == IoKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &marker, e)),
    }
}

fn sync_dir(path: &Path) -> PersistResult<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync", dir, e))
}

#[cfg(test)]
mod tests;
