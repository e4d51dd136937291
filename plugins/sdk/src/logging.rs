//! Forwards a loaded plugin's `tracing` events to the host.
//!
//! A plugin loaded from a shared library links its own copy of `tracing`, so
//! the host's subscriber never sees its events. [`install_log_sink`] (called
//! by the host through the root module right after loading) installs, as the
//! plugin copy's global default, a subscriber whose only layer flattens each
//! event into a `LogRecord` and hands it to the host's sink.
//!
//! Level filtering happens here first: events more verbose than the host's
//! maximum level never cross the boundary. The maximum is read when the sink
//! is installed; a host that changes its level installs the sink again.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Once, RwLock};

use hangar_core::abi::{FfiLogSinkBox, LogLevel, LogRecord};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

static SINK: RwLock<Option<(&'static str, FfiLogSinkBox)>> = RwLock::new(None);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static INSTALL: Once = Once::new();

/// The numeric level of a `tracing` level (1 = error ... 5 = trace).
#[must_use]
pub fn level_number(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Installs (or replaces) the host's log sink for this plugin. The first call
/// makes the forwarding subscriber this plugin's global default.
pub fn install_log_sink(plugin: &'static str, sink: FfiLogSinkBox) {
    MAX_LEVEL.store(sink.max_level(), Ordering::Relaxed);
    if let Ok(mut slot) = SINK.write() {
        *slot = Some((plugin, sink));
    }
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(ForwardLayer);
        // Fails only if something in this library already set a default, in
        // which case that subscriber keeps the events.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    tracing::callsite::rebuild_interest_cache();
}

/// The layer that hands events to the host's sink.
struct ForwardLayer;

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_number(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Ok(guard) = SINK.read() else { return };
        let Some((plugin, sink)) = guard.as_ref() else {
            return;
        };
        let mut v = FieldsVisitor::default();
        event.record(&mut v);
        let meta = event.metadata();
        sink.log(LogRecord {
            level: level_number(meta.level()),
            plugin: (*plugin).into(),
            target: meta.target().into(),
            message: v.message.as_str().into(),
            fields: v.fields.as_str().into(),
        });
    }
}

#[derive(Default)]
struct FieldsVisitor {
    message: String,
    fields: String,
}

impl Visit for FieldsVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push(field, format_args!("{value:?}"));
        }
    }
}

impl FieldsVisitor {
    fn push(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={}", field.name(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::RArc;
    use hangar_core::abi::{FfiLogSink, FfiLogSink_TO};
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(u8, String, String, String)>>>;

    #[derive(Clone)]
    struct Capture(Seen, u8);

    impl FfiLogSink for Capture {
        fn max_level(&self) -> LogLevel {
            self.1
        }
        fn log(&self, r: LogRecord<'_>) {
            self.0.lock().unwrap().push((
                r.level,
                r.plugin.to_string(),
                r.message.to_string(),
                r.fields.to_string(),
            ));
        }
    }

    #[test]
    fn t10_events_reach_the_sink_with_the_plugin_name_filtered_by_level() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = FfiLogSink_TO::from_ptr(RArc::new(Capture(seen.clone(), 3)), TD_Opaque);
        install_log_sink("test-plugin", sink);
        tracing::info!(answer = 42, "hello from the plugin");
        tracing::debug!("too verbose for the host");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, 3);
        assert_eq!(seen[0].1, "test-plugin");
        assert_eq!(seen[0].2, "hello from the plugin");
        assert_eq!(seen[0].3, "answer=42");
    }
}
