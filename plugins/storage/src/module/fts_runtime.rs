//! Where full-text indexing runs: one dedicated worker thread at a lower
//! CPU priority (Linux `nice` 10) than the write path.
//!
//! Indexing a document costs about as much CPU as applying it, so on a
//! busy node the background indexer and the writers compete for the same
//! cores. Running it at a lower priority lets the scheduler favour the
//! write path: under a burst, writes keep their speed and the index lags
//! (searches wait for it: read-your-writes holds); with spare CPU the
//! indexer runs at full speed. Under a sustained overload the writer queue
//! fills up and writers index the excess themselves (the `IndexWriter`'s
//! back-pressure), so memory stays bounded.

use std::sync::Arc;

use hangar_core::ModuleResult;
use hangar_plugin_sdk::PluginRuntime;

/// The nice value of the indexing thread (0 is the default, 19 the lowest).
pub(crate) const INDEXER_NICE: i32 = 10;

/// A one-worker runtime whose worker runs at [`INDEXER_NICE`].
///
/// # Errors
/// As [`PluginRuntime::new`].
pub(crate) fn indexing_runtime() -> ModuleResult<Arc<PluginRuntime>> {
    let rt = PluginRuntime::new("hangar-storage-fts", 1)?;
    // The runtime has one worker: this task runs on it and lowers its
    // priority before any indexing task is spawned behind it.
    rt.handle()
        .spawn(async { lower_this_threads_priority(INDEXER_NICE) });
    Ok(rt)
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority(nice: i32) {
    // SAFETY: `gettid` and `setpriority` take plain integers and touch no
    // memory of ours; on Linux the nice value is per thread, so this
    // changes only the calling (indexer) thread.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the indexing thread's priority; indexing runs at normal priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_nice: i32) {}
