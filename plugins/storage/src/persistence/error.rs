//! [`PersistenceError`]: what a persistence backend call can fail with.

use hangar_core::{ErrorKind, MapKind, ModuleError};

/// Why a backend call failed.
///
/// `Clone` so that one commit failure can be reported to every writer whose
/// request was in the failed group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// The backend was closed; no call succeeds after `close`.
    #[error("persistence backend is closed: open it again to use it")]
    Closed,
    /// The caller passed something no backend may store (an empty map name,
    /// a NUL character). Nothing was written.
    #[error("invalid persistence input: {0}")]
    InvalidInput(String),
    /// A write would change the kind of a map. Nothing of the batch was written.
    #[error(
        "map {map:?} is recorded as a {recorded:?} map, but the write needs a {requested:?} map"
    )]
    KindConflict {
        /// The map.
        map: String,
        /// The kind the backend recorded for it.
        recorded: MapKind,
        /// The kind the rejected op needs.
        requested: MapKind,
    },
    /// Stored bytes could not be decoded: damage, or a newer format.
    #[error("corrupt stored data at {location}: {reason}")]
    Corrupt {
        /// Which row (`map/key`, `map#tag`, `catalog/map`).
        location: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// The store file exists but cannot be read (empty, truncated, failing
    /// its integrity check, or the engine broke reading it). Never taken
    /// for an empty store: refused at open, and once met at run time the
    /// backend is failed for good (every later call answers this error).
    #[error("the store {path} is damaged: {detail}. Nothing was changed. Restore the file from a backup, or start with an empty store on purpose with `[storage] reset_damaged_store = true` (flag `--reset-damaged-store`), which moves the damaged file aside instead of deleting it")]
    Damaged {
        /// The store file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The storage engine or the operating system failed (I/O error, full
    /// disk, failed fsync). After a failed commit the batch's fate is
    /// unknown: it may or may not be durable.
    #[error("persistence {op} failed: {message}")]
    Storage {
        /// The backend call that failed (`commit`, `load_map`, `open`, ...).
        op: &'static str,
        /// The engine's message.
        message: String,
    },
}

impl PersistenceError {
    /// A [`PersistenceError::Storage`] for `op`, with any displayable cause.
    pub fn storage(op: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Storage {
            op,
            message: cause.to_string(),
        }
    }

    /// True for failures of the store itself (I/O, corruption), after which
    /// a writer must stop; false for input errors that rejected one batch.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Storage { .. } | Self::Corrupt { .. } | Self::Damaged { .. }
        )
    }
}

impl From<PersistenceError> for ModuleError {
    fn from(e: PersistenceError) -> Self {
        let kind = match &e {
            PersistenceError::Closed => ErrorKind::SHUT_DOWN,
            PersistenceError::InvalidInput(_) => ErrorKind::INVALID_INPUT,
            PersistenceError::KindConflict { .. } => ErrorKind::CONFLICT,
            PersistenceError::Corrupt { .. }
            | PersistenceError::Storage { .. }
            | PersistenceError::Damaged { .. } => ErrorKind::STORAGE,
        };
        ModuleError::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_errors_map_to_module_error_kinds_and_keep_the_message() {
        let e = PersistenceError::KindConflict {
            map: "m".into(),
            recorded: MapKind::Lww,
            requested: MapKind::Or,
        };
        let m: ModuleError = e.clone().into();
        assert_eq!(m.kind, ErrorKind::CONFLICT);
        assert_eq!(m.message.as_str(), e.to_string());
        assert!(m.message.contains("recorded as a Lww map"));
        assert_eq!(
            ModuleError::from(PersistenceError::Closed).kind,
            ErrorKind::SHUT_DOWN
        );
        assert_eq!(
            ModuleError::from(PersistenceError::storage("commit", "disk full")).kind,
            ErrorKind::STORAGE
        );
        assert!(PersistenceError::storage("commit", "x").is_fatal());
        assert!(!PersistenceError::InvalidInput("x".into()).is_fatal());
    }
}
