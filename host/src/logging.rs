//! Logging: a `tracing` subscriber on stderr, filtered by the configured
//! directives, and the hook that reports plugin-boundary errors through it.
//!
//! # Plugin events
//!
//! A plugin's events reach the host through its log sink
//! (`plugin/log_sink.rs`) and are re-emitted under the one target
//! `plugin`, since a `tracing` target is fixed where the event is written.
//! So that the directives an operator writes for a plugin's modules work
//! (`hangar_cluster::migration=debug`), the sink applies them itself to the
//! event's origin (the module that wrote it) through [`OriginFilter`], and
//! the subscriber lets every `plugin` event through. A `plugin=<level>`
//! directive still works: it applies to every origin no directive names.

use std::str::FromStr;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

static ORIGINS: OnceLock<OriginFilter> = OnceLock::new();

/// Installs the global subscriber (once; later calls are ignored) and the
/// boundary-error hook.
///
/// # Errors
/// When `filter` is not a valid filter directive string.
pub fn init(filter: &str) -> Result<(), String> {
    let invalid = |e: &dyn std::fmt::Display| format!("invalid log filter {filter:?}: {e}");
    // Checked whole first, so the error names what the operator wrote.
    EnvFilter::try_new(filter).map_err(|e| invalid(&e))?;
    let origins = OriginFilter::parse(filter).map_err(|e| invalid(&e))?;
    let env = EnvFilter::try_new(origins.host_directives()).map_err(|e| invalid(&e))?;
    let installed = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .is_ok();
    if installed {
        let _ = ORIGINS.set(origins);
    }
    hangar_core::abi::set_boundary_error_hook(|e| {
        tracing::error!(error = %e, "a plugin call failed; answering with a conservative default");
    });
    Ok(())
}

/// The directives [`init`] installed, as applied to plugin events; `None`
/// when the host's subscriber was installed by someone else (an embedding
/// program), whose own filter then decides on target `plugin`.
#[must_use]
pub fn origin_filter() -> Option<&'static OriginFilter> {
    ORIGINS.get()
}

/// The level directives of a filter string, matched against a plugin
/// event's origin as the subscriber matches a target: the directive with
/// the longest target that the origin starts with decides; else the
/// `plugin` directive; else the bare level (off when there is none, as
/// for the subscriber).
/// Span and field directives (`target[span{..}]=level`) are left to the
/// subscriber: a plugin event carries no spans across the boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginFilter {
    directives: Vec<String>,
    default: LevelFilter,
    plugin: Option<LevelFilter>,
    targets: Vec<(String, LevelFilter)>,
}

impl OriginFilter {
    /// Parses `filter` (comma-separated `level`, `target` or
    /// `target=level`).
    ///
    /// # Errors
    /// A level that is not one of off, error, warn, info, debug, trace.
    pub fn parse(filter: &str) -> Result<Self, String> {
        let mut f = Self {
            directives: Vec::new(),
            default: LevelFilter::OFF,
            plugin: None,
            targets: Vec::new(),
        };
        for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if d.contains('[') {
                f.directives.push(d.to_string());
                continue;
            }
            let (target, level) = match d.split_once('=') {
                Some((t, l)) => (
                    Some(t.trim()),
                    LevelFilter::from_str(l.trim())
                        .map_err(|_| format!("{l:?} in {d:?} is not a level"))?,
                ),
                None => match LevelFilter::from_str(d) {
                    Ok(l) => (None, l),
                    Err(_) => (Some(d), LevelFilter::TRACE),
                },
            };
            match target {
                None => f.default = level,
                Some("plugin") => {
                    f.plugin = Some(level);
                    continue;
                }
                Some(t) => f.targets.push((t.to_string(), level)),
            }
            f.directives.push(d.to_string());
        }
        Ok(f)
    }

    /// The directives the host's subscriber gets: the operator's, with
    /// target `plugin` let through whole (this filter decides).
    #[must_use]
    pub fn host_directives(&self) -> String {
        let mut all = self.directives.clone();
        all.push("plugin=trace".into());
        all.join(",")
    }

    /// The level that decides for events of `origin`.
    #[must_use]
    pub fn level_for(&self, origin: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| origin.starts_with(t.as_str()))
            .max_by_key(|(t, _)| t.len())
            .map(|(_, l)| *l)
            .or(self.plugin)
            .unwrap_or(self.default)
    }

    /// Whether an event of `origin` at `level` is logged.
    #[must_use]
    pub fn enabled(&self, origin: &str, level: tracing::Level) -> bool {
        self.level_for(origin) >= level
    }

    /// The most verbose level any origin may be logged at: what a plugin
    /// needs to send across the boundary at all.
    #[must_use]
    pub fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .chain(self.plugin)
            .chain([self.default])
            .max()
            .unwrap_or(LevelFilter::OFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn t10_the_longest_matching_target_decides_then_plugin_then_the_default() {
        let f = OriginFilter::parse(
            "info, hangar_cluster=warn,hangar_cluster::migration=debug,openraft=off",
        )
        .unwrap();
        assert!(f.enabled("hangar_cluster::migration::ingest", Level::DEBUG));
        assert!(!f.enabled("hangar_cluster::migration::ingest", Level::TRACE));
        assert!(!f.enabled("hangar_cluster::formation", Level::INFO));
        assert!(f.enabled("hangar_cluster::formation", Level::WARN));
        assert!(!f.enabled("openraft::core", Level::ERROR));
        assert!(f.enabled("hangar_storage::module", Level::INFO));
        assert!(!f.enabled("hangar_storage::module", Level::DEBUG));
        assert_eq!(f.max(), LevelFilter::DEBUG);

        let p = OriginFilter::parse("warn,plugin=debug,hangar_storage=error").unwrap();
        assert!(
            p.enabled("hangar_cluster::x", Level::DEBUG),
            "plugin= covers the rest"
        );
        assert!(
            !p.enabled("hangar_storage::x", Level::WARN),
            "a named target wins"
        );
        assert_eq!(
            OriginFilter::parse("").unwrap().level_for("x"),
            LevelFilter::OFF,
            "no bare level: off, as the subscriber"
        );
    }

    #[test]
    fn t11_the_subscriber_lets_plugin_events_through_and_keeps_the_rest() {
        let f = OriginFilter::parse("info,plugin=warn,a[s{x=1}]=debug,hangar_host=debug").unwrap();
        assert_eq!(
            f.host_directives(),
            "info,a[s{x=1}]=debug,hangar_host=debug,plugin=trace"
        );
        assert!(OriginFilter::parse("hangar_cluster=loud")
            .unwrap_err()
            .contains("not a level"));
        assert!(init("hangar_cluster=loud").is_err());
    }
}
