//! Default storage module (filled in by the storage work).
