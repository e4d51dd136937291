//! The native module traits: what the host and plugin internals program
//! against. Their stable-ABI mirrors live in [`crate::abi`].
//!
//! Every trait here takes and returns the FFI-safe domain types of
//! [`crate::types`] and of this module, so that the ABI mirror is the same
//! surface with only futures and trait objects swapped.
//!
//! Futures returned by module methods MUST be executor-agnostic: the host may
//! poll them on any executor. A module that needs tokio spawns its work on its
//! own runtime and returns a future that awaits the spawned task.

use std::future::Future;
use std::pin::Pin;

use abi_stable::std_types::RString;
use abi_stable::StableAbi;

use crate::error::ModuleResult;

pub mod accessor;
pub mod cluster;
pub mod cluster_types;
pub mod digest;
pub mod journal;
pub mod local_node;
pub mod partition;
pub mod services;
pub mod storage;
pub mod storage_types;
pub mod wrapper;

/// The future every async module call returns: `'static`, `Send`, resolving
/// to a [`ModuleResult`].
pub type ModuleFuture<T> = Pin<Box<dyn Future<Output = ModuleResult<T>> + Send + 'static>>;

/// Boxes an async block into a [`ModuleFuture`].
pub fn boxed<T, F>(fut: F) -> ModuleFuture<T>
where
    F: Future<Output = ModuleResult<T>> + Send + 'static,
{
    Box::pin(fut)
}

/// A ready [`ModuleFuture`].
pub fn ready<T: Send + 'static>(value: ModuleResult<T>) -> ModuleFuture<T> {
    Box::pin(std::future::ready(value))
}

/// Who a module is, for logs, `/health` and `plugins inspect`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Implementation name, e.g. `hangar-storage`.
    pub name: RString,
    /// Implementation version (semver).
    pub version: RString,
    /// One line on what it is (backend, mode).
    pub description: RString,
}

impl ModuleInfo {
    /// Builds an info value.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
        }
    }
}
