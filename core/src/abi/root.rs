//! The root module every plugin exports, the dependency bundles that cross
//! into a plugin's constructor, and the `export_plugin!` macro.

use std::sync::Arc;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{ROption, RVec};
use abi_stable::StableAbi;

use super::cluster::{cluster_to_ffi, FfiClusterModuleBox};
use super::guard::{guard, FfiResult};
use super::manifest::{PluginKind, PluginManifest};
use super::partition::{partition_view_from_ffi, partition_view_to_ffi, FfiPartitionViewBox};
use super::services::{
    clock_from_ffi, clock_to_ffi, metrics_from_ffi, metrics_to_ffi, peer_resolver_from_ffi,
    peer_resolver_to_ffi, FfiClockBox, FfiLogSinkBox, FfiMetricsBox, FfiPeerResolverBox,
};
use super::storage::{storage_to_ffi, FfiStorageModuleBox};
use crate::config::{decode_config, encode_config, ClusterModuleConfig, StorageModuleConfig};
use crate::error::{ErrorKind, ModuleError, ModuleResult};
use crate::module::cluster::{ClusterDeps, ClusterModule};
use crate::module::storage::{StorageDeps, StorageModule};
use crate::settings::SettingsDescription;

/// [`StorageDeps`] as they cross the boundary.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiStorageDeps {
    /// The clock.
    pub clock: FfiClockBox,
    /// The metrics sink.
    pub metrics: FfiMetricsBox,
    /// The partition view.
    pub partitions: FfiPartitionViewBox,
}

impl FfiStorageDeps {
    /// Exports native deps.
    #[must_use]
    pub fn from_native(deps: &StorageDeps) -> Self {
        Self {
            clock: clock_to_ffi(deps.clock.clone()),
            metrics: metrics_to_ffi(deps.metrics.clone()),
            partitions: partition_view_to_ffi(deps.partitions.clone()),
        }
    }

    /// Wraps received deps as native ones.
    #[must_use]
    pub fn into_native(self) -> StorageDeps {
        StorageDeps {
            clock: clock_from_ffi(self.clock),
            metrics: metrics_from_ffi(self.metrics),
            partitions: partition_view_from_ffi(self.partitions),
        }
    }
}

/// [`ClusterDeps`] as they cross the boundary.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiClusterDeps {
    /// The clock.
    pub clock: FfiClockBox,
    /// The metrics sink.
    pub metrics: FfiMetricsBox,
    /// The peer resolver, if any.
    pub peer_resolver: ROption<FfiPeerResolverBox>,
}

impl FfiClusterDeps {
    /// Exports native deps.
    #[must_use]
    pub fn from_native(deps: &ClusterDeps) -> Self {
        Self {
            clock: clock_to_ffi(deps.clock.clone()),
            metrics: metrics_to_ffi(deps.metrics.clone()),
            peer_resolver: deps.peer_resolver.clone().map(peer_resolver_to_ffi).into(),
        }
    }

    /// Wraps received deps as native ones.
    #[must_use]
    pub fn into_native(self) -> ClusterDeps {
        ClusterDeps {
            clock: clock_from_ffi(self.clock),
            metrics: metrics_from_ffi(self.metrics),
            peer_resolver: self.peer_resolver.into_option().map(peer_resolver_from_ffi),
        }
    }
}

/// The root module of a plugin: an abi_stable prefix type, so later ABI
/// minors may append fields after the one marked `last_prefix_field`.
///
/// # Contract
/// None of these functions may unwind; `manifest` MUST NOT run plugin logic.
/// A plugin of one kind answers the other kind's constructor with
/// [`ErrorKind::UNSUPPORTED`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(panic))]
pub struct PluginRoot {
    /// The plugin's manifest (the same as in its declaration).
    pub manifest: extern "C" fn() -> PluginManifest,
    /// Installs the host's log sink; the plugin forwards its events there.
    pub set_log_sink: extern "C" fn(FfiLogSinkBox) -> FfiResult<()>,
    /// Builds the storage module from a msgpack `StorageModuleConfig`.
    pub create_storage: extern "C" fn(RVec<u8>, FfiStorageDeps) -> FfiResult<FfiStorageModuleBox>,
    /// Builds the cluster module from a msgpack `ClusterModuleConfig`.
    pub create_cluster: extern "C" fn(RVec<u8>, FfiClusterDeps) -> FfiResult<FfiClusterModuleBox>,
    /// The plugin's settings: a msgpack
    /// [`crate::settings::SettingsDescription`] (defaults, one line per key,
    /// the environment variables it reads). Runs no module code: the host
    /// calls it after the version checks, before the constructor, to
    /// collect the variables, and `hangar plugins inspect` prints it.
    #[sabi(last_prefix_field)]
    pub describe_settings: extern "C" fn() -> FfiResult<RVec<u8>>,
}

impl RootModule for PluginRootRef {
    abi_stable::declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "hangar_plugin";
    const NAME: &'static str = "hangar_plugin";
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}

/// Signature of a storage-module constructor a plugin exports.
pub type StorageCtor = fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>;
/// Signature of a cluster-module constructor a plugin exports.
pub type ClusterCtor = fn(ClusterModuleConfig, ClusterDeps) -> ModuleResult<Arc<dyn ClusterModule>>;
/// Signature of the hook that installs a log sink inside a plugin.
pub type LogSinkHook = fn(&'static str, FfiLogSinkBox);

fn wrong_kind(manifest: &PluginManifest, wanted: PluginKind) -> ModuleError {
    let found = PluginKind::from_u8(manifest.kind).map_or("unknown", PluginKind::as_str);
    ModuleError::new(
        ErrorKind::UNSUPPORTED,
        format!(
            "plugin {} is a {found} plugin; it has no {wanted} module",
            manifest.name
        ),
    )
}

/// Body of an exported `create_storage`. Not for direct use: see
/// [`crate::export_plugin!`].
#[doc(hidden)]
pub fn __create_storage(
    manifest: &PluginManifest,
    ctor: Option<StorageCtor>,
    config: &RVec<u8>,
    deps: FfiStorageDeps,
) -> FfiResult<FfiStorageModuleBox> {
    guard("create_storage", || {
        let ctor = ctor.ok_or_else(|| wrong_kind(manifest, PluginKind::Storage))?;
        let config: StorageModuleConfig = decode_config(config.as_slice())?;
        ctor(config, deps.into_native()).map(storage_to_ffi)
    })
}

/// Body of an exported `create_cluster`. Not for direct use: see
/// [`crate::export_plugin!`].
#[doc(hidden)]
pub fn __create_cluster(
    manifest: &PluginManifest,
    ctor: Option<ClusterCtor>,
    config: &RVec<u8>,
    deps: FfiClusterDeps,
) -> FfiResult<FfiClusterModuleBox> {
    guard("create_cluster", || {
        let ctor = ctor.ok_or_else(|| wrong_kind(manifest, PluginKind::Cluster))?;
        let config: ClusterModuleConfig = decode_config(config.as_slice())?;
        ctor(config, deps.into_native()).map(cluster_to_ffi)
    })
}

/// Body of an exported `describe_settings`. Not for direct use: see
/// [`crate::export_plugin!`].
#[doc(hidden)]
pub fn __describe_settings(
    describe: fn() -> ModuleResult<SettingsDescription>,
) -> FfiResult<RVec<u8>> {
    guard("describe_settings", || {
        let description = describe()?;
        encode_config(&description).map(RVec::from)
    })
}

/// Body of an exported `set_log_sink`. Not for direct use.
#[doc(hidden)]
pub fn __set_log_sink(
    manifest: &PluginManifest,
    hook: Option<LogSinkHook>,
    sink: FfiLogSinkBox,
) -> FfiResult<()> {
    guard("set_log_sink", || {
        if let Some(hook) = hook {
            hook(manifest.name.as_str(), sink);
        }
        Ok(())
    })
}

/// Exports a plugin: its declaration, its abi_stable root module and the
/// constructors, under symbols named after the calling crate.
///
/// ```ignore
/// hangar_core::export_plugin! {
///     kind: Storage,
///     name: env!("CARGO_PKG_NAME"),
///     version: env!("CARGO_PKG_VERSION"),
///     description: "my storage",
///     storage: my_crate::create,          // fn(StorageModuleConfig, StorageDeps) -> ModuleResult<Arc<dyn StorageModule>>
///     settings: my_crate::MySettings,     // optional: a `hangar_core::settings::Settings` type
///     log_sink: my_sdk::install_log_sink, // optional: fn(&'static str, FfiLogSinkBox)
/// }
/// ```
///
/// Plugin authors normally use the SDK's `export_storage_plugin!` /
/// `export_cluster_plugin!`, which also forward `tracing` events.
#[macro_export]
macro_rules! export_plugin {
    (
        kind: $kind:ident,
        name: $name:expr,
        version: $version:expr,
        description: $desc:expr,
        $(storage: $storage:expr,)?
        $(cluster: $cluster:expr,)?
        $(log_sink: $log:expr,)?
        $(settings: $settings:ty,)?
        $(abi_version: ($maj:expr, $min:expr, $pat:expr),)?
    ) => {
        const _: () = {
            use $crate::abi::__reexports::abi_stable;
            use $crate::abi::PluginManifest;

            const MANIFEST: PluginManifest = PluginManifest::for_this_build(
                $name,
                $crate::abi::PluginKind::$kind,
                $version,
                $desc,
            );

            #[export_name = concat!("hangar_plugin_decl_", env!("CARGO_CRATE_NAME"))]
            #[used]
            static DECLARATION: $crate::abi::PluginDeclaration =
                $crate::abi::PluginDeclaration::new(MANIFEST) $(.with_abi_version($maj, $min, $pat))?;

            extern "C" fn manifest() -> PluginManifest {
                MANIFEST
            }

            extern "C" fn set_log_sink(
                sink: $crate::abi::FfiLogSinkBox,
            ) -> $crate::abi::FfiResult<()> {
                let hook: Option<$crate::abi::LogSinkHook> = None $(.or(Some($log)))?;
                $crate::abi::__set_log_sink(&MANIFEST, hook, sink)
            }

            extern "C" fn create_storage(
                config: abi_stable::std_types::RVec<u8>,
                deps: $crate::abi::FfiStorageDeps,
            ) -> $crate::abi::FfiResult<$crate::abi::FfiStorageModuleBox> {
                let ctor: Option<$crate::abi::StorageCtor> = None $(.or(Some($storage)))?;
                $crate::abi::__create_storage(&MANIFEST, ctor, &config, deps)
            }

            extern "C" fn create_cluster(
                config: abi_stable::std_types::RVec<u8>,
                deps: $crate::abi::FfiClusterDeps,
            ) -> $crate::abi::FfiResult<$crate::abi::FfiClusterModuleBox> {
                let ctor: Option<$crate::abi::ClusterCtor> = None $(.or(Some($cluster)))?;
                $crate::abi::__create_cluster(&MANIFEST, ctor, &config, deps)
            }

            extern "C" fn describe_settings() -> $crate::abi::FfiResult<
                abi_stable::std_types::RVec<u8>,
            > {
                #[allow(unused_mut, unused_assignments, reason = "replaced when the plugin names a settings type")]
                let mut describe: fn() -> $crate::ModuleResult<$crate::settings::SettingsDescription> =
                    || Ok($crate::settings::no_settings());
                $(describe = <$settings as $crate::settings::Settings>::describe;)?
                $crate::abi::__describe_settings(describe)
            }

            fn root_module() -> $crate::abi::PluginRootRef {
                use abi_stable::prefix_type::PrefixTypeTrait;
                $crate::abi::PluginRoot {
                    manifest,
                    set_log_sink,
                    create_storage,
                    create_cluster,
                    describe_settings,
                }
                .leak_into_prefix()
            }

            extern "C" fn root_loader() -> abi_stable::library::RootModuleResult {
                abi_stable::library::__call_root_module_loader(root_module)
            }

            #[export_name = concat!("hangar_plugin_root_", env!("CARGO_CRATE_NAME"))]
            #[used]
            static ROOT: abi_stable::library::LibHeader = unsafe {
                // SAFETY: `root_loader` returns a `PrefixRef` made from a
                // `PluginRootRef`, which is what `from_constructor` requires.
                abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginRootRef>(
                    root_loader,
                    abi_stable::library::CheckTypeLayout::Yes,
                )
            };
        };
    };
}
