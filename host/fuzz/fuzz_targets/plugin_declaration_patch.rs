//! Structure-aware companion of `plugin_declaration`: the input is a list of
//! byte patches applied to a real plugin file, so that mutations land where
//! the reader looks (the ELF headers, symbol and relocation tables at the
//! start of the file, and the bytes around the declaration) instead of in
//! megabytes of code.
//!
//! Run with the base file in `HANGAR_FUZZ_BASE`, e.g. a stripped fixture:
//! `strip -o /tmp/base.so target/debug/libfixture_init_error.so`, then
//! `HANGAR_FUZZ_BASE=/tmp/base.so cargo +nightly fuzz run plugin_declaration_patch`.
//!
//! Input: 4-byte records `[region, offset_lo, offset_hi, xor]`; region bit
//! 0 picks the first 64 KiB of the file or the 64 KiB around the
//! declaration (found by its magic). Oracles as `plugin_declaration`: never
//! panic, deterministic, errors name the file.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use hangar_core::abi::{DECL_MAGIC, DECL_VERSION};
use hangar_host::plugin::{read_declaration, MAX_MANIFEST_STRING};
use libfuzzer_sys::fuzz_target;

struct Base {
    bytes: Vec<u8>,
    decl: usize,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let path = std::env::var("HANGAR_FUZZ_BASE")
            .expect("set HANGAR_FUZZ_BASE to a plugin file (see the target's docs)");
        let bytes = std::fs::read(&path).expect("read HANGAR_FUZZ_BASE");
        let mut needle = DECL_MAGIC.to_vec();
        needle.extend_from_slice(&DECL_VERSION.to_ne_bytes());
        let decl = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the base file holds a plugin declaration");
        Base { bytes, decl }
    })
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let mut bytes = base.bytes.clone();
    for rec in data.chunks_exact(4) {
        let off = usize::from(u16::from_le_bytes([rec[1], rec[2]]));
        let at = if rec[0] & 1 == 0 {
            off
        } else {
            (base.decl + off).saturating_sub(32 * 1024)
        };
        if let Some(b) = bytes.get_mut(at) {
            *b ^= rec[3];
        }
    }
    let path = Path::new("fuzz.so");
    let first = read_declaration(path, &bytes);
    let again = read_declaration(path, &bytes);
    assert_eq!(
        first.as_ref().map(|d| format!("{d:?}")).map_err(ToString::to_string),
        again.as_ref().map(|d| format!("{d:?}")).map_err(ToString::to_string),
    );
    match first {
        Ok(d) => {
            let m = &d.manifest;
            for s in [&m.name, &m.version, &m.description, &m.target, &m.rustc] {
                assert!(s.len() <= MAX_MANIFEST_STRING);
            }
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.so: ")),
    }
});
