//! Fuzzes the plugin declaration reader (`hangar_host::plugin::read_declaration`)
//! with arbitrary file bytes. Seed it with real plugin files
//! (`target/debug/lib*.so`) so mutations reach the symbol tables,
//! relocations and the declaration itself.
//!
//! Oracles, beyond "never panic, never abort, never allocate without bound":
//! - the reader is a pure function of the bytes: a second read gives the
//!   same answer;
//! - an accepted declaration's strings respect `MAX_MANIFEST_STRING`, and
//!   every error names the file.
#![no_main]

use std::path::Path;

use hangar_host::plugin::{read_declaration, MAX_MANIFEST_STRING};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.so");
    let first = read_declaration(path, data);
    let again = read_declaration(path, data);
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
