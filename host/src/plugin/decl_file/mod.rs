//! Reads and checks a plugin's declaration from the library FILE, before the
//! library is opened.
//!
//! Opening a shared library runs its ELF constructors, and a declaration
//! read from the mapped library trusts every pointer in it; so the host
//! reads the declaration from the bytes of the file instead, as the dynamic
//! loader would lay them out, and opens the library only once it passed.
//! A hostile or damaged file is refused with an error; nothing here
//! dereferences a pointer found in the file.
//!
//! # What is checked, in order
//!
//! | check | refusal |
//! |---|---|
//! | an ELF shared object of this host's class, byte order and machine | [`LoadError::ForeignObject`] |
//! | the declaration symbol's size is the declaration's | [`LoadError::DeclarationSize`] |
//! | its bytes lie in the file-backed part of a loadable segment | [`LoadError::DeclarationNotInFile`] |
//! | magic and layout version | [`LoadError::BadHeader`] |
//! | each string's pointer has a relocation (or is empty) and its target range lies in the file-backed part of one loadable segment | [`LoadError::DeclarationPointer`] |
//! | each string is UTF-8 of at most [`MAX_MANIFEST_STRING`] bytes, the unwind flag is 0 or 1 | [`LoadError::DeclarationValue`] |
//! | (then, for the loader) the root-module symbol: exported, a `LibHeader`'s size, in the file, starting with this host's abi_stable header, every relocation in it resolving inside the library's image | [`RootSymbol`] (the loader's `MissingRootSymbol` / `AbiLayout`) |
//!
//! # Layout read (declaration version 1, see `hangar_core::abi::manifest`)
//!
//! The 32-byte header, then `PluginManifest`: `repr(C)` fields whose
//! offsets are taken from the core's own types (`offset_of!`), each string
//! an `RStr` = `(data: *const u8, length: usize)`. In a shared object a
//! pointer's value is not in the file: the dynamic loader writes it from a
//! relocation at the pointer's address (`R_*_RELATIVE`: base + addend;
//! `R_X86_64_64` / `R_AARCH64_ABS64`: symbol + addend; or a packed RELR
//! entry, whose addend is the word in place). A pointer without one would
//! be an absolute address in the host's memory, which no honest plugin
//! holds, so it is refused.

mod image;

use std::mem::{offset_of, size_of};
use std::path::Path;

use hangar_core::abi::{
    PluginDeclaration, PluginKind, PluginManifest, DECL_MAGIC, DECL_SYMBOL_PREFIX, DECL_VERSION,
    ROOT_SYMBOL_PREFIX,
};
use semver::Version;

use self::image::{u32_at, word_at, Image, Placement, Relocs, WORD};

use super::error::LoadError;
use super::loader::Manifest;

/// Longest manifest string accepted (bytes). Manifests are one-liners; a
/// longer string is a damaged or hostile declaration.
pub const MAX_MANIFEST_STRING: usize = 4096;

const HEADER_LEN: usize = offset_of!(PluginDeclaration, manifest);
const MANIFEST_AT: usize = offset_of!(PluginDeclaration, manifest);

/// The string fields of the manifest, by name, at their offset in the
/// declaration.
const STRINGS: [(&str, usize); 6] = [
    ("name", MANIFEST_AT + offset_of!(PluginManifest, name)),
    ("version", MANIFEST_AT + offset_of!(PluginManifest, version)),
    (
        "description",
        MANIFEST_AT + offset_of!(PluginManifest, description),
    ),
    (
        "abi_version",
        MANIFEST_AT + offset_of!(PluginManifest, abi_version),
    ),
    ("target", MANIFEST_AT + offset_of!(PluginManifest, target)),
    ("rustc", MANIFEST_AT + offset_of!(PluginManifest, rustc)),
];
const KIND_AT: usize = MANIFEST_AT + offset_of!(PluginManifest, kind);
const UNWIND_AT: usize = MANIFEST_AT + offset_of!(PluginManifest, panic_unwind);

// An `RStr` is two words, pointer first (checked at run time in the tests).
const _: () = assert!(size_of::<abi_stable::std_types::RStr<'static>>() == 2 * WORD);

/// A declaration read from a file, and the symbols the loader needs next.
#[derive(Debug, Clone)]
pub struct FileDeclaration {
    /// The declaration symbol that was read (`hangar_plugin_decl_<crate>`).
    pub symbol: String,
    /// The abi_stable root-module symbol that goes with it.
    pub root_symbol: String,
    /// What the file holds under that root symbol.
    pub root: RootSymbol,
    /// The manifest, copied out of the file.
    pub manifest: Manifest,
    /// The ABI version from the declaration's numeric header.
    pub abi_version: Version,
}

/// The abi_stable root-module symbol as found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSymbol {
    /// Not exported.
    Missing,
    /// Exported, but not a `LibHeader` in the file: why.
    Malformed(String),
    /// Exported with a `LibHeader`'s size, its bytes in the file.
    Present,
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

/// Finds, reads and checks the plugin declaration in the bytes `data` of
/// the file `path` (named in every error). Pure: no library is opened and
/// nothing in `data` is executed or dereferenced, so it is safe on any
/// bytes (the fuzz target and the property test feed it random ones).
///
/// # Errors
/// [`LoadError::ForeignObject`], [`LoadError::NotAPlugin`],
/// [`LoadError::AmbiguousDeclaration`], [`LoadError::DeclarationSize`],
/// [`LoadError::DeclarationNotInFile`], [`LoadError::BadHeader`],
/// [`LoadError::DeclarationPointer`], [`LoadError::DeclarationValue`]: the
/// first check that fails (see the module docs).
pub fn read_declaration(path: &Path, data: &[u8]) -> Result<FileDeclaration, LoadError> {
    let image = Image::parse(path, data)?;
    let mut decls: Vec<&String> = image
        .exports
        .keys()
        .filter(|s| s.starts_with(DECL_SYMBOL_PREFIX))
        .collect();
    decls.sort();
    let symbol = match decls.as_slice() {
        [] => {
            return Err(LoadError::NotAPlugin {
                path: path.to_path_buf(),
                detail: format!(" among {} exported symbols", image.exports.len()),
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
    let (addr, size) = image.exports[&symbol];
    let expected = size_of::<PluginDeclaration>();
    if size < HEADER_LEN as u64 {
        return Err(LoadError::DeclarationSize {
            path: path.to_path_buf(),
            symbol,
            size,
            expected: expected as u64,
        });
    }
    let at = |detail: String| LoadError::DeclarationNotInFile {
        path: path.to_path_buf(),
        symbol: symbol.clone(),
        detail,
    };
    let header = match image.place(addr, HEADER_LEN as u64) {
        Placement::Bytes(b) => b,
        other => return Err(at(describe(&other, addr, HEADER_LEN as u64))),
    };
    if header[..16] != DECL_MAGIC {
        return Err(LoadError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("magic is {:?}, expected {:?}", &header[..16], DECL_MAGIC),
        });
    }
    let decl_version = u32_at(header, 16);
    if decl_version != DECL_VERSION {
        return Err(LoadError::BadHeader {
            path: path.to_path_buf(),
            detail: format!(
                "declaration layout version {decl_version}, this host reads version {DECL_VERSION}"
            ),
        });
    }
    if size != expected as u64 {
        return Err(LoadError::DeclarationSize {
            path: path.to_path_buf(),
            symbol,
            size,
            expected: expected as u64,
        });
    }
    let bytes = match image.place(addr, expected as u64) {
        Placement::Bytes(b) => b,
        other => return Err(at(describe(&other, addr, expected as u64))),
    };
    let abi_version = Version::new(
        u64::from(u32_at(bytes, 20)),
        u64::from(u32_at(bytes, 24)),
        u64::from(u32_at(bytes, 28)),
    );
    let relocs = image
        .relocations_in(addr, addr + expected as u64)
        .map_err(|detail| LoadError::DeclarationPointer {
            path: path.to_path_buf(),
            field: "(all)".to_string(),
            detail,
        })?;
    let mut strings: Vec<String> = Vec::with_capacity(STRINGS.len());
    for (field, off) in STRINGS {
        strings.push(read_string(path, &image, &relocs, bytes, addr, field, off)?);
    }
    let kind = bytes[KIND_AT];
    let panic_unwind = match bytes[UNWIND_AT] {
        0 => false,
        1 => true,
        other => {
            return Err(LoadError::DeclarationValue {
                path: path.to_path_buf(),
                field: "panic_unwind".to_string(),
                detail: format!("byte {other:#x}; a bool is 0 or 1"),
            })
        }
    };
    let [name, version, description, _abi_string, target, rustc] =
        <[String; 6]>::try_from(strings).expect("six manifest strings");
    let root_symbol = format!(
        "{ROOT_SYMBOL_PREFIX}{}",
        &symbol[DECL_SYMBOL_PREFIX.len()..]
    );
    let root = match image.exports.get(&root_symbol) {
        None => RootSymbol::Missing,
        Some(&(raddr, rsize)) => {
            let want = size_of::<abi_stable::library::LibHeader>() as u64;
            if rsize != want {
                RootSymbol::Malformed(format!(
                    "root symbol `{root_symbol}` is {rsize} bytes; expected {want} (an abi_stable LibHeader)"
                ))
            } else {
                match image.place(raddr, rsize) {
                    Placement::Bytes(b) => check_root_header(&image, &root_symbol, raddr, b),
                    other => RootSymbol::Malformed(format!(
                        "root symbol `{root_symbol}` is not in the file: {}",
                        describe(&other, raddr, rsize)
                    )),
                }
            }
        }
    };
    Ok(FileDeclaration {
        root,
        root_symbol,
        symbol,
        manifest: Manifest {
            name,
            kind: PluginKind::from_u8(kind),
            version,
            description,
            // The numeric header is what the checks use; report that.
            abi_version: abi_version.to_string(),
            target,
            rustc,
            panic_unwind,
        },
        abi_version,
    })
}

/// The root symbol's bytes as read from the file: abi_stable's header
/// (magic string and version, compared with this host's copy of
/// abi_stable) and every relocation inside it, which must resolve to an
/// address of the library's own image. abi_stable reads the rest once the
/// library is open; this keeps a forged header from sending it through a
/// pointer outside the library.
fn check_root_header(image: &Image<'_>, symbol: &str, addr: u64, bytes: &[u8]) -> RootSymbol {
    let want = abi_stable::library::AbiHeader::VALUE;
    let (major, minor) = (u32_at(bytes, 32), u32_at(bytes, 36));
    if bytes[..32] != want.magic_string
        || major != want.abi_major
        || (major == 0 && minor != want.abi_minor)
    {
        return RootSymbol::Malformed(format!(
            "root symbol `{symbol}` does not start with abi_stable's header {:?} {}.{} (found {:?} {major}.{minor})",
            String::from_utf8_lossy(&want.magic_string),
            want.abi_major,
            want.abi_minor,
            String::from_utf8_lossy(&bytes[..32]),
        ));
    }
    let relocs = match image.relocations_in(addr, addr + bytes.len() as u64) {
        Ok(r) => r,
        Err(why) => return RootSymbol::Malformed(format!("root symbol `{symbol}`: {why}")),
    };
    let mut slots: Vec<_> = relocs.rela.iter().collect();
    slots.sort_by_key(|(at, _)| **at);
    for (at, target) in slots {
        let bad = match target {
            Err(why) => why.clone(),
            Ok(t) if matches!(image.place(*t, 1), Placement::Unmapped) => {
                format!("its target {t:#x} lies in no loadable segment")
            }
            Ok(_) => continue,
        };
        return RootSymbol::Malformed(format!(
            "root symbol `{symbol}`: the pointer at {at:#x} (offset {}): {bad}",
            at - addr
        ));
    }
    RootSymbol::Present
}

fn describe(p: &Placement<'_>, addr: u64, len: u64) -> String {
    match p {
        Placement::Bytes(_) => "in the file".to_string(),
        Placement::ZeroFill => format!(
            "address {addr:#x} lies in zero-filled memory (.bss), not in the file"
        ),
        Placement::PastEnd { segment_end } => format!(
            "{len} bytes at {addr:#x} run past the end of their segment's file data at {segment_end:#x}"
        ),
        Placement::Unmapped => format!("address {addr:#x} lies in no loadable segment"),
    }
}

fn read_string(
    path: &Path,
    image: &Image<'_>,
    relocs: &Relocs,
    decl: &[u8],
    decl_addr: u64,
    field: &str,
    off: usize,
) -> Result<String, LoadError> {
    let pointer_err = |detail: String| LoadError::DeclarationPointer {
        path: path.to_path_buf(),
        field: field.to_string(),
        detail,
    };
    let value_err = |detail: String| LoadError::DeclarationValue {
        path: path.to_path_buf(),
        field: field.to_string(),
        detail,
    };
    let in_place = word_at(decl, off);
    let len = word_at(decl, off + WORD);
    if len == 0 {
        // An empty RStr holds a dangling pointer that is never read.
        return Ok(String::new());
    }
    if len > MAX_MANIFEST_STRING as u64 {
        return Err(value_err(format!(
            "length {len} bytes; at most {MAX_MANIFEST_STRING} are accepted"
        )));
    }
    let slot = decl_addr + off as u64;
    let target = match relocs.rela.get(&slot) {
        Some(Ok(v)) => *v,
        Some(Err(why)) => return Err(pointer_err(why.clone())),
        None if relocs.relr.contains(&slot) => in_place,
        None => {
            return Err(pointer_err(format!(
                "no relocation for the pointer at {slot:#x}: its value {in_place:#x} would be an absolute address in the host's memory"
            )))
        }
    };
    let bytes = match image.place(target, len) {
        Placement::Bytes(b) => b,
        other => {
            return Err(pointer_err(format!(
                "its target is not in the file: {}",
                describe(&other, target, len)
            )))
        }
    };
    String::from_utf8(bytes.to_vec()).map_err(|e| value_err(format!("not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RStr;

    #[test]
    fn t10_an_rstr_is_pointer_then_length() {
        let s = RStr::from_str("abc");
        // SAFETY: RStr is repr(C) of two words (asserted at compile time).
        let words: [usize; 2] = unsafe { std::mem::transmute(s) };
        assert_eq!(words, [s.as_ptr() as usize, 3]);
    }

    #[test]
    fn t11_garbage_is_refused_as_foreign() {
        let p = Path::new("x.so");
        let e = read_declaration(p, b"not an ELF file at all").unwrap_err();
        assert!(matches!(e, LoadError::ForeignObject { .. }), "{e}");
        assert!(e.to_string().starts_with("x.so: "), "{e}");
    }
}
