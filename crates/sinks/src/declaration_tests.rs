//! Every output folder declares itself completely, as every adapter
//! folder does: a `kind.rs` reaching `DECLARATIONS`, a `README.md` for
//! whoever configures or changes it, a `template.toml` whose placeholders
//! are all filled, and a declared feature that the manifest has and
//! builds by default.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::DECLARATIONS;

/// Folders of `src/` that are not outputs: the outbox every durable one
/// shares.
const SHARED: &[&str] = &["outbox"];

fn crates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn output_folders() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: Vec<String> = std::fs::read_dir(&src)
        .expect("src/ is readable")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !SHARED.contains(&name.as_str()))
        .collect();
    out.sort();
    out
}

fn manifest_features() -> (toml::Table, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("Cargo.toml");
    let manifest: toml::Table = text.parse().expect("Cargo.toml is TOML");
    let features = manifest["features"]
        .as_table()
        .expect("sinks has features")
        .clone();
    let defaults = features["default"]
        .as_array()
        .expect("a default feature list")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (features, defaults)
}

// Only with every output built in: a folder whose feature is off is
// rightly absent from DECLARATIONS.
#[cfg(all(feature = "influxdb", feature = "jsonl"))]
#[test]
fn every_output_folder_is_declared_and_documented() {
    let folders = output_folders();
    assert!(folders.len() >= 4, "found only {folders:?}");
    for folder in &folders {
        let declared = format!("sinks/src/{folder}");
        assert!(
            DECLARATIONS.iter().any(|d| d.folder == declared),
            "src/{folder}/: no OutputDeclaration of it in DECLARATIONS (declare it in its kind.rs and list it in lib.rs's sink_registry!)"
        );
    }
}

#[test]
fn declarations_are_whole_and_unique_and_their_folders_complete() {
    let mut kinds = HashSet::new();
    for d in DECLARATIONS {
        assert!(kinds.insert(d.kind), "{}: declared twice", d.kind);
        assert!(!d.label.is_empty(), "{}: no label", d.kind);
        assert!(!d.section.is_empty(), "{}: no section", d.kind);
        assert!(!d.delivers.is_empty(), "{}: delivers nothing", d.kind);
        let dir = crates_dir().join(d.folder);
        for file in ["kind.rs", "README.md", "template.toml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                !text.trim().is_empty(),
                "{}: crates/{}/{file} is missing or empty",
                d.kind,
                d.folder
            );
        }
    }
}

#[test]
fn each_declared_feature_is_in_the_manifest_and_its_default() {
    let (features, defaults) = manifest_features();
    for d in DECLARATIONS {
        if let Some(feature) = d.feature {
            assert!(
                features.contains_key(feature),
                "sinks: no feature {feature}"
            );
            assert!(
                defaults.iter().any(|f| f == feature),
                "sinks: {feature} not in default"
            );
        }
    }
    // The other way round: a feature of ours is some output's.
    #[cfg(all(feature = "influxdb", feature = "jsonl"))]
    for feature in features.keys().filter(|f| *f != "default") {
        assert!(
            DECLARATIONS
                .iter()
                .any(|d| d.feature == Some(feature.as_str())),
            "sinks: feature {feature} is declared by no output"
        );
    }
}

#[test]
fn every_placeholder_of_the_templates_is_filled() {
    let text = [
        crate::template(),
        crate::mqtt_upstream::template(),
        crate::home_assistant::template(),
    ]
    .concat();
    assert!(!text.contains("${"), "a template placeholder has no value");
    for d in DECLARATIONS {
        let shown = match d.section.strip_prefix("[[sink]] ") {
            Some(kind) => format!("# {kind}"),
            None => format!("[{}]", d.kind),
        };
        assert!(
            text.contains(&shown),
            "the template does not show {} ({shown})",
            d.section
        );
    }
}
