//! A loaded plugin's `tracing` events reach the host's subscriber, carrying
//! the plugin's name, filtered at the host's level.

use std::sync::{Arc, Mutex};

use hangar_core::abi::PluginKind;
use hangar_host::plugin;
use hangar_tests::support::{load, storage_config, storage_deps};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

struct Capture(Seen);

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        if f.name() == "plugin" {
            self.plugin = v.to_string();
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        match f.name() {
            "message" => self.message = format!("{v:?}"),
            "plugin" => self.plugin = format!("{v:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        e.record(&mut f);
        self.0.lock().unwrap().push((
            e.metadata().target().to_string(),
            f.plugin.trim_matches('"').to_string(),
            f.message,
        ));
    }
}

#[test]
fn t10_plugin_events_reach_the_host_subscriber_with_the_plugin_name_at_the_host_level() {
    let seen: Seen = Arc::default();
    let subscriber = tracing_subscriber::registry()
        .with(Capture(seen.clone()))
        .with(LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let p = load("fixture_method_panic", PluginKind::Storage).unwrap();
    let _m = plugin::instantiate_storage(&p, &storage_config("n"), &storage_deps("n")).unwrap();

    let seen = seen.lock().unwrap();
    let from_plugin: Vec<_> = seen.iter().filter(|(t, _, _)| t == "plugin").collect();
    assert!(
        from_plugin
            .iter()
            .any(|(_, p, m)| p == "fixture_method_panic" && m == "fixture constructed"),
        "info event forwarded with the plugin name: {seen:?}"
    );
    assert!(
        !from_plugin
            .iter()
            .any(|(_, _, m)| m.contains("debug detail")),
        "debug event filtered at the host's INFO level: {seen:?}"
    );
}
