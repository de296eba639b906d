//! Link options for the `edge-gateway` executable only (tests and benches
//! link as before).
//!
//! Packed relative relocations (`DT_RELR`): a position-independent
//! executable carries one 24-byte record per pointer the loader must fix up
//! at start, about 40 000 of them here (vtables, static tables), and the
//! loader reads the whole table, so it stays resident: ~870 KB of an idle
//! gateway's RSS. Packed, the same fix-ups take a few KB. The executable
//! stays a PIE (ASLR kept). It needs glibc 2.36 or later (Debian 12,
//! Raspberry Pi OS bookworm, Ubuntu 22.10): the linker records that as a
//! `GLIBC_ABI_DT_RELR` version, so an older loader refuses the binary with
//! a clear message instead of misbehaving, and the .deb's computed
//! dependency says `libc6 (>= 2.36)`. Set `EDGE_GATEWAY_RELR=0` to build
//! for an older glibc; a linker that does not know the option ignores it
//! with a warning.

use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=EDGE_GATEWAY_RELR");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let wanted = env::var("EDGE_GATEWAY_RELR").as_deref() != Ok("0");
    if linux_gnu && wanted {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
