//! Loads plugin shared libraries, checking everything before any plugin
//! code runs.
//!
//! The checks, in order: the file is a shared library exporting exactly one
//! Hangar declaration; the declaration's magic and layout version; the ABI
//! version it was built against (semver, [`accepted_abi_versions`]);
//! abi_stable's header, C-ABI probes and recursive type-layout check of the
//! root module; then the manifest: kind against the slot, the plugin's own
//! version against the configured requirement, target triple, panic
//! strategy. Only then does the plugin's constructor run.
//!
//! Each file is loaded on its own (abi_stable's per-interface cache is not
//! used), so two storage plugins built against the same ABI never alias.
//! Libraries are never unloaded.

use std::path::{Path, PathBuf};

use abi_stable::library::{AbiHeaderRef, LibraryError, RawLibrary};
use hangar_core::abi::{
    accepted_abi_versions, PluginDeclaration, PluginKind, PluginManifest, PluginRootRef,
    ABI_VERSION, BUILD_TARGET, DECL_MAGIC, DECL_SYMBOL_PREFIX, DECL_VERSION, ROOT_SYMBOL_PREFIX,
};
use object::{Object, ObjectSymbol};
use semver::{Version, VersionReq};

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
    fn from_raw(m: &PluginManifest) -> Self {
        Self {
            name: m.name.to_string(),
            kind: PluginKind::from_u8(m.kind),
            version: m.version.to_string(),
            description: m.description.to_string(),
            abi_version: m.abi_version.to_string(),
            target: m.target.to_string(),
            rustc: m.rustc.to_string(),
            panic_unwind: m.panic_unwind,
        }
    }

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

/// Exported symbol names of a shared library (Mach-O's leading underscore
/// stripped).
fn exported_symbols(path: &Path) -> Result<Vec<String>, LoadError> {
    let data = std::fs::read(path).map_err(|e| open_err(path, e))?;
    let file = object::File::parse(&*data)
        .map_err(|e| open_err(path, format!("{e} (not a shared library)")))?;
    let collect = |it: &mut dyn Iterator<Item = object::Symbol<'_, '_>>| -> Vec<String> {
        it.filter(|s| s.is_definition() && s.is_global())
            .filter_map(|s| s.name().ok().map(str::to_string))
            .collect()
    };
    let mut names = collect(&mut file.dynamic_symbols());
    if names.is_empty() {
        // Mach-O and PE keep exports in the regular symbol table.
        names = collect(&mut file.symbols());
    }
    Ok(names
        .into_iter()
        .map(|n| {
            n.strip_prefix('_')
                .filter(|_| cfg!(target_os = "macos"))
                .map_or(n.clone(), str::to_string)
        })
        .collect())
}

/// The crate name a plugin file is named after (`libfoo_bar.so` -> `foo_bar`).
fn file_crate_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(std::env::consts::DLL_SUFFIX)?;
    let name = name
        .strip_prefix(std::env::consts::DLL_PREFIX)
        .unwrap_or(name);
    Some(name.replace('-', "_"))
}

/// The declaration, read through `dlopen` without calling into the plugin.
fn read_declaration(path: &Path, symbol: &str) -> Result<(Manifest, Version), LoadError> {
    // SAFETY: opening runs the library's ELF constructors; Rust cdylibs have
    // none of their own. The library is leaked (never unloaded) below.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| open_err(path, e))?;
    let mut name = symbol.as_bytes().to_vec();
    name.push(0);
    // SAFETY: the symbol is a `static PluginDeclaration`; we only read its
    // fixed 32-byte header until the decl version says the rest is known.
    let decl: &PluginDeclaration = unsafe {
        let sym = lib
            .get::<*const PluginDeclaration>(&name)
            .map_err(|e| open_err(path, e))?;
        &**sym
    };
    std::mem::forget(lib);
    if decl.magic != DECL_MAGIC {
        return Err(LoadError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("magic is {:?}, expected {:?}", decl.magic, DECL_MAGIC),
        });
    }
    if decl.decl_version != DECL_VERSION {
        return Err(LoadError::BadHeader {
            path: path.to_path_buf(),
            detail: format!(
                "declaration layout version {}, this host reads version {DECL_VERSION}",
                decl.decl_version
            ),
        });
    }
    let version = Version::new(
        u64::from(decl.abi_major),
        u64::from(decl.abi_minor),
        u64::from(decl.abi_patch),
    );
    let mut manifest = Manifest::from_raw(&decl.manifest);
    // The numeric header is what the checks use; report that.
    manifest.abi_version = version.to_string();
    Ok((manifest, version))
}

fn abi_layout_err(path: &Path, plugin: &str, e: &LibraryError) -> LoadError {
    LoadError::AbiLayout {
        path: path.to_path_buf(),
        plugin: plugin.to_string(),
        detail: e.to_string(),
    }
}

/// Steps 1-3: declaration, ABI version, abi_stable checks. Returns the
/// manifest and the (not yet initialised) library header.
fn check_binary(
    path: &Path,
) -> Result<(Manifest, &'static abi_stable::library::LibHeader), LoadError> {
    let symbols = exported_symbols(path)?;
    let decls: Vec<&String> = symbols
        .iter()
        .filter(|s| s.starts_with(DECL_SYMBOL_PREFIX))
        .collect();
    let decl_symbol = match decls.as_slice() {
        [] => {
            return Err(LoadError::NotAPlugin {
                path: path.to_path_buf(),
                detail: format!(" among {} exported symbols", symbols.len()),
            })
        }
        [one] => (*one).clone(),
        many => {
            // A plugin that links another plugin crate as a library re-exports
            // that crate's declaration too; the file's own crate decides.
            let own = file_crate_name(path).map(|c| format!("{DECL_SYMBOL_PREFIX}{c}"));
            match many.iter().find(|s| Some(s.as_str()) == own.as_deref()) {
                Some(s) => (*s).clone(),
                None => {
                    return Err(LoadError::AmbiguousDeclaration {
                        path: path.to_path_buf(),
                        found: many.iter().map(|s| (*s).clone()).collect(),
                    })
                }
            }
        }
    };
    let (manifest, abi) = read_declaration(path, &decl_symbol)?;
    let host_abi = Version::parse(ABI_VERSION).expect("the core crate version is semver");
    let accepted = accepted_abi_versions(&host_abi);
    if !accepted.matches(&abi) {
        return Err(LoadError::IncompatibleAbi {
            path: path.to_path_buf(),
            plugin: manifest.name.clone(),
            expected: accepted.to_string(),
            found: abi.to_string(),
            host: host_abi.to_string(),
        });
    }
    let root_symbol = format!(
        "{ROOT_SYMBOL_PREFIX}{}",
        &decl_symbol[DECL_SYMBOL_PREFIX.len()..]
    );
    if !symbols.contains(&root_symbol) {
        return Err(LoadError::MissingRootSymbol {
            path: path.to_path_buf(),
            plugin: manifest.name.clone(),
            symbol: root_symbol,
        });
    }
    let raw = RawLibrary::load_at(path).map_err(|e| open_err(path, e))?;
    let mut name = root_symbol.into_bytes();
    name.push(0);
    // SAFETY: the root symbol is a `static LibHeader` (exported by
    // `export_plugin!`); like abi_stable's own loader we read its address as
    // an `AbiHeaderRef`, whose validity `upgrade` checks before use.
    let header: AbiHeaderRef = unsafe {
        *raw.get::<AbiHeaderRef>(&name)
            .map_err(|e| abi_layout_err(path, &manifest.name, &e))?
    };
    std::mem::forget(raw);
    let lib_header = header
        .upgrade()
        .map_err(|e| abi_layout_err(path, &manifest.name, &e))?;
    lib_header
        .ensure_layout::<PluginRootRef>()
        .map_err(|e| abi_layout_err(path, &manifest.name, &e))?;
    Ok((manifest, lib_header))
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

/// Loads a plugin for a slot: every check, then the (trivial) root-module
/// constructor. The module constructors run later, in [`super::instantiate`].
///
/// # Errors
/// The [`LoadError`] variant of the first check that fails.
pub fn load(path: &Path, expect: &Expectation) -> Result<LoadedPlugin, LoadError> {
    let (manifest, header) = check_binary(path)?;
    check_manifest(path, &manifest, expect)?;
    let root = header
        .init_root_module::<PluginRootRef>()
        .map_err(|e| abi_layout_err(path, &manifest.name, &e))?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        manifest,
        root,
    })
}

/// Reads a plugin's manifest and judges it without running any of its code
/// beyond the library loader.
#[must_use]
pub fn inspect(path: &Path, version: &VersionReq) -> Inspection {
    match check_binary(path) {
        Err(e) => {
            let manifest = match &e {
                LoadError::IncompatibleAbi { .. }
                | LoadError::MissingRootSymbol { .. }
                | LoadError::AbiLayout { .. } => exported_symbols(path)
                    .ok()
                    .and_then(|s| s.into_iter().find(|s| s.starts_with(DECL_SYMBOL_PREFIX)))
                    .and_then(|sym| read_declaration(path, &sym).ok())
                    .map(|(m, _)| m),
                _ => None,
            };
            Inspection {
                path: path.to_path_buf(),
                manifest,
                verdict: Err(e),
            }
        }
        Ok((manifest, _)) => {
            let verdict = match manifest.kind {
                Some(kind) => check_manifest(
                    path,
                    &manifest,
                    &Expectation {
                        kind,
                        version: version.clone(),
                    },
                ),
                None => Err(LoadError::BadHeader {
                    path: path.to_path_buf(),
                    detail: "unknown plugin kind".to_string(),
                }),
            };
            Inspection {
                path: path.to_path_buf(),
                manifest: Some(manifest),
                verdict,
            }
        }
    }
}
