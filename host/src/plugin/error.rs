//! Why a plugin was refused. One variant per refusal; each message names the
//! file, what was expected and what was found.

use std::path::PathBuf;

/// A plugin load failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is missing or not a loadable shared library.
    #[error("{path}: cannot open as a shared library: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the OS or the object parser said.
        reason: String,
    },
    /// A shared library, but not a Hangar plugin: no declaration symbol.
    #[error("{path}: not a Hangar plugin: expected an exported `hangar_plugin_decl_<crate>` symbol, found none{detail}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Extra context (e.g. how many symbols were exported).
        detail: String,
    },
    /// More than one plugin declaration in one file, none named after the
    /// file.
    #[error(
        "{path}: expected one plugin declaration, or one named after the file, found {found:?}"
    )]
    AmbiguousDeclaration {
        /// The file.
        path: PathBuf,
        /// The declaration symbols found.
        found: Vec<String>,
    },
    /// The declaration is damaged or of an unknown layout.
    #[error("{path}: bad plugin declaration: {detail}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Built against an ABI version this host cannot load.
    #[error("{path}: plugin {plugin} was built against Hangar ABI {found}; this host (ABI {host}) accepts {expected}")]
    IncompatibleAbi {
        /// The file.
        path: PathBuf,
        /// Plugin name from its declaration.
        plugin: String,
        /// What this host accepts.
        expected: String,
        /// The plugin's ABI version.
        found: String,
        /// The host's ABI version.
        host: String,
    },
    /// The declaration is there but the abi_stable root module is not.
    #[error(
        "{path}: plugin {plugin} declares itself but does not export its root module `{symbol}`"
    )]
    MissingRootSymbol {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// The symbol that was expected.
        symbol: String,
    },
    /// abi_stable refused the library: header, C ABI or type layout differ.
    #[error("{path}: plugin {plugin} has an incompatible binary layout: {detail}")]
    AbiLayout {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// abi_stable's report (a layout diff, for layout changes).
        detail: String,
    },
    /// The plugin is of another kind than the slot it was configured for.
    #[error(
        "{path}: plugin {plugin} is a {found} plugin; expected a {expected} plugin for this slot"
    )]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// The slot's kind.
        expected: String,
        /// The plugin's kind.
        found: String,
    },
    /// The plugin's own version does not satisfy the configured requirement.
    #[error("{path}: plugin {plugin} is version {found}; the configuration requires {required}")]
    VersionRejected {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// The configured requirement.
        required: String,
        /// The plugin's version.
        found: String,
    },
    /// Built for another target triple.
    #[error("{path}: plugin {plugin} was built for {found}; this host runs on {expected}")]
    WrongTarget {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// The host's target.
        expected: String,
        /// The plugin's target.
        found: String,
    },
    /// Built with `panic = "abort"`: its panics would kill the host.
    #[error("{path}: plugin {plugin} was built with panic = \"abort\"; expected panic = \"unwind\" so that its panics cannot take the host down")]
    PanicAbort {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
    },
    /// The plugin's constructor returned an error.
    #[error("{path}: plugin {plugin} failed to initialise its {kind} module: {message}")]
    InitFailed {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// The module kind.
        kind: String,
        /// The plugin's error.
        message: String,
    },
    /// The plugin's constructor panicked (the host caught it).
    #[error("{path}: plugin {plugin} panicked while initialising its {kind} module: {message}")]
    InitPanicked {
        /// The file.
        path: PathBuf,
        /// Plugin name.
        plugin: String,
        /// The module kind.
        kind: String,
        /// The panic message.
        message: String,
    },
}
