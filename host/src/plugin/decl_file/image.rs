//! The parts of an ELF shared object the declaration checks read, from the
//! file's bytes as the dynamic loader would map them: loadable segments
//! (address -> file bytes), exported dynamic symbols, and the dynamic
//! relocations (RELA and RELR) that give pointers their run-time values.

// ELF words are u32 or u64 by class; `.into()` widens them on 32-bit hosts
// and is the identity on 64-bit ones.
#![allow(
    clippy::useless_conversion,
    reason = "ELF words are u32 or u64 by class: `.into()` widens them on 32-bit hosts"
)]

use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::path::Path;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::Endianness;

use super::super::error::LoadError;

#[cfg(target_pointer_width = "64")]
type HostElf = elf::FileHeader64<Endianness>;
#[cfg(target_pointer_width = "32")]
type HostElf = elf::FileHeader32<Endianness>;

/// The host's pointer size.
pub(super) const WORD: usize = size_of::<usize>();

/// Where an address range lies in the file.
pub(super) enum Placement<'d> {
    /// In the file-backed part of one loadable segment: these bytes.
    Bytes(&'d [u8]),
    /// In a segment's zero-filled tail (`.bss`): not in the file.
    ZeroFill,
    /// Starts in a segment but runs past its end.
    PastEnd { segment_end: u64 },
    /// In no loadable segment.
    Unmapped,
}

#[derive(Clone, Copy)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

/// The parsed pieces of an ELF shared object that the checks use.
pub(super) struct Image<'d> {
    data: &'d [u8],
    endian: Endianness,
    header: &'d HostElf,
    sections: object::read::elf::SectionTable<'d, HostElf>,
    segments: Vec<Segment>,
    /// Exported (defined, global or weak) dynamic symbols: name -> (value, size).
    pub(super) exports: HashMap<String, (u64, u64)>,
}

fn foreign(path: &Path, detail: impl Into<String>) -> LoadError {
    LoadError::ForeignObject {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

impl<'d> Image<'d> {
    pub(super) fn parse(path: &Path, data: &'d [u8]) -> Result<Self, LoadError> {
        let header = HostElf::parse(data).map_err(|e| {
            foreign(
                path,
                format!(
                    "not an ELF file of this host's class ({}-bit): {e}",
                    WORD * 8
                ),
            )
        })?;
        let endian = header
            .endian()
            .map_err(|e| foreign(path, format!("unknown byte order: {e}")))?;
        if endian != Endianness::default() {
            return Err(foreign(
                path,
                format!(
                    "byte order is {endian:?}; this host is {:?}",
                    Endianness::default()
                ),
            ));
        }
        let machine = header.e_machine(endian);
        let host_machine = host_machine();
        if Some(machine) != host_machine {
            return Err(foreign(
                path,
                format!("machine is ELF e_machine {machine:?}; this host is {host_machine:?}"),
            ));
        }
        let kind = header.e_type(endian);
        if kind != elf::ET_DYN {
            return Err(foreign(
                path,
                format!("ELF type {kind:?}; expected a shared object (ET_DYN)"),
            ));
        }
        let mut segments = Vec::new();
        for ph in header
            .program_headers(endian, data)
            .map_err(|e| foreign(path, format!("bad program headers: {e}")))?
        {
            if ph.p_type(endian) != elf::PT_LOAD {
                continue;
            }
            let s = Segment {
                vaddr: ph.p_vaddr(endian).into(),
                memsz: ph.p_memsz(endian).into(),
                offset: ph.p_offset(endian).into(),
                filesz: ph.p_filesz(endian).into(),
            };
            let file_end = s.offset.checked_add(s.filesz);
            if file_end.is_none_or(|end| end > data.len() as u64)
                || s.filesz > s.memsz
                || s.vaddr.checked_add(s.memsz).is_none()
            {
                return Err(foreign(
                    path,
                    format!(
                        "a loadable segment (file offset {:#x}, {} bytes in the file, {} in memory) does not fit the {}-byte file",
                        s.offset,
                        s.filesz,
                        s.memsz,
                        data.len()
                    ),
                ));
            }
            segments.push(s);
        }
        let sections = header
            .sections(endian, data)
            .map_err(|e| foreign(path, format!("bad section headers: {e}")))?;
        let dynsyms = sections
            .symbols(endian, data, elf::SHT_DYNSYM)
            .map_err(|e| foreign(path, format!("bad dynamic symbol table: {e}")))?;
        let mut exports = HashMap::new();
        for sym in dynsyms.iter() {
            let bind = sym.st_bind();
            if sym.is_undefined(endian)
                || sym.st_shndx(endian).is_special() && sym.st_shndx(endian) != elf::SHN_ABS
                || (bind != elf::STB_GLOBAL && bind != elf::STB_WEAK)
            {
                continue;
            }
            let Ok(name) = dynsyms.symbol_name(endian, sym) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            exports.insert(
                name.to_string(),
                (sym.st_value(endian).into(), sym.st_size(endian).into()),
            );
        }
        Ok(Self {
            data,
            endian,
            header,
            sections,
            segments,
            exports,
        })
    }

    pub(super) fn place(&self, addr: u64, len: u64) -> Placement<'d> {
        let Some(seg) = self
            .segments
            .iter()
            .find(|s| addr >= s.vaddr && addr - s.vaddr < s.memsz)
        else {
            return Placement::Unmapped;
        };
        let rel = addr - seg.vaddr;
        if rel >= seg.filesz {
            return Placement::ZeroFill;
        }
        if len > seg.filesz - rel {
            return Placement::PastEnd {
                segment_end: seg.vaddr + seg.filesz,
            };
        }
        // Both fit in `usize`: the segment was checked against the file's length.
        let start = (seg.offset + rel) as usize;
        Placement::Bytes(&self.data[start..start + len as usize])
    }

    /// The dynamic relocations of the slots in `[from, to)`: each RELA
    /// slot's run-time value (or why this host refuses it) and the RELR
    /// slots (value = the word in place).
    pub(super) fn relocations_in(&self, from: u64, to: u64) -> Result<Relocs, String> {
        let mut relocs = Relocs::default();
        let is_mips64el = self.header.is_mips64el(self.endian);
        let dynsyms = self
            .sections
            .symbols(self.endian, self.data, elf::SHT_DYNSYM)
            .map_err(|e| format!("bad dynamic symbol table: {e}"))?;
        for section in self.sections.iter() {
            if let Some((relas, _)) = section
                .rela(self.endian, self.data)
                .map_err(|e| format!("bad relocation section: {e}"))?
            {
                for r in relas {
                    let at: u64 = r.r_offset(self.endian).into();
                    if at < from || at >= to {
                        continue;
                    }
                    let ty = r.r_type(self.endian, is_mips64el);
                    let addend: i64 = r.r_addend(self.endian).into();
                    let sym = r.r_sym(self.endian, is_mips64el);
                    let value = match reloc_class(ty) {
                        RelocClass::Relative => Ok(addend as u64),
                        RelocClass::Absolute => dynsyms
                            .symbol(object::SymbolIndex(sym as usize))
                            .ok()
                            .filter(|s| !s.is_undefined(self.endian))
                            .map(|s| {
                                let base: u64 = s.st_value(self.endian).into();
                                base.wrapping_add(addend as u64)
                            })
                            .ok_or_else(|| {
                                format!("its relocation refers to symbol #{sym}, which this library does not define")
                            }),
                        RelocClass::Other => Err(format!(
                            "its relocation is of type {ty:?}, not a data-pointer relocation"
                        )),
                    };
                    relocs.rela.insert(at, value);
                }
            }
            if let Some(relrs) = section
                .relr(self.endian, self.data)
                .map_err(|e| format!("bad RELR section: {e}"))?
            {
                for at in relrs {
                    let at: u64 = at.into();
                    if at >= from && at < to {
                        relocs.relr.insert(at);
                    }
                }
            }
        }
        Ok(relocs)
    }
}

#[derive(Default)]
pub(super) struct Relocs {
    /// Slot address -> its value (or why it is refused).
    pub(super) rela: HashMap<u64, Result<u64, String>>,
    /// Slots relocated by RELR: value = base + the word in place.
    pub(super) relr: HashSet<u64>,
}

enum RelocClass {
    Relative,
    Absolute,
    Other,
}

fn reloc_class(ty: elf::RelocationType) -> RelocClass {
    match host_machine() {
        Some(elf::EM_X86_64) if ty == elf::R_X86_64_RELATIVE => RelocClass::Relative,
        Some(elf::EM_X86_64) if ty == elf::R_X86_64_64 => RelocClass::Absolute,
        Some(elf::EM_AARCH64) if ty == elf::R_AARCH64_RELATIVE => RelocClass::Relative,
        Some(elf::EM_AARCH64) if ty == elf::R_AARCH64_ABS64 => RelocClass::Absolute,
        _ => RelocClass::Other,
    }
}

/// The ELF machine of this host, for the machines the relocation reader
/// knows; `None` elsewhere (every file is then refused as foreign).
fn host_machine() -> Option<elf::Machine> {
    if cfg!(target_arch = "x86_64") {
        Some(elf::EM_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(elf::EM_AARCH64)
    } else {
        None
    }
}

pub(super) fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; WORD];
    w.copy_from_slice(&bytes[at..at + WORD]);
    usize::from_ne_bytes(w) as u64
}

pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
