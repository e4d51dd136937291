//! Loads plugin shared libraries, checking everything before any plugin
//! code runs.
//!
//! The checks, in order. From the FILE, before the library is opened (so
//! before its ELF constructors run): it is an ELF shared object of this
//! host's kind exporting exactly one Hangar declaration, whose size,
//! placement, magic, layout version, pointers and values are sound (see
//! `decl_file`); the ABI version it was built against (semver,
//! [`accepted_abi_versions`]); its root-module symbol; the manifest: kind
//! against the slot, the plugin's own version against the configured
//! requirement, target triple, panic strategy. Then the library is opened
//! for abi_stable's header, C-ABI probes and recursive type-layout check of
//! the root module. Only then does the plugin's constructor run.
//!
//! Each file is loaded on its own (abi_stable's per-interface cache is not
//! used), so two storage plugins built against the same ABI never alias.
//! Libraries are never unloaded.

use std::path::{Path, PathBuf};

use abi_stable::library::{AbiHeaderRef, LibraryError, RawLibrary};
use hangar_core::abi::{
    accepted_abi_versions, PluginKind, PluginRootRef, ABI_VERSION, BUILD_TARGET,
};
use semver::{Version, VersionReq};

use super::decl_file::{self, FileDeclaration, RootSymbol};
use super::error::LoadError;

/// A plugin's manifest, copied out of the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin name.
    pub name: String,
    /// Its kind; `None` when the declaration names a kind this host does not know.
    pub kind: Option<PluginKind>,
    /// Its own version.
    pub version: String,
    /// One line about it.
    pub description: String,
    /// ABI version it was built against.
    pub abi_version: String,
    /// Target triple.
    pub target: String,
    /// Compiler.
    pub rustc: String,
    /// Whether it unwinds on panic.
    pub panic_unwind: bool,
}

impl Manifest {
    fn kind_name(&self) -> String {
        self.kind
            .map_or_else(|| "unknown".to_string(), |k| k.to_string())
    }
}

/// What a slot expects of the plugin it loads.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The slot's kind.
    pub kind: PluginKind,
    /// Requirement on the plugin's own version.
    pub version: VersionReq,
}

/// A plugin that passed every check; its modules are built through
/// [`super::instantiate`].
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The file it came from.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    pub(crate) root: PluginRootRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

/// A plugin's declaration and what this host thinks of it, without running
/// its constructor (`hangar plugins inspect`).
#[derive(Debug)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// The manifest, when the declaration could be read.
    pub manifest: Option<Manifest>,
    /// `Ok` when this host would load it for a slot of its kind with the
    /// given version requirement; otherwise why not.
    pub verdict: Result<(), LoadError>,
}

fn open_err(path: &Path, reason: impl ToString) -> LoadError {
    LoadError::Open {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    let data = std::fs::read(path).map_err(|e| open_err(path, e))?;
    if !data.starts_with(b"\x7fELF") {
        return Err(open_err(
            path,
            "no ELF header (not a shared library); expected an ELF shared object",
        ));
    }
    Ok(data)
}

fn abi_layout_err(path: &Path, plugin: &str, e: &LibraryError) -> LoadError {
    LoadError::AbiLayout {
        path: path.to_path_buf(),
        plugin: plugin.to_string(),
        detail: e.to_string(),
    }
}

/// Steps 1-2, from the file alone (nothing is loaded): the declaration
/// (read and checked by [`decl_file::read_declaration`]), then the ABI
/// version and the presence and shape of the root symbol.
fn check_file(path: &Path) -> Result<FileDeclaration, LoadError> {
    let data = read_file(path)?;
    let decl = decl_file::read_declaration(path, &data)?;
    check_declared(path, &decl)?;
    Ok(decl)
}

fn check_declared(path: &Path, decl: &FileDeclaration) -> Result<(), LoadError> {
    let host_abi = Version::parse(ABI_VERSION).expect("the core crate version is semver");
    let accepted = accepted_abi_versions(&host_abi);
    if !accepted.matches(&decl.abi_version) {
        return Err(LoadError::IncompatibleAbi {
            path: path.to_path_buf(),
            plugin: decl.manifest.name.clone(),
            expected: accepted.to_string(),
            found: decl.abi_version.to_string(),
            host: host_abi.to_string(),
        });
    }
    match &decl.root {
        RootSymbol::Present => Ok(()),
        RootSymbol::Missing => Err(LoadError::MissingRootSymbol {
            path: path.to_path_buf(),
            plugin: decl.manifest.name.clone(),
            symbol: decl.root_symbol.clone(),
        }),
        RootSymbol::Malformed(detail) => Err(LoadError::AbiLayout {
            path: path.to_path_buf(),
            plugin: decl.manifest.name.clone(),
            detail: detail.clone(),
        }),
    }
}

/// Step 3, the first that opens the library (its ELF constructors run
/// here): abi_stable's header, C-ABI probes and type-layout check of the
/// root module.
fn open_checked(
    path: &Path,
    decl: &FileDeclaration,
) -> Result<&'static abi_stable::library::LibHeader, LoadError> {
    let raw = RawLibrary::load_at(path).map_err(|e| open_err(path, e))?;
    let mut name = decl.root_symbol.clone().into_bytes();
    name.push(0);
    // SAFETY: the root symbol is a `static LibHeader` (exported by
    // `export_plugin!`; its size and placement were checked in the file);
    // like abi_stable's own loader we read its address as an
    // `AbiHeaderRef`, whose validity `upgrade` checks before use.
    let header: AbiHeaderRef = unsafe {
        *raw.get::<AbiHeaderRef>(&name)
            .map_err(|e| abi_layout_err(path, &decl.manifest.name, &e))?
    };
    std::mem::forget(raw);
    let lib_header = header
        .upgrade()
        .map_err(|e| abi_layout_err(path, &decl.manifest.name, &e))?;
    lib_header
        .ensure_layout::<PluginRootRef>()
        .map_err(|e| abi_layout_err(path, &decl.manifest.name, &e))?;
    Ok(lib_header)
}

/// Step 4: the manifest against the slot.
fn check_manifest(path: &Path, m: &Manifest, expect: &Expectation) -> Result<(), LoadError> {
    if m.kind != Some(expect.kind) {
        return Err(LoadError::WrongKind {
            path: path.to_path_buf(),
            plugin: m.name.clone(),
            expected: expect.kind.to_string(),
            found: m.kind_name(),
        });
    }
    let version = Version::parse(&m.version).map_err(|e| LoadError::BadHeader {
        path: path.to_path_buf(),
        detail: format!("plugin version {:?} is not semver: {e}", m.version),
    })?;
    if !expect.version.matches(&version) {
        return Err(LoadError::VersionRejected {
            path: path.to_path_buf(),
            plugin: m.name.clone(),
            required: expect.version.to_string(),
            found: m.version.clone(),
        });
    }
    if m.target != BUILD_TARGET {
        return Err(LoadError::WrongTarget {
            path: path.to_path_buf(),
            plugin: m.name.clone(),
            expected: BUILD_TARGET.to_string(),
            found: m.target.clone(),
        });
    }
    if !m.panic_unwind {
        return Err(LoadError::PanicAbort {
            path: path.to_path_buf(),
            plugin: m.name.clone(),
        });
    }
    Ok(())
}

/// Loads a plugin for a slot: the file checks and the manifest against the
/// slot (nothing of the library runs), then the library is opened for the
/// abi_stable checks, then the (trivial) root-module constructor runs. The
/// module constructors run later, in [`super::instantiate_storage`] /
/// [`super::instantiate_cluster`].
///
/// # Errors
/// The [`LoadError`] variant of the first check that fails.
pub fn load(path: &Path, expect: &Expectation) -> Result<LoadedPlugin, LoadError> {
    let decl = check_file(path)?;
    check_manifest(path, &decl.manifest, expect)?;
    let header = open_checked(path, &decl)?;
    let root = header
        .init_root_module::<PluginRootRef>()
        .map_err(|e| abi_layout_err(path, &decl.manifest.name, &e))?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        manifest: decl.manifest,
        root,
    })
}

/// Reads a plugin's manifest and judges it. The file checks and the
/// manifest checks run on the file; only a library that passes them is
/// opened (running its ELF constructors, as loading it would) for the
/// abi_stable layout check. Never runs the plugin's own constructors.
#[must_use]
pub fn inspect(path: &Path, version: &VersionReq) -> Inspection {
    let data = match read_file(path) {
        Ok(d) => d,
        Err(e) => return Inspection::refused(path, None, e),
    };
    let decl = match decl_file::read_declaration(path, &data) {
        Ok(d) => d,
        Err(e) => return Inspection::refused(path, None, e),
    };
    if let Err(e) = check_declared(path, &decl) {
        return Inspection::refused(path, Some(decl.manifest), e);
    }
    let verdict = match decl.manifest.kind {
        Some(kind) => check_manifest(
            path,
            &decl.manifest,
            &Expectation {
                kind,
                version: version.clone(),
            },
        ),
        None => Err(LoadError::BadHeader {
            path: path.to_path_buf(),
            detail: format!(
                "unknown plugin kind; this host knows {} and {}",
                PluginKind::Storage,
                PluginKind::Cluster
            ),
        }),
    };
    let verdict = verdict.and_then(|()| open_checked(path, &decl).map(|_| ()));
    Inspection {
        path: path.to_path_buf(),
        manifest: Some(decl.manifest),
        verdict,
    }
}

impl Inspection {
    fn refused(path: &Path, manifest: Option<Manifest>, e: LoadError) -> Self {
        Self {
            path: path.to_path_buf(),
            manifest,
            verdict: Err(e),
        }
    }
}
