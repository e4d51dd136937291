//! Plugin SDK (filled in by the plugin-platform work).
