//! Panic guards for every call that crosses the boundary.
//!
//! abi_stable's generated shims abort the process when a panic escapes, and
//! unwinding out of `extern "C"` aborts too. So the side that *implements* a
//! boundary call runs its body under `catch_unwind` and turns a panic into
//! [`ErrorKind::PANICKED`]; futures are polled under `catch_unwind` as well.
//! The calling side keeps a backstop for futures (async-ffi re-panics when a
//! foreign poll panicked) and reports failures of infallible calls to the
//! boundary-error hook.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use abi_stable::std_types::RResult;
use async_ffi::{FfiFuture, FutureExt as _};
use futures::FutureExt as _;

use crate::error::{ErrorKind, ModuleError, ModuleResult};
use crate::module::ModuleFuture;

/// Result type of synchronous boundary calls.
pub type FfiResult<T> = RResult<T, ModuleError>;
/// Future type of asynchronous boundary calls.
pub type FfiFut<T> = FfiFuture<RResult<T, ModuleError>>;

/// Runs a synchronous boundary call, turning a panic into an error.
pub fn guard<T>(context: &'static str, f: impl FnOnce() -> ModuleResult<T>) -> FfiResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.into(),
        Err(p) => RResult::RErr(ModuleError::from_panic(context, &*p)),
    }
}

/// Runs an asynchronous boundary call: both making the future and polling it
/// are guarded.
pub fn guard_future<T: Send + 'static>(
    context: &'static str,
    f: impl FnOnce() -> ModuleFuture<T>,
) -> FfiFut<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(fut) => async move {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(r) => r.into(),
                Err(p) => RResult::RErr(ModuleError::from_panic(context, &*p)),
            }
        }
        .into_ffi(),
        Err(p) => {
            let e = ModuleError::from_panic(context, &*p);
            async move { RResult::RErr(e) }.into_ffi()
        }
    }
}

/// Awaits a foreign future on the calling side, with a backstop for a poll
/// that panicked on the other side anyway.
pub fn await_foreign<T: Send + 'static>(context: &'static str, fut: FfiFut<T>) -> ModuleFuture<T> {
    Box::pin(async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(r) => r.into(),
            Err(_) => Err(ModuleError::new(
                ErrorKind::PANICKED,
                format!("{context}: the plugin's future panicked while being polled"),
            )),
        }
    })
}

/// Where the calling side reports errors of calls whose native signature
/// cannot return one (a panicking `partition_view().owner()`, say). The host
/// installs a hook that logs; without one they are written to stderr.
pub type BoundaryErrorHook = fn(&ModuleError);

static HOOK: OnceLock<BoundaryErrorHook> = OnceLock::new();

/// Installs the boundary-error hook; the first installation wins.
pub fn set_boundary_error_hook(hook: BoundaryErrorHook) {
    let _ = HOOK.set(hook);
}

/// Reports an error of an infallible call and returns `fallback`.
pub fn report<T>(r: FfiResult<T>, fallback: impl FnOnce() -> T) -> T {
    match r {
        RResult::ROk(v) => v,
        RResult::RErr(e) => {
            match HOOK.get() {
                Some(h) => h(&e),
                None => eprintln!("hangar: plugin boundary error: {e}"),
            }
            fallback()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_a_panicking_sync_call_becomes_an_error() {
        let r: FfiResult<u32> = guard("test call", || panic!("boom"));
        let e = r.into_result().unwrap_err();
        assert_eq!(e.kind, ErrorKind::PANICKED);
        assert!(e.message.contains("test call panicked: boom"), "{e}");
    }

    #[test]
    fn t11_a_future_that_panics_while_polled_becomes_an_error() {
        let f = guard_future::<u32>("poll", || {
            Box::pin(async {
                if std::hint::black_box(true) {
                    panic!("inside");
                }
                Ok(1)
            })
        });
        let e = futures::executor::block_on(f).into_result().unwrap_err();
        assert!(e.is_panic() && e.message.contains("inside"), "{e}");
    }

    #[test]
    fn t12_a_future_that_panics_before_it_exists_becomes_an_error() {
        let f = guard_future::<u32>("make", || panic!("early"));
        let e = futures::executor::block_on(f).into_result().unwrap_err();
        assert!(e.message.contains("make panicked: early"), "{e}");
    }

    #[test]
    fn t13_report_falls_back() {
        let r: FfiResult<u32> = RResult::RErr(ModuleError::internal("x"));
        assert_eq!(report(r, || 7), 7);
    }
}
