//! The runtime a plugin owns.
//!
//! A tokio copy inside a shared library cannot see the host's runtime (its
//! thread-locals are its own), so every plugin builds its own. Work goes onto
//! it with [`PluginRuntime::spawn_call`], which returns a future that only
//! awaits the spawned task: polling that needs no runtime at all, so the host
//! can await it from its own executor, and the plugin's reactor wakes it
//! through the waker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hangar_core::module::ModuleFuture;
use hangar_core::{ErrorKind, ModuleError, ModuleResult};
use tokio::runtime::{Builder, Handle, Runtime};

/// A plugin's own multi-threaded tokio runtime.
///
/// Dropping it shuts it down in the background: it may be dropped from inside
/// the host's async context, where a blocking shutdown would panic.
pub struct PluginRuntime {
    name: String,
    runtime: Option<Runtime>,
    handle: Handle,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Builds a runtime with `worker_threads` workers (at least 1) named
    /// after the plugin.
    ///
    /// # Errors
    /// [`ErrorKind::INTERNAL`] when the OS refuses threads or an I/O driver.
    pub fn new(name: &str, worker_threads: usize) -> ModuleResult<Arc<Self>> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name(format!("{name}-worker"))
            .enable_all()
            .build()
            .map_err(|e| {
                ModuleError::internal(format!("{name}: cannot build the plugin runtime: {e}"))
            })?;
        let handle = runtime.handle().clone();
        Ok(Arc::new(Self {
            name: name.to_string(),
            runtime: Some(runtime),
            handle,
        }))
    }

    /// The runtime's handle, for spawning background tasks.
    #[must_use]
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on this runtime and returns a future the host can poll
    /// from any executor. A panic in `fut` comes back as
    /// [`ErrorKind::PANICKED`]; a task cancelled by shutdown as
    /// [`ErrorKind::SHUT_DOWN`].
    pub fn spawn_call<T, F>(&self, context: &'static str, fut: F) -> ModuleFuture<T>
    where
        T: Send + 'static,
        F: Future<Output = ModuleResult<T>> + Send + 'static,
    {
        let task = self.handle.spawn(fut);
        let plugin = self.name.clone();
        Box::pin(async move {
            match task.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(ModuleError::from_panic(
                    &format!("{plugin}: {context}"),
                    &*e.into_panic(),
                )),
                Err(_) => Err(ModuleError::new(
                    ErrorKind::SHUT_DOWN,
                    format!("{plugin}: {context} was cancelled: the plugin runtime shut down"),
                )),
            }
        })
    }

    /// Stops the runtime, giving running tasks up to `timeout` to finish.
    /// Safe to call from any context; later calls do nothing.
    pub fn shutdown(&mut self, timeout: Duration) {
        if let Some(rt) = self.runtime.take() {
            if Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(timeout);
            }
        }
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_work_spawned_on_the_plugin_runtime_is_awaitable_without_tokio() {
        let rt = PluginRuntime::new("t", 1).unwrap();
        let f = rt.spawn_call("sleep", async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(42)
        });
        // A plain executor with no tokio context polls it to completion.
        assert_eq!(futures::executor::block_on(f).unwrap(), 42);
    }

    #[test]
    fn t11_a_panicking_task_becomes_an_error() {
        let rt = PluginRuntime::new("t", 1).unwrap();
        let f = rt.spawn_call::<u32, _>("boom", async {
            if std::hint::black_box(true) {
                panic!("kaboom");
            }
            Ok(1)
        });
        let e = futures::executor::block_on(f).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PANICKED);
        assert!(e.message.contains("t: boom panicked: kaboom"), "{e}");
    }

    #[test]
    fn t12_dropping_inside_another_runtime_does_not_panic() {
        let host = tokio::runtime::Runtime::new().unwrap();
        let rt = PluginRuntime::new("t", 1).unwrap();
        host.block_on(async move { drop(rt) });
    }
}
