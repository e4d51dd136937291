//! Logging: a `tracing` subscriber on stderr, filtered by the configured
//! directives, and the hook that reports plugin-boundary errors through it.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are ignored) and the
/// boundary-error hook.
///
/// # Errors
/// When `filter` is not a valid filter directive string.
pub fn init(filter: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    hangar_core::abi::set_boundary_error_hook(|e| {
        tracing::error!(error = %e, "a plugin call failed; answering with a conservative default");
    });
    Ok(())
}
