//! The Hangar host library (filled in by the plugin-platform work).
