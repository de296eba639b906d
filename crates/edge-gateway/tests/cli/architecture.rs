//! `docs/architecture.md` is where a maintainer starts: every crate,
//! module, file and item it names must exist, and the layering it
//! promises must hold, or a move would silently leave the map wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn doc() -> String {
    std::fs::read_to_string(root().join("docs/architecture.md")).unwrap_or_default()
}

/// The workspace's crates by the name code uses (`gateway_core`), with
/// their source folders.
fn crates() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root().join("crates")) else {
        return out;
    };
    for e in entries.flatten() {
        let src = e.path().join("src");
        if src.is_dir() {
            out.push((e.file_name().to_string_lossy().replace('-', "_"), src));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether `name` is declared as an item (or re-exported) in `text`.
fn declares(text: &str, name: &str) -> bool {
    let name = name.trim_end_matches("()").trim_end_matches('!');
    text.lines().any(|line| {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '!'))
            .filter(|w| !w.is_empty())
            .collect();
        words.windows(2).any(|w| {
            w[1] == name
                && matches!(
                    w[0],
                    "struct"
                        | "enum"
                        | "fn"
                        | "trait"
                        | "type"
                        | "const"
                        | "static"
                        | "mod"
                        | "macro_rules!"
                )
        }) || (line.trim_start().starts_with("pub use") && words.contains(&name))
    })
}

/// Resolves `crate::module::…::Item::member` against the sources: modules
/// by their files, then the first item must be declared in the crate and
/// what follows it (a variant, a method) must appear there.
fn resolves(path: &str, crates: &[(String, PathBuf)]) -> Result<(), String> {
    let mut segments = path.split("::");
    let first = segments.next().unwrap_or_default();
    let Some((_, src)) = crates.iter().find(|(name, _)| name == first) else {
        return Ok(());
    };
    let rest: Vec<&str> = segments.collect();
    let mut dir = src.clone();
    let mut i = 0;
    while i < rest.len() {
        let seg = rest[i];
        if dir.join(format!("{seg}.rs")).is_file() || dir.join(seg).join("mod.rs").is_file() {
            dir = dir.join(seg);
            i += 1;
        } else {
            break;
        }
    }
    if i == rest.len() {
        return Ok(());
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let text: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let item = rest[i];
    if !declares(&text, item) {
        return Err(format!("{path}: no module or item `{item}`"));
    }
    for member in &rest[i + 1..] {
        let member = member.trim_end_matches("()");
        if !text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == member)
        {
            return Err(format!("{path}: `{member}` is not in the crate"));
        }
    }
    Ok(())
}

/// Backticked spans of the doc.
fn spans(doc: &str) -> impl Iterator<Item = &str> {
    doc.split('`').skip(1).step_by(2)
}

#[test]
fn every_module_and_item_the_architecture_doc_names_exists() {
    let crates = crates();
    assert!(
        crates.iter().any(|(n, _)| n == "gateway_core"),
        "{crates:?}"
    );
    let doc = doc();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for span in spans(&doc) {
        // Rust paths only: `gateway_core::event::SinkEvent`, `config_kinds!` is
        // not one (no crate), nor is `[[sink]] type = "…"`.
        let path = span.trim_end_matches("()").trim_end_matches('!');
        let looks_like_path = path.contains("::")
            && path
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if !looks_like_path {
            continue;
        }
        checked += 1;
        if let Err(e) = resolves(path, &crates) {
            wrong.push(e);
        }
    }
    assert!(
        checked > 10,
        "the doc names only {checked} Rust paths: was it read?"
    );
    assert!(wrong.is_empty(), "docs/architecture.md: {wrong:#?}");
}

#[test]
fn the_path_check_itself_fails_on_a_missing_module() {
    let crates = crates();
    assert!(resolves("gateway_core::state_file::frame", &crates).is_ok());
    assert!(resolves("gateway_core::state_file::nowhere", &crates).is_err());
    assert!(resolves("gateway_core::event::SinkEvent::Window", &crates).is_ok());
    assert!(resolves("gateway_core::event::SinkEvent::NoSuchVariant", &crates).is_err());
}

/// The crates a workspace member depends on, without dev-dependencies.
fn normal_dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(root())
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!("cargo tree: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("cargo tree: {e}"),
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_crash_safety_core_builds_without_the_dashboard_or_the_command_line() {
    let deps = normal_dependencies("pipeline");
    assert!(deps.iter().any(|d| d == "aggregator"), "{deps:?}");
    for unwanted in [
        "dashboard",
        "argon2",
        "clap",
        "indicatif",
        "edge-gateway",
        "hyper",
    ] {
        assert!(
            !deps.iter().any(|d| d == unwanted),
            "the pipeline crate depends on {unwanted}"
        );
    }
}

#[test]
fn no_crate_depends_on_the_binary() {
    for (name, _) in crates() {
        let package = name.replace('_', "-");
        if package == "edge-gateway" {
            continue;
        }
        let deps = normal_dependencies(&package);
        assert!(
            !deps.iter().any(|d| d == "edge-gateway"),
            "{package} depends on edge-gateway"
        );
    }
}
