//! The factory: builds a node's modules in the wiring order below and
//! takes them down in reverse.
//!
//! 1. core services: HLC, metrics;
//! 2. cluster module, given its config and `{clock, metrics}`;
//! 3. storage module, given its config and `{clock, metrics, partition view}`;
//! 4. cross-wiring: the cluster module receives the storage accessor and
//!    the host link; the storage module receives the change feed;
//! 5. the modules start (storage first: the cluster may apply replicated
//!    changes as soon as it runs), then the network front end.
//!
//! Each step is logged; a failure names the step and its cause. Modules come
//! from plugins (the default) or, when embedding, from constructors passed in.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use hangar_core::abi::PluginKind;
use hangar_core::config::{ClusterModuleConfig, StorageModuleConfig};
use hangar_core::hlc::Hlc;
use hangar_core::module::cluster::{ClusterDeps, ClusterModule};
use hangar_core::module::storage::{StorageDeps, StorageModule};
use hangar_core::ModuleResult;

use hangar_core::module::local_node::LocalNode;
use hangar_core::module::storage_types::{ChangeEvent, ChangeSink};

use crate::config::HangarConfig;
use crate::metrics::Registry;
use crate::plugin::{self, Expectation, LoadedPlugin};
use crate::server::link::HostLink;

/// Builds a storage module in-process (embedding).
pub type StorageFactory = Arc<
    dyn Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>> + Send + Sync,
>;
/// Builds a cluster module in-process (embedding).
pub type ClusterFactory = Arc<
    dyn Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>> + Send + Sync,
>;

/// Where a node's modules come from.
#[derive(Clone, Default)]
pub struct Modules {
    /// `None`: the storage plugin named in the config.
    pub storage: Option<StorageFactory>,
    /// `None`: the cluster plugin named in the config.
    pub cluster: Option<ClusterFactory>,
}

impl fmt::Debug for Modules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Modules")
            .field(
                "storage",
                &self.storage.as_ref().map_or("plugin", |_| "embedded"),
            )
            .field(
                "cluster",
                &self.cluster.as_ref().map_or("plugin", |_| "embedded"),
            )
            .finish()
    }
}

impl Modules {
    /// Both modules from plugins (the default).
    #[must_use]
    pub fn plugins() -> Self {
        Self::default()
    }

    /// Both modules built in-process from the given constructors: no shared
    /// library is loaded.
    pub fn embedded(
        storage: impl Fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
            + Send
            + Sync
            + 'static,
        cluster: impl Fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            storage: Some(Arc::new(storage)),
            cluster: Some(Arc::new(cluster)),
        }
    }
}

/// A start-up step, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Configuration, HLC, metrics.
    CoreServices,
    /// Loading and building the cluster module.
    ClusterModule,
    /// Loading and building the storage module.
    StorageModule,
    /// Handing the storage accessor to the cluster module.
    CrossWiring,
    /// Starting the storage module.
    StartStorage,
    /// Starting the cluster module.
    StartCluster,
    /// Binding the network front end.
    Network,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CoreServices => "1 (core services)",
            Self::ClusterModule => "2 (cluster module)",
            Self::StorageModule => "3 (storage module)",
            Self::CrossWiring => "4 (cross-wiring)",
            Self::StartStorage => "5 (starting the storage module)",
            Self::StartCluster => "5 (starting the cluster module)",
            Self::Network => "5 (network front end)",
        })
    }
}

/// Start-up failed at a step.
#[derive(Debug, thiserror::Error)]
#[error("start-up failed at step {step}: {cause}")]
pub struct StartError {
    /// The step.
    pub step: Step,
    /// What went wrong.
    pub cause: String,
}

impl StartError {
    pub(crate) fn at(step: Step, cause: impl fmt::Display) -> Self {
        Self {
            step,
            cause: cause.to_string(),
        }
    }
}

/// A node's modules and core services, built and wired.
pub struct Node {
    /// The effective configuration.
    pub config: HangarConfig,
    /// The node's clock.
    pub clock: Arc<Hlc>,
    /// The metrics registry.
    pub metrics: Arc<Registry>,
    /// The cluster module.
    pub cluster: Arc<dyn ClusterModule>,
    /// The storage module.
    pub storage: Arc<dyn StorageModule>,
    /// The plugins loaded (empty when embedded).
    pub plugins: Vec<LoadedPlugin>,
    /// The cluster module's handle on this node (forwarded writes, events
    /// from peers, topology changes).
    pub link: Arc<HostLink>,
}

/// The storage module's change sink: every applied change goes to the
/// cluster module's change feed (Merkle trees, events for other nodes) and
/// to this node's `SERVER_EVENT` subscribers.
struct ChangeFeed {
    cluster: Arc<dyn ClusterModule>,
    link: Arc<HostLink>,
}

impl ChangeSink for ChangeFeed {
    fn on_change(&self, event: &ChangeEvent) {
        self.cluster.observe_change(event);
        self.link.deliver_change(event);
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.config.node_id)
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

fn load_plugin(
    config: &HangarConfig,
    kind: PluginKind,
) -> Result<LoadedPlugin, crate::plugin::LoadError> {
    let (reference, storage) = match kind {
        PluginKind::Storage => (&config.plugins.storage, true),
        PluginKind::Cluster => (&config.plugins.cluster, false),
    };
    let dirs: Vec<PathBuf> = plugin::search_dirs(config.plugins.dir.as_deref());
    let path = plugin::resolve(reference, &dirs)?;
    tracing::info!(kind = %kind, path = %path.display(), "loading plugin");
    let loaded = plugin::load(
        &path,
        &Expectation {
            kind,
            version: config.version_req(storage),
        },
    )?;
    tracing::info!(
        kind = %kind,
        plugin = %loaded.manifest.name,
        version = %loaded.manifest.version,
        abi = %loaded.manifest.abi_version,
        "plugin passed its checks"
    );
    Ok(loaded)
}

impl Node {
    /// Steps 1-5 (without the network): builds, wires and starts the modules.
    ///
    /// # Errors
    /// [`StartError`] naming the step that failed. Modules already started are
    /// shut down again before the error is returned.
    pub async fn start(config: HangarConfig, modules: Modules) -> Result<Self, StartError> {
        tracing::info!(node = %config.node_id, "step 1: core services (HLC, metrics)");
        let clock =
            Arc::new(Hlc::new(&config.node_id).map_err(|e| StartError::at(Step::CoreServices, e))?);
        let metrics = Arc::new(Registry::default());
        let mut plugins = Vec::new();

        tracing::info!("step 2: cluster module");
        let cluster_deps = ClusterDeps {
            clock: clock.clone(),
            metrics: metrics.clone(),
            peer_resolver: None,
        };
        let cluster = match &modules.cluster {
            Some(f) => f(config.cluster_module_config(), cluster_deps)
                .map_err(|e| StartError::at(Step::ClusterModule, e))?,
            None => {
                let p = load_plugin(&config, PluginKind::Cluster)
                    .map_err(|e| StartError::at(Step::ClusterModule, e))?;
                let m =
                    plugin::instantiate_cluster(&p, &config.cluster_module_config(), &cluster_deps)
                        .map_err(|e| StartError::at(Step::ClusterModule, e))?;
                plugins.push(p);
                m
            }
        };
        let ci = cluster.info();
        tracing::info!(module = %ci.name, version = %ci.version, "cluster module: {}", ci.description);

        tracing::info!("step 3: storage module");
        let storage_deps = StorageDeps {
            clock: clock.clone(),
            metrics: metrics.clone(),
            partitions: cluster.partition_view(),
        };
        let storage = match &modules.storage {
            Some(f) => f(config.storage_module_config(), storage_deps)
                .map_err(|e| StartError::at(Step::StorageModule, e))?,
            None => {
                let p = load_plugin(&config, PluginKind::Storage)
                    .map_err(|e| StartError::at(Step::StorageModule, e))?;
                let m =
                    plugin::instantiate_storage(&p, &config.storage_module_config(), &storage_deps)
                        .map_err(|e| StartError::at(Step::StorageModule, e))?;
                plugins.push(p);
                m
            }
        };
        let si = storage.info();
        tracing::info!(module = %si.name, version = %si.version, "storage module: {}", si.description);

        tracing::info!(
            "step 4: cross-wiring: storage accessor and host link into the cluster module, change feed into storage"
        );
        cluster
            .attach_storage(storage.accessor())
            .map_err(|e| StartError::at(Step::CrossWiring, e))?;
        let link = Arc::new(HostLink::on_current_runtime());
        cluster
            .attach_node(link.clone())
            .map_err(|e| StartError::at(Step::CrossWiring, e))?;
        storage.set_change_sink(Arc::new(ChangeFeed {
            cluster: cluster.clone(),
            link: link.clone(),
        }));

        tracing::info!("step 5: starting the storage module");
        storage
            .start()
            .await
            .map_err(|e| StartError::at(Step::StartStorage, e))?;
        tracing::info!("step 5: starting the cluster module");
        if let Err(e) = cluster.start().await {
            if let Err(e2) = storage.shutdown().await {
                tracing::error!(error = %e2, "storage shutdown after a failed start also failed");
            }
            return Err(StartError::at(Step::StartCluster, e));
        }
        Ok(Self {
            config,
            clock,
            metrics,
            cluster,
            storage,
            plugins,
            link,
        })
    }

    /// Shuts the modules down in reverse order: the cluster module first
    /// (it flushes replication), then storage (it drains, flushes, closes).
    /// Errors are logged, and shutdown continues.
    pub async fn shutdown(&self) {
        tracing::info!("shutdown: cluster module");
        if let Err(e) = self.cluster.shutdown().await {
            tracing::error!(error = %e, "cluster module shutdown failed");
        }
        tracing::info!("shutdown: storage module");
        if let Err(e) = self.storage.shutdown().await {
            tracing::error!(error = %e, "storage module shutdown failed");
        }
        tracing::info!("shutdown complete");
    }
}
