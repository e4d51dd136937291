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
    /// Not an ELF shared object this host can load (another format, class,
    /// byte order or machine, or damaged headers). Found by reading the
    /// file; nothing of it was loaded.
    #[error("{path}: not a shared library this host can load: {detail}")]
    ForeignObject {
        /// The file.
        path: PathBuf,
        /// What the headers say and what this host expected.
        detail: String,
    },
    /// The declaration symbol is not the size of a declaration (a short
    /// symbol would be read past its end).
    #[error("{path}: declaration symbol `{symbol}` is {size} bytes; expected {expected} (a Hangar plugin declaration)")]
    DeclarationSize {
        /// The file.
        path: PathBuf,
        /// The declaration symbol.
        symbol: String,
        /// Its size in the symbol table.
        size: u64,
        /// The size of a declaration of the layout this host reads.
        expected: u64,
    },
    /// The declaration's bytes are not in the file (no segment maps its
    /// address, or it lies in zero-filled memory, or past its segment).
    #[error("{path}: declaration symbol `{symbol}` is not in the file: {detail}")]
    DeclarationNotInFile {
        /// The file.
        path: PathBuf,
        /// The declaration symbol.
        symbol: String,
        /// Where its address lies instead.
        detail: String,
    },
    /// A pointer in the declaration is not one the library can hold: no
    /// relocation, a relocation of another kind or to another library, or a
    /// target range outside the file's loadable data.
    #[error("{path}: bad pointer in the plugin declaration (manifest field `{field}`): {detail}; expected a relocated pointer into the library's own data")]
    DeclarationPointer {
        /// The file.
        path: PathBuf,
        /// The manifest field holding the pointer.
        field: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A declaration value is malformed (a string that is not UTF-8 or too
    /// long, a bool that is neither 0 nor 1).
    #[error("{path}: bad value in the plugin declaration (manifest field `{field}`): {detail}")]
    DeclarationValue {
        /// The file.
        path: PathBuf,
        /// The manifest field.
        field: String,
        /// What was wrong and what was expected.
        detail: String,
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
