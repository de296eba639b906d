//! `packaging/link-hot-first`, the linker of the gateway's executable:
//! the functions its list names end up side by side at the start of the
//! code, in the list's order, and every other link passes through as is.
//! Played with a small C program, linked by the same compiler driver and
//! lld the Rust builds use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// rustup's directory holding `ld.lld`, which rustc itself links with.
fn gcc_ld() -> PathBuf {
    let out = |args: &[&str]| {
        let o = Command::new("rustc").args(args).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let sysroot = out(&["--print", "sysroot"]);
    let host = out(&["-vV"])
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    Path::new(sysroot.trim()).join(format!("lib/rustlib/{host}/bin/gcc-ld"))
}

/// Function name → address in `binary`.
fn addresses(binary: &Path) -> std::collections::HashMap<String, u64> {
    let out = Command::new("nm").arg(binary).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            matches!(kind, "t" | "T").then(|| (name.to_owned(), addr))
        })
        .collect()
}

/// Links `object` through the wrapper into `output`, with `list` as the
/// hot list, and rustup's lld unless `with_lld` is false.
fn link(dir: &Path, object: &Path, output: &Path, list: &Path, with_lld: bool) {
    let mut command = Command::new("sh");
    command
        .arg(repo().join("packaging/link-hot-first"))
        .arg(object)
        .arg("-o")
        .arg(output)
        .env("HOT_FIRST_LIST", list)
        .env_remove("HOT_FIRST_GCC_LD")
        .current_dir(dir);
    if with_lld {
        command.env("HOT_FIRST_GCC_LD", gcc_ld());
    }
    let status = command.status().unwrap();
    assert!(status.success(), "link of {} failed", output.display());
}

/// `program` compiled by cc at `opt`, one section a function (as rustc
/// emits them), into `object` in `dir`.
fn compile(dir: &Path, program: &str, opt: &str, object: &str) -> PathBuf {
    let source = dir.join("program.c");
    std::fs::write(&source, program).unwrap();
    let object = dir.join(object);
    let compiled = Command::new("cc")
        .args([opt, "-ffunction-sections", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap();
    assert!(compiled.success());
    object
}

const PROGRAM: &str = r#"
int cold_a(int x) { return x * 3 + 1; }
int hot_late(int x) { return x ^ 0x5a5a; }
int cold_b(int x) { return x * 7 - 2; }
int cold_c(int x) { return x / 5 + 9; }
int hot_first(int x) { return x + 11; }
int main(int argc, char **argv) { (void)argv; return cold_a(argc) + cold_b(argc) + cold_c(argc) + hot_late(argc) + hot_first(argc) == 0; }
"#;

#[test]
fn the_listed_functions_lead_the_code_in_list_order() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), PROGRAM, "-O1", "program.o");
    let list = dir.path().join("hot-code.txt");
    // Comments are skipped; a name no object defines is ignored.
    std::fs::write(&list, "# hot\nhot_first\nnot_in_this_link\nhot_late\n").unwrap();

    let deps = dir.path().join("target/release/deps");
    std::fs::create_dir_all(&deps).unwrap();
    let ordered = deps.join("edge_gateway-0123456789abcdef");
    link(dir.path(), &object, &ordered, &list, true);
    let at = addresses(&ordered);
    let code = [
        "cold_a",
        "cold_b",
        "cold_c",
        "hot_late",
        "hot_first",
        "main",
    ];
    let lowest = code.iter().map(|f| at[*f]).min().unwrap();
    assert_eq!(
        at["hot_first"], lowest,
        "hot_first should open the code: {at:?}"
    );
    assert!(at["hot_first"] < at["hot_late"], "list order kept: {at:?}");
    for cold in ["cold_a", "cold_b", "cold_c", "main"] {
        assert!(
            at["hot_late"] < at[cold],
            "{cold} should follow the hot code: {at:?}"
        );
    }
    let ran = Command::new(&ordered).status().unwrap();
    assert!(ran.success(), "the reordered program runs");

    // Any other output (a test, a build script) is linked as the driver
    // would: source order, hot list or not.
    let other = dir
        .path()
        .join("target/release/deps/build_script_build-0123");
    link(dir.path(), &object, &other, &list, true);
    let at = addresses(&other);
    assert!(at["cold_a"] < at["hot_first"], "not reordered: {at:?}");

    // Linked by GNU ld (a native build on a Pi), which cannot order
    // symbols: linked all the same, unordered, rather than refused.
    let by_gnu_ld = deps.join("edge_gateway-fedcba9876543210");
    link(dir.path(), &object, &by_gnu_ld, &list, false);
    let at = addresses(&by_gnu_ld);
    assert!(at["cold_a"] < at["hot_first"], "not reordered: {at:?}");
    assert!(Command::new(&by_gnu_ld).status().unwrap().success());
}

/// The standard library's compiler_builtins objects carry LLVM bitcode
/// (`.llvmbc`) beside their code; binutils' nm hands such an object to its
/// LTO plugin, which fails on it and lists nothing, so their functions (one
/// of them runs after every batch of tasks) were never ordered.
#[test]
fn functions_of_an_object_carrying_bitcode_are_ordered_too() {
    let dir = tempfile::tempdir().unwrap();
    let plain = compile(dir.path(), PROGRAM, "-O1", "plain.o");
    // The bitcode wrapper's magic and nothing after it, as the plugin
    // refuses it.
    let bitcode = dir.path().join("bitcode");
    std::fs::write(&bitcode, b"BC\xc0\xde\x35\x14\x00\x00").unwrap();
    let object = dir.path().join("program.o");
    let added = Command::new("objcopy")
        .arg(format!("--add-section=.llvmbc={}", bitcode.display()))
        .arg(&plain)
        .arg(&object)
        .status()
        .unwrap();
    assert!(added.success());
    let list = dir.path().join("hot-code.txt");
    std::fs::write(&list, "hot_first\n").unwrap();
    let deps = dir.path().join("target/release/deps");
    std::fs::create_dir_all(&deps).unwrap();
    let ordered = deps.join("edge_gateway-0123456789abcdef");
    link(dir.path(), &object, &ordered, &list, true);
    let at = addresses(&ordered);
    for other in ["cold_a", "cold_b", "cold_c", "hot_late", "main"] {
        assert!(
            at["hot_first"] < at[other],
            "hot_first should open the code: {at:?}"
        );
    }
}

/// Two monomorphisations of one generic and a function whose hash has
/// changed since the list was traced, by their Rust (legacy) symbol names.
const MONOMORPHISED: &str = r#"
int poll_u8(int x) __asm__("_ZN3gen4poll17h1111111111111111E");
int poll_u8(int x) { return x + 1; }
int poll_u16(int x) __asm__("_ZN3gen4poll17h2222222222222222E");
int poll_u16(int x) { return x + 2; }
int tick(int x) __asm__("_ZN3old4tick17h3333333333333333E");
int tick(int x) { return x + 3; }
int cold(int x) { return x * 7; }
int main(int argc, char **argv) { (void)argv; return poll_u8(argc) + poll_u16(argc) + tick(argc) + cold(argc) == 0; }
"#;

/// An entry with its hash places that function only, not every
/// monomorphisation of its name; one no function has exactly falls back
/// to its name without the hash.
#[test]
fn an_exact_entry_places_only_its_monomorphisation() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), MONOMORPHISED, "-O0", "program.o");
    let list = dir.path().join("hot-code.txt");
    std::fs::write(
        &list,
        "gen::poll::h2222222222222222\nold::tick::h9999999999999999\n",
    )
    .unwrap();
    let deps = dir.path().join("target/release/deps");
    std::fs::create_dir_all(&deps).unwrap();
    let ordered = deps.join("edge_gateway-0123456789abcdef");
    link(dir.path(), &object, &ordered, &list, true);
    let at = addresses(&ordered);
    let (u8_, u16_, tick) = (
        at["_ZN3gen4poll17h1111111111111111E"],
        at["_ZN3gen4poll17h2222222222222222E"],
        at["_ZN3old4tick17h3333333333333333E"],
    );
    assert!(u16_ < tick, "the exact entry first, in list order: {at:?}");
    assert!(tick < u8_, "the stale entry by its name: {at:?}");
    assert!(tick < at["cold"] && tick < at["main"], "{at:?}");
    assert!(
        u8_ > u16_ && u8_ > tick,
        "the other monomorphisation is not placed: {at:?}"
    );
    assert!(Command::new(&ordered).status().unwrap().success());
}

/// `gen::poll::<u8>` and `gen::poll::<u16>` of one crate, v0-mangled as
/// rustc names them in a build whose crate disambiguator differs from the
/// one the list was traced on (another profile or target), and a function
/// before them.
const MONOMORPHISED_V0: &str = r#"
int cold(int x) { return x * 7; }
int poll_u8(int x) __asm__("_RINvCsbFAPq0AFM3k_3gen4pollhEB2_");
int poll_u8(int x) { return x + 1; }
int poll_u16(int x) __asm__("_RINvCsbFAPq0AFM3k_3gen4polltEB2_");
int poll_u16(int x) { return x + 2; }
int main(int argc, char **argv) { (void)argv; return poll_u8(argc) + poll_u16(argc) + cold(argc) == 0; }
"#;

/// A v0 entry, as scripts/hot-code.sh writes it (no disambiguator), places
/// the monomorphisation it names in a build other than the one traced, and
/// not its sibling: the release and `.deb` builds get the traced layout.
#[test]
fn a_v0_entry_places_its_monomorphisation_in_any_build() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), MONOMORPHISED_V0, "-O0", "program.o");
    let list = dir.path().join("hot-code.txt");
    std::fs::write(&list, "gen::poll::<u16>\n").unwrap();
    let deps = dir
        .path()
        .join("target/x86_64-unknown-linux-gnu/release/deps");
    std::fs::create_dir_all(&deps).unwrap();
    let ordered = deps.join("edge_gateway-0123456789abcdef");
    link(dir.path(), &object, &ordered, &list, true);
    let at = addresses(&ordered);
    let (u8_, u16_) = (
        at["_RINvCsbFAPq0AFM3k_3gen4pollhEB2_"],
        at["_RINvCsbFAPq0AFM3k_3gen4polltEB2_"],
    );
    assert!(u16_ < at["cold"], "the listed one leads: {at:?}");
    assert!(at["cold"] < u8_, "its sibling stays where it was: {at:?}");
    assert!(Command::new(&ordered).status().unwrap().success());
}

#[test]
fn the_list_and_the_link_name_functions_alike() {
    use std::io::Write;
    let mut child = Command::new("sh")
        .arg(repo().join("packaging/link-hot-first"))
        .arg("--canonical")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pipeline::task::Pipeline::run::h0123456789abcdef\n<core[9f3a1b2c]::option::Option<T>>::map'2\n<alloc[1a2b3c4d5e6f7a8b]::vec::Vec<u8> as core[9f3a1b2c]::ops::drop::Drop>::drop\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "pipeline::task::Pipeline::run\n<core::option::Option<T>>::map\n<alloc::vec::Vec<u8> as core::ops::drop::Drop>::drop\n"
    );
}
