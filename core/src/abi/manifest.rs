//! The plugin declaration: a plain `#[repr(C)]` static every plugin exports
//! under its own symbol, readable before any of the plugin's code runs and
//! before abi_stable is involved.
//!
//! # Layout (declaration version 1)
//!
//! ```text
//! offset  size  field
//!      0    16  magic          b"HANGAR-PLUGIN\0\0\0"
//!     16     4  decl_version   u32 = 1; readers refuse other values
//!     20     4  abi_major      u32 \
//!     24     4  abi_minor      u32  } semver of the hangar-core ABI it was built with
//!     28     4  abi_patch      u32 /
//!     32     .  manifest       PluginManifest (repr(C) RStr fields, see below)
//! ```
//!
//! The first 32 bytes never change meaning; anything after them is read only
//! when `decl_version` is known.
//!
//! Symbols: the declaration is `hangar_plugin_decl_<crate>` and the abi_stable
//! root module is `hangar_plugin_root_<crate>`, with `<crate>` the plugin
//! crate's name. Unique names let several plugins link statically into one
//! program (embedding) without clashing.

use std::fmt;

use abi_stable::std_types::RStr;
use abi_stable::StableAbi;

/// Magic bytes at the start of every declaration.
pub const DECL_MAGIC: [u8; 16] = *b"HANGAR-PLUGIN\0\0\0";
/// Version of the declaration layout this core writes and reads.
pub const DECL_VERSION: u32 = 1;
/// Prefix of the declaration symbol.
pub const DECL_SYMBOL_PREFIX: &str = "hangar_plugin_decl_";
/// Prefix of the abi_stable root-module symbol.
pub const ROOT_SYMBOL_PREFIX: &str = "hangar_plugin_root_";

/// The semver of the plugin ABI: the `hangar-core` crate version. Any change
/// of a type that crosses the boundary bumps it (see `core/CHANGELOG.md`).
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Target triple this copy of the core was compiled for.
pub const BUILD_TARGET: &str = env!("HANGAR_BUILD_TARGET");
/// `rustc --version` of the compiler that built this copy of the core.
pub const BUILD_RUSTC: &str = env!("HANGAR_BUILD_RUSTC");
/// Whether this build unwinds on panic (plugins MUST, or the host cannot
/// survive their panics).
pub const PANIC_UNWIND: bool = cfg!(panic = "unwind");

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u32 = 0;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

/// `ABI_VERSION` as numbers.
pub const ABI_VERSION_PARTS: (u32, u32, u32) = (
    parse_u32(env!("CARGO_PKG_VERSION_MAJOR")),
    parse_u32(env!("CARGO_PKG_VERSION_MINOR")),
    parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
);

/// Which module slot a plugin fills.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Provides a `StorageModule`.
    Storage = 1,
    /// Provides a `ClusterModule`.
    Cluster = 2,
}

impl PluginKind {
    /// Lowercase name, as used in config and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storage => "storage",
            Self::Cluster => "cluster",
        }
    }

    /// Reads a kind byte from a declaration; `None` for unknown values.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Storage),
            2 => Some(Self::Cluster),
            _ => None,
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin says about itself. All strings are `'static` in the plugin.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct PluginManifest {
    /// Plugin name (its crate name).
    pub name: RStr<'static>,
    /// Kind as a raw byte (see [`PluginKind::from_u8`]); raw so that a
    /// future kind reads as "unknown" instead of undefined behaviour.
    pub kind: u8,
    /// The plugin's own version (semver).
    pub version: RStr<'static>,
    /// One line about it.
    pub description: RStr<'static>,
    /// `hangar-core` version it was built against.
    pub abi_version: RStr<'static>,
    /// Target triple it was built for.
    pub target: RStr<'static>,
    /// Compiler that built it.
    pub rustc: RStr<'static>,
    /// Whether it unwinds on panic.
    pub panic_unwind: bool,
}

impl PluginManifest {
    /// A manifest for a plugin built with this copy of the core.
    #[must_use]
    pub const fn for_this_build(
        name: &'static str,
        kind: PluginKind,
        version: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            name: RStr::from_str(name),
            kind: kind as u8,
            version: RStr::from_str(version),
            description: RStr::from_str(description),
            abi_version: RStr::from_str(ABI_VERSION),
            target: RStr::from_str(BUILD_TARGET),
            rustc: RStr::from_str(BUILD_RUSTC),
            panic_unwind: PANIC_UNWIND,
        }
    }
}

/// The exported declaration (see the module docs for its layout).
#[repr(C)]
#[derive(Debug)]
pub struct PluginDeclaration {
    /// [`DECL_MAGIC`].
    pub magic: [u8; 16],
    /// [`DECL_VERSION`].
    pub decl_version: u32,
    /// ABI semver major.
    pub abi_major: u32,
    /// ABI semver minor.
    pub abi_minor: u32,
    /// ABI semver patch.
    pub abi_patch: u32,
    /// The manifest.
    pub manifest: PluginManifest,
}

impl PluginDeclaration {
    /// The declaration of a plugin built with this copy of the core.
    #[must_use]
    pub const fn new(manifest: PluginManifest) -> Self {
        Self {
            magic: DECL_MAGIC,
            decl_version: DECL_VERSION,
            abi_major: ABI_VERSION_PARTS.0,
            abi_minor: ABI_VERSION_PARTS.1,
            abi_patch: ABI_VERSION_PARTS.2,
            manifest,
        }
    }

    /// The same declaration claiming another ABI version. Only for building
    /// negative test fixtures.
    #[doc(hidden)]
    #[must_use]
    pub const fn with_abi_version(mut self, major: u32, minor: u32, patch: u32) -> Self {
        self.abi_major = major;
        self.abi_minor = minor;
        self.abi_patch = patch;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_abi_version_parts_match_the_crate_version() {
        let v = semver::Version::parse(ABI_VERSION).unwrap();
        assert_eq!(
            ABI_VERSION_PARTS,
            (v.major as u32, v.minor as u32, v.patch as u32)
        );
    }

    #[test]
    fn t11_declaration_header_layout_is_fixed() {
        assert_eq!(std::mem::offset_of!(PluginDeclaration, decl_version), 16);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, abi_major), 20);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, abi_patch), 28);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, manifest), 32);
    }

    #[test]
    fn t12_manifest_reports_this_build() {
        let m = PluginManifest::for_this_build("x", PluginKind::Cluster, "1.2.3", "d");
        assert_eq!(m.abi_version.as_str(), ABI_VERSION);
        assert_eq!(PluginKind::from_u8(m.kind), Some(PluginKind::Cluster));
        assert!(!m.target.as_str().is_empty());
        assert_eq!(PluginKind::from_u8(7), None);
    }
}
