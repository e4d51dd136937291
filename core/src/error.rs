//! The one error type that module calls return, on both sides of the plugin
//! boundary.

use std::fmt;

use abi_stable::std_types::RString;
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

/// What kind of failure a [`ModuleError`] reports.
///
/// An integer newtype with associated constants rather than an enum, so that
/// later ABI versions can add kinds without breaking older plugins: an
/// unknown kind reads as "other".
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorKind(pub u32);

impl ErrorKind {
    /// A bug or an unexpected state inside the module.
    pub const INTERNAL: Self = Self(0);
    /// The caller passed something the module refuses (bad op, bad query).
    pub const INVALID_INPUT: Self = Self(1);
    /// The named thing does not exist.
    pub const NOT_FOUND: Self = Self(2);
    /// The module does not implement this call.
    pub const UNSUPPORTED: Self = Self(3);
    /// The module panicked; the panic was caught at the boundary.
    pub const PANICKED: Self = Self(4);
    /// The call did not finish in time.
    pub const TIMEOUT: Self = Self(5);
    /// The module sheds load; retry later.
    pub const OVERLOADED: Self = Self(6);
    /// Persistence failed (I/O, corruption).
    pub const STORAGE: Self = Self(7);
    /// A peer or resource is unavailable.
    pub const UNAVAILABLE: Self = Self(8);
    /// The module is shutting down or not started.
    pub const SHUT_DOWN: Self = Self(9);
    /// Configuration is invalid.
    pub const CONFIG: Self = Self(10);
    /// The op conflicts with the map's type (an OR op on an LWW map).
    pub const CONFLICT: Self = Self(11);

    /// A short lowercase name for messages and metrics labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "internal",
            1 => "invalid input",
            2 => "not found",
            3 => "unsupported",
            4 => "panicked",
            5 => "timeout",
            6 => "overloaded",
            7 => "storage",
            8 => "unavailable",
            9 => "shut down",
            10 => "config",
            11 => "conflict",
            _ => "other",
        }
    }
}

impl fmt::Debug for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorKind({})", self.name())
    }
}

/// An error from a module call: a kind and a message that says what was wrong
/// and what was expected.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: RString,
}

impl ModuleError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
        }
    }

    /// [`ErrorKind::INTERNAL`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INTERNAL, message)
    }

    /// [`ErrorKind::INVALID_INPUT`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_INPUT, message)
    }

    /// [`ErrorKind::UNSUPPORTED`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNSUPPORTED, message)
    }

    /// [`ErrorKind::STORAGE`].
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::STORAGE, message)
    }

    /// [`ErrorKind::PANICKED`], with the panic payload's message if it had one.
    #[must_use]
    pub fn from_panic(context: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = panic_message(payload);
        Self::new(ErrorKind::PANICKED, format!("{context} panicked: {msg}"))
    }

    /// True for [`ErrorKind::PANICKED`].
    #[must_use]
    pub fn is_panic(&self) -> bool {
        self.kind == ErrorKind::PANICKED
    }
}

impl fmt::Debug for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleError({}: {})", self.kind.name(), self.message)
    }
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for ModuleError {}

/// Result of a module call.
pub type ModuleResult<T> = Result<T, ModuleError>;

/// The message of a panic payload: `panic!` with a literal gives a `&str`,
/// with format arguments a `String`; anything else (`panic_any`) is named
/// as such. Exists so every place that turns a caught panic into an error
/// or a report says the same thing.
#[must_use]
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}
