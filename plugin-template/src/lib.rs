//! Plugin template (filled in by the plugin-platform work).
