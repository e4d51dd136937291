//! Embedding Hangar in your own program: the default storage and cluster
//! modules linked statically and handed to the host directly; no shared
//! library is loaded.
//!
//! Run with `cargo run -p hangar-host --example embedded`; stop with Ctrl-C.

use hangar_host::{HangarConfig, Modules};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    hangar_host::logging::init("info")?;
    let mut config = HangarConfig {
        port: 0,
        ..HangarConfig::default()
    };
    config.storage.set("backend", "memory");
    config.finish()?;
    hangar_host::run(
        config,
        Modules::embedded(hangar_storage::create, hangar_cluster::create),
        |addr| println!("embedded node listening on {addr}"),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    Ok(())
}
