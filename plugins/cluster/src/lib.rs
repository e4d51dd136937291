//! Default cluster module (filled in by the plugin-platform work).
