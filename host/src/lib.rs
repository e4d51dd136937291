//! The Hangar host: the `hangar` node as a library.
//!
//! # Layout
//!
//! - `config`: [`HangarConfig`]: defaults, TOML file, environment, flags.
//! - `plugin`: finding, checking, loading and instantiating module plugins.
//! - `factory`: [`Node`]: the wiring order (core services, cluster, storage,
//!   cross-wiring, start) and the reverse shutdown.
//! - `metrics`: the metrics registry behind `/metrics`.
//! - `server`: the network front end on the node's port.
//! - `protocol`: the TopGun client wire protocol (frames, messages, limits).
//! - `bench`: the load generator behind `hangar bench` (a protocol client).
//! - `logging`: the `tracing` subscriber and the plugin-boundary error hook.
//!
//! Embedding: build a [`HangarConfig`], pick [`Modules::embedded`] with your
//! module constructors (no shared library involved) or [`Modules::plugins`],
//! then [`start`] and later [`Running::shutdown`] — or [`run`] with your own
//! shutdown future.

pub mod bench;
pub mod config;
pub mod factory;
pub mod logging;
pub mod metrics;
pub mod plugin;
pub mod protocol;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::HangarConfig;
pub use factory::{Modules, Node, StartError};

/// A node that is up: modules started and the port listening.
pub struct Running {
    /// The node.
    pub node: Arc<Node>,
    /// Where it listens.
    pub addr: SocketAddr,
    listening: server::Listening,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The front end's shared state (connections, fan-out, topics).
    #[must_use]
    pub fn front_end(&self) -> &Arc<server::FrontEnd> {
        self.listening.front_end()
    }

    /// Shuts down in reverse order: the network drains first, then the
    /// cluster module, then storage.
    pub async fn shutdown(self) {
        tracing::info!("shutdown: network front end");
        self.listening.stop().await;
        self.node.shutdown().await;
    }
}

/// Binds the node's port, builds, wires and starts the modules, then serves.
///
/// The port is bound first so that the cluster module can advertise the
/// node's real WebSocket URL (`cluster.client_endpoint`, when not set in the
/// configuration) in the partition map; connections are served only after
/// the modules are up (step 5).
///
/// # Errors
/// [`StartError`] naming the step that failed; modules that were started are
/// shut down again.
pub async fn start(mut config: HangarConfig, modules: Modules) -> Result<Running, StartError> {
    tracing::info!(host = %config.host, port = config.port, "reserving the client port");
    let bound = server::bind(&config).await?;
    if config.cluster.client_endpoint.is_none() {
        config.cluster.client_endpoint = Some(match &config.cluster.advertise_host {
            Some(h) => format!("ws://{h}:{}/ws", bound.addr.port()),
            None => bound.ws_url(),
        });
    }
    let node = Arc::new(Node::start(config, modules).await?);
    node.link.attach_node(&node);
    tracing::info!("step 5: network front end");
    let epochs = match server::epochs::Epochs::open(
        node.config.sync.clone(),
        Some(node.config.host_state_dir()),
    ) {
        Ok(e) => e,
        Err(e) => {
            node.shutdown().await;
            return Err(factory::StartError::at(factory::Step::Network, e));
        }
    };
    let listening = server::serve(bound, node.clone(), Arc::new(epochs));
    let addr = listening.addr;
    tracing::info!(%addr, node = %node.config.node_id, "node ready");
    Ok(Running {
        node,
        addr,
        listening,
    })
}

/// Runs a node until `shutdown` resolves, calling `ready` with the bound
/// address once it listens.
///
/// # Errors
/// [`StartError`] when start-up fails.
pub async fn run(
    config: HangarConfig,
    modules: Modules,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let running = start(config, modules).await?;
    ready(running.addr);
    shutdown.await;
    tracing::info!("shutdown requested");
    running.shutdown().await;
    Ok(())
}
