//! `docs/architecture.md` is where a maintainer starts: every crate,
//! module, file and item it names must exist, and the layering it
//! promises must hold, or a move would silently leave the map wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn doc() -> String {
    std::fs::read_to_string(root().join("docs/architecture.md")).unwrap_or_default()
}

/// A workspace member as Cargo sees it.
#[derive(Debug)]
struct Member {
    /// The package name (`edge-gateway-tools`), not its folder (`tools`).
    package: String,
    src: PathBuf,
    /// Other members it depends on, each with its kind (`None` for a
    /// normal dependency, `Some("dev")`, `Some("build")`).
    deps: Vec<(String, Option<String>)>,
}

/// The workspace's members, from `cargo metadata` (no registry needed).
fn members() -> Vec<Member> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(root())
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("cargo metadata: {e}"),
    };
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
            let deps = p["dependencies"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| {
                    let name = d["name"].as_str()?;
                    names
                        .iter()
                        .any(|n| n == name)
                        .then(|| (name.to_string(), d["kind"].as_str().map(str::to_string)))
                })
                .collect();
            Member {
                package: p["name"].as_str().unwrap_or_default().to_string(),
                src: manifest.parent().unwrap_or(Path::new("")).join("src"),
                deps,
            }
        })
        .collect()
}

/// The workspace's crates by the name code uses (`gateway_core`,
/// `edge_gateway_tools`), with their source folders.
fn crates() -> Vec<(String, PathBuf)> {
    members()
        .into_iter()
        .filter(|m| m.src.is_dir())
        .map(|m| (m.package.replace('-', "_"), m.src))
        .collect()
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

/// A fuzz target the doc's example declares is one a newcomer copies: it
/// must be a real one (the doc once named a `bacnet_apdu` that never was).
#[test]
fn every_fuzz_target_the_architecture_doc_names_exists() {
    let doc = doc();
    let named: Vec<&str> = doc
        .split("fuzz_targets: &[")
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        .flat_map(|list| list.split(','))
        .map(|t| t.trim().trim_matches('"'))
        .filter(|t| !t.is_empty())
        .collect();
    assert!(
        !named.is_empty(),
        "the doc's example declares no fuzz target"
    );
    for target in named {
        let file = root()
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        assert!(
            file.is_file(),
            "docs/architecture.md names fuzz target {target}: no fuzz/fuzz_targets/{target}.rs"
        );
    }
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
    let members = members();
    assert!(
        members.iter().any(|m| m.package == "edge-gateway-tools"),
        "{members:?}"
    );
    for m in &members {
        if m.package == "edge-gateway" {
            continue;
        }
        // Directly, of any kind: a tool, a bench or a test that needs the
        // binary's code means that code belongs in a library crate.
        assert!(
            !m.deps.iter().any(|(d, _)| d == "edge-gateway"),
            "{} depends on edge-gateway ({:?})",
            m.package,
            m.deps
        );
        // Nor through another crate.
        let deps = normal_dependencies(&m.package);
        assert!(
            !deps.iter().any(|d| d == "edge-gateway"),
            "{} depends on edge-gateway",
            m.package
        );
    }
}

/// The tool subcommands' modules: the tools crate's, never the binary's.
const TOOL_MODULES: [&str; 7] = [
    "demo",
    "simulate",
    "decode",
    "decode_ble",
    "decode_join",
    "replay",
    "history",
];

/// Families whose own subcommand (`ble record`, `modbus scan`, `bacnet
/// discover`, `knx discover`) is their folder's `tool.rs`.
const ADAPTER_TOOLS: [&str; 4] = ["ble", "modbus", "bacnet", "knx"];

/// Module names (file stems and folders) anywhere under `dir`.
fn module_names(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let stem = f.file_stem()?.to_string_lossy().to_string();
            if stem == "mod" {
                f.parent()?
                    .file_name()
                    .map(|d| d.to_string_lossy().to_string())
            } else {
                Some(stem)
            }
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_binary_crate_holds_wiring_and_the_tools_are_their_own_crate() {
    let binary = root().join("crates/edge-gateway/src");
    let tools = root().join("crates/tools/src");
    let in_binary = module_names(&binary);
    let in_tools = module_names(&tools);
    assert!(in_binary.iter().any(|m| m == "runtime"), "{in_binary:?}");
    for tool in TOOL_MODULES {
        assert!(
            !in_binary.iter().any(|m| m == tool),
            "crates/edge-gateway/src has the tool module `{tool}`: it belongs in crates/tools"
        );
        assert!(
            in_tools.iter().any(|m| m == tool),
            "crates/tools/src has no `{tool}`: {in_tools:?}"
        );
    }
    for family in ADAPTER_TOOLS {
        assert!(
            !binary.join(format!("{family}.rs")).exists()
                && !tools.join(format!("{family}.rs")).exists()
                && !tools.join(family).exists(),
            "the `{family}` tool is outside its folder: it belongs in crates/adapters/src/{family}/tool.rs"
        );
        assert!(
            root()
                .join(format!("crates/adapters/src/{family}/tool.rs"))
                .is_file(),
            "crates/adapters/src/{family}/tool.rs is missing"
        );
    }
    // A new tool's arguments would be a clap `Args` of its own: only
    // main.rs's subcommand list may name clap in the binary crate.
    let mut files = Vec::new();
    rust_files(&binary, &mut files);
    for f in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        assert!(
            !text.contains("clap::") && !text.contains("use clap"),
            "{} defines command-line arguments: a tool belongs in crates/tools",
            f.display()
        );
    }
}

/// A package's `[features]`, from `cargo metadata`.
fn features(package: &str) -> BTreeMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let Some(p) = packages.iter().find(|p| p["name"] == package) else {
        panic!("no package {package}");
    };
    serde_json::from_value(p["features"].clone()).unwrap()
}

#[test]
fn each_tool_feature_is_passed_on_by_the_binary_feature_of_its_name() {
    // Otherwise `--features modbus` builds the adapter without its tools,
    // and `edge-gateway modbus scan` silently disappears.
    let tools = features("edge-gateway-tools");
    let binary = features("edge-gateway");
    assert!(tools.contains_key("modbus"), "{tools:?}");
    for feature in tools
        .keys()
        .filter(|f| *f != "default" && *f != "all-protocols")
    {
        let passed = format!("edge-gateway-tools/{feature}");
        assert!(
            binary.get(feature).is_some_and(|f| f.contains(&passed)),
            "edge-gateway: feature {feature} must enable {passed}"
        );
    }
}

/// A cycle among `edges` (crate to the crates it depends on), as the path
/// that closes it, if there is one.
fn find_cycle(edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.iter().any(|n| n == node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(node.to_string());
        None
    }
    let mut done = Vec::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_dependency_cycle_between_workspace_crates_counting_dev_dependencies() {
    // Cargo refuses a cycle of normal dependencies but links a
    // dev-dependency cycle (a crate's tests through a crate that depends
    // on it), with two copies of the crate under test whose types differ.
    let edges: BTreeMap<String, Vec<String>> = members()
        .into_iter()
        .map(|m| (m.package, m.deps.into_iter().map(|(d, _)| d).collect()))
        .collect();
    assert!(
        edges
            .get("rules")
            .is_some_and(|d| d.iter().any(|d| d == "anomaly")),
        "{edges:?}"
    );
    assert_eq!(find_cycle(&edges), None, "a dependency cycle");
}

#[test]
fn the_cycle_check_itself_finds_a_dev_dependency_cycle() {
    let graph = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    let cyclic = graph(&[
        ("pipeline", &["rules"]),
        ("rules", &["anomaly"]),
        ("anomaly", &["rules"]),
    ]);
    // Found from whichever of the two the walk reaches first.
    let cycle = find_cycle(&cyclic).unwrap_or_default();
    assert_eq!(cycle.first(), cycle.last(), "{cycle:?}");
    let mut members = cycle[1..].to_vec();
    members.sort();
    assert_eq!(members, ["anomaly", "rules"], "{cycle:?}");
    let acyclic = graph(&[
        ("pipeline", &["rules", "anomaly"]),
        ("rules", &["anomaly"]),
        ("anomaly", &[]),
    ]);
    assert_eq!(find_cycle(&acyclic), None);
}

/// Where a test file writes its own HTTP GET or reads `/metrics` by hand,
/// as `file:line: what`: those live once in `test-support` (`web`,
/// `metrics`), so a fix to either (a chunked body, a label with a space)
/// reaches every test.
fn own_http_or_metrics_helpers(file: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let metric_parse = |window: &str| {
        let by_name = ["strip_prefix(", "starts_with("].iter().any(|call| {
            window.split(call).skip(1).any(|arg| {
                let arg = arg.trim_start_matches("r#").trim_start_matches('"');
                [
                    "edge_gateway_",
                    "process_",
                    "name)",
                    "name_and_labels)",
                    "series)",
                ]
                .iter()
                .any(|p| arg.starts_with(p))
            })
        });
        by_name || window.contains("rsplit(' ')")
    };
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("\"GET {") {
            found.push(format!(
                "{file}:{}: a GET request of its own (use test_support::web)",
                i + 1
            ));
        }
        let window = lines[i..lines.len().min(i + 5)].join("\n");
        if line.contains(".lines()") && metric_parse(&window) {
            found.push(format!(
                "{file}:{}: a /metrics parser of its own (use test_support::metrics)",
                i + 1
            ));
        }
    }
    found
}

#[test]
fn no_test_file_writes_its_own_http_get_or_metrics_parser() {
    let mut found = Vec::new();
    for (_, src) in crates() {
        let mut files = Vec::new();
        rust_files(&src.with_file_name("tests"), &mut files);
        for path in files {
            let shown = path
                .strip_prefix(root())
                .unwrap_or(&path)
                .display()
                .to_string();
            // Test data, and this file, which spells the patterns out.
            if shown.contains("/tests/data/") || path.ends_with("cli/architecture.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            found.extend(own_http_or_metrics_helpers(&shown, &text));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_helper_check_itself_finds_a_get_and_a_metrics_parser() {
    let get = "let req = format!(\"GET {path} HTTP/1.1\\r\\n\\r\\n\");";
    let parser =
        "body.lines()\n    .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())";
    let summed =
        "body\n    .lines()\n    .filter(|l| l.starts_with(\"edge_gateway_x{a=\\\"1\\\"\"))";
    for text in [get, parser, summed] {
        assert_eq!(own_http_or_metrics_helpers("t.rs", text).len(), 1, "{text}");
    }
    let other = "csv.lines().skip(1)\nhead.lines().find_map(|l| l.strip_prefix(\"retry-after: \"))";
    assert!(own_http_or_metrics_helpers("t.rs", other).is_empty());
}
