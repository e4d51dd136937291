//! The host's log sink: plugin events re-emitted into the host's `tracing`
//! subscriber, under target `plugin`, with the plugin's name and the
//! event's origin (the module that wrote it) as fields. When the host's
//! own subscriber is installed ([`crate::logging::init`]), the operator's
//! directives are applied here to the origin, so `hangar_cluster::migration=debug`
//! means what it says for a plugin too.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RArc;
use hangar_core::abi::{FfiLogSink, FfiLogSinkBox, FfiLogSink_TO, LogLevel, LogRecord};
use tracing::level_filters::LevelFilter;
use tracing::Level;

/// Re-emits plugin log records as host `tracing` events.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostLogSink;

impl HostLogSink {
    /// The sink as it crosses the boundary.
    #[must_use]
    pub fn boxed() -> FfiLogSinkBox {
        FfiLogSink_TO::from_ptr(RArc::new(Self), TD_Opaque)
    }
}

/// The host's current maximum level as a [`LogLevel`].
#[must_use]
pub fn host_max_level() -> LogLevel {
    level_number(LevelFilter::current())
}

fn level_number(l: LevelFilter) -> LogLevel {
    match l {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

impl FfiLogSink for HostLogSink {
    fn max_level(&self) -> LogLevel {
        match crate::logging::origin_filter() {
            Some(f) => level_number(f.max()),
            None => host_max_level(),
        }
    }

    fn log(&self, r: LogRecord<'_>) {
        let (plugin, origin, msg, fields) = (
            r.plugin.as_str(),
            r.target.as_str(),
            r.message.as_str(),
            r.fields.as_str(),
        );
        let level = match r.level {
            1 => Level::ERROR,
            2 => Level::WARN,
            3 => Level::INFO,
            4 => Level::DEBUG,
            _ => Level::TRACE,
        };
        if crate::logging::origin_filter().is_some_and(|f| !f.enabled(origin, level)) {
            return;
        }
        match level {
            Level::ERROR => tracing::error!(target: "plugin", plugin, origin, fields, "{msg}"),
            Level::WARN => tracing::warn!(target: "plugin", plugin, origin, fields, "{msg}"),
            Level::INFO => tracing::info!(target: "plugin", plugin, origin, fields, "{msg}"),
            Level::DEBUG => tracing::debug!(target: "plugin", plugin, origin, fields, "{msg}"),
            _ => tracing::trace!(target: "plugin", plugin, origin, fields, "{msg}"),
        }
    }
}
