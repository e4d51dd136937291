//! The conversion scaffolding shared by every boundary trait.
//!
//! For a native trait `X` with ABI mirror `FfiX`:
//!
//! - `XExport(Arc<dyn X>)` implements `FfiX` by calling the native object,
//!   each call under a panic guard. It is what a library hands out.
//! - `ForeignX(FfiXBox)` implements `X` by calling through the vtable. It is
//!   what a library wraps a received object in.
//! - `x_to_ffi(Arc<dyn X>)` exports a native object. If the object is itself a
//!   `ForeignX`, its inner FFI object is passed on instead of being wrapped a
//!   second time (a cluster-made partition view goes from the host to the
//!   storage plugin without a host hop).
//! - `x_from_ffi(FfiXBox)` wraps a received object. If it is an `XExport`
//!   made by this very library (abi_stable's downcast checks the type *and*
//!   the library it came from), the native object is unwrapped instead.
//! - `x_to_ffi_forced` / `x_from_ffi_forced` always wrap; tests use them to
//!   force the foreign path inside one binary.

/// Generates the four conversion functions of one boundary trait.
macro_rules! conversions {
    (
        native: $native:path,
        ffi_box: $ffi_box:ty,
        ffi_to: $ffi_to:ident,
        export: $export:ident,
        foreign: $foreign:ident,
        to_ffi: $to_ffi:ident,
        from_ffi: $from_ffi:ident,
        to_ffi_forced: $to_ffi_forced:ident,
        from_ffi_forced: $from_ffi_forced:ident $(,)?
    ) => {
        /// Exports a native object through the ABI, unwrapping a foreign
        /// wrapper instead of stacking another layer.
        pub fn $to_ffi(native: std::sync::Arc<dyn $native>) -> $ffi_box {
            if let Some(inner) = native
                .as_foreign_object()
                .and_then(|a| a.downcast_ref::<$ffi_box>())
            {
                return inner.clone();
            }
            $to_ffi_forced(native)
        }

        /// Exports a native object, always wrapping (tests force the foreign
        /// path with it).
        #[doc(hidden)]
        pub fn $to_ffi_forced(native: std::sync::Arc<dyn $native>) -> $ffi_box {
            $ffi_to::from_ptr(
                abi_stable::std_types::RArc::new($export(native)),
                abi_stable::sabi_trait::TD_CanDowncast,
            )
        }

        /// Wraps a received object as a native one, unwrapping objects this
        /// library exported itself.
        pub fn $from_ffi(ffi: $ffi_box) -> std::sync::Arc<dyn $native> {
            if let Ok(export) = ffi.obj.downcast_as::<$export>() {
                return export.0.clone();
            }
            $from_ffi_forced(ffi)
        }

        /// Wraps a received object, always going through the vtable.
        #[doc(hidden)]
        pub fn $from_ffi_forced(ffi: $ffi_box) -> std::sync::Arc<dyn $native> {
            std::sync::Arc::new($foreign(ffi))
        }
    };
}

pub(crate) use conversions;
