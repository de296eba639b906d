//! Every adapter folder declares itself completely, and what must live
//! outside the folder (features, fuzz targets) agrees with its declaration:
//! the tables that used to drift are now checked against one source.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::DECLARATIONS;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(value: Option<&toml::Value>) -> Vec<String> {
    value
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// Only with every adapter built in: a folder whose feature is off is
// rightly absent from DECLARATIONS.
#[cfg(all(
    feature = "mqtt",
    feature = "coap",
    feature = "lorawan",
    feature = "ble",
    feature = "tcp_line",
    feature = "serial",
    feature = "modbus",
    feature = "bacnet",
    feature = "knx"
))]
#[test]
fn every_adapter_folder_is_declared_and_documented() {
    // Folders of `src/` that are not adapters: payload formats shared by
    // several of them.
    const SHARED: &[&str] = &["payload"];
    let mut folders: Vec<String> = std::fs::read_dir(crate_dir().join("src"))
        .expect("src/ is readable")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !SHARED.contains(&name.as_str()))
        .collect();
    folders.sort();
    assert!(folders.len() >= 6, "found only {folders:?}");
    for folder in &folders {
        let dir = crate_dir().join("src").join(folder);
        assert!(
            DECLARATIONS.iter().any(|d| d.folder == folder),
            "src/{folder}/: no Declaration of it in DECLARATIONS (declare it in its kind.rs and list its config in lib.rs)"
        );
        for file in ["kind.rs", "README.md", "template.toml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                !text.trim().is_empty(),
                "src/{folder}/{file} is missing or empty"
            );
        }
    }
}

/// The folders test above runs only with every adapter built in: its
/// `cfg` must name every default feature, or a new adapter's folder goes
/// unchecked (it once missed `bacnet`).
#[test]
fn the_folders_test_runs_with_every_default_feature() {
    let source = std::fs::read_to_string(crate_dir().join("src/declaration_tests.rs"))
        .expect("src/declaration_tests.rs");
    let gate = source
        .split("#[cfg(all(")
        .nth(1)
        .and_then(|rest| rest.split("))]").next())
        .expect("the folders test's cfg(all(...))");
    let mut gated: Vec<String> = gate
        .split("feature = \"")
        .skip(1)
        .filter_map(|f| f.split('"').next().map(str::to_string))
        .collect();
    let ours = manifest(&crate_dir().join("Cargo.toml"));
    let mut defaults = strings(ours["features"].get("default"));
    gated.sort();
    defaults.sort();
    assert_eq!(
        gated, defaults,
        "every_adapter_folder_is_declared_and_documented's cfg must list the default features"
    );
}

#[test]
fn declarations_are_whole_and_unique() {
    let mut kinds = HashSet::new();
    for d in DECLARATIONS {
        assert!(kinds.insert(d.info.kind), "{}: declared twice", d.info.kind);
        assert!(!d.info.label.is_empty(), "{}: no label", d.info.kind);
        assert!(!d.info.model.is_empty(), "{}: no model", d.info.kind);
        assert!(
            crate_dir()
                .join("src")
                .join(d.folder)
                .join("kind.rs")
                .is_file(),
            "{}: its folder src/{} has no kind.rs",
            d.info.kind,
            d.folder
        );
    }
}

#[test]
fn each_feature_is_in_both_manifests_and_their_defaults() {
    let ours = manifest(&crate_dir().join("Cargo.toml"));
    let binary = manifest(&crate_dir().join("../edge-gateway/Cargo.toml"));
    let ours = ours["features"].as_table().expect("adapters has features");
    let theirs = binary["features"]
        .as_table()
        .expect("edge-gateway has features");
    let defaults = strings(ours.get("default"));
    let all_protocols = strings(theirs.get("all-protocols"));
    for d in DECLARATIONS {
        assert!(
            ours.contains_key(d.feature),
            "adapters: no feature {}",
            d.feature
        );
        assert!(
            defaults.iter().any(|f| f == d.feature),
            "adapters: {} not in default",
            d.feature
        );
        let forwarded = strings(theirs.get(d.feature));
        assert!(
            forwarded.contains(&format!("adapters/{}", d.feature)),
            "edge-gateway: feature {} must enable adapters/{}",
            d.feature,
            d.feature
        );
        assert!(
            all_protocols.iter().any(|f| f == d.feature),
            "edge-gateway: {} not in all-protocols",
            d.feature
        );
    }
    // The other way round: a feature of ours is some adapter's, or code
    // some adapters share (`device-section`), which only their features
    // turn on. (`tools`, the families' own subcommands, is the tools
    // crate's to turn on.)
    for feature in ours.keys().filter(|f| *f != "default" && *f != "tools") {
        let declared = DECLARATIONS.iter().any(|d| d.feature == feature);
        let shared = DECLARATIONS
            .iter()
            .any(|d| strings(ours.get(d.feature)).contains(feature))
            && !defaults.contains(feature)
            && !all_protocols.contains(feature);
        assert!(
            declared || shared,
            "adapters: feature {feature} is declared by no adapter, nor shared code some adapter's feature enables"
        );
    }
}

/// The places an adapter once had to be named in (a tool's `Command`
/// variant and match arm in the binary, a `/health` sentence, a link
/// constant, a `pub mod` and a `cfg` list in the crate root) name none:
/// each is generated from the lists or declared in the adapter's folder.
/// The part of a file after its marker (its tests, the crate root's list)
/// may.
#[test]
fn no_adapter_is_named_outside_its_folder_and_the_lists() {
    let files = [
        ("../edge-gateway/src/main.rs", None),
        ("../edge-gateway/src/health.rs", Some("#[cfg(test)]")),
        ("../edge-gateway/src/runtime.rs", Some("#[cfg(test)]")),
        ("../edge-gateway/src/cmd/run.rs", Some("#[cfg(test)]")),
        ("../gateway-core/src/component.rs", Some("#[cfg(test)]")),
        ("src/lib.rs", Some("registry::adapter_registry!")),
    ];
    let names: HashSet<&str> = DECLARATIONS
        .iter()
        .flat_map(|d| [d.info.kind, d.feature])
        .collect();
    for (file, marker) in files {
        let text = std::fs::read_to_string(crate_dir().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = match marker {
            Some(m) => text.split(m).next().unwrap_or_default(),
            None => text.as_str(),
        };
        for feature in text.split("feature = \"").skip(1) {
            let feature = feature.split('"').next().unwrap_or_default();
            assert!(
                !names.contains(feature),
                "{file} names the adapter feature \"{feature}\": generate it from the crate root's list, or declare it in the adapter's folder"
            );
        }
        for word in code_words(text) {
            if SHARED_WORDS.contains(&word.as_str()) {
                continue;
            }
            let named = std::iter::once(word.to_ascii_lowercase())
                .chain(word_parts(&word))
                .any(|w| names.contains(w.as_str()));
            assert!(
                !named,
                "{file} names an adapter in \"{word}\": generate it from the crate root's list, or declare it in the adapter's folder"
            );
        }
    }
}

/// Identifiers that contain an adapter's name but are not its: the
/// upstream output's module, and the serial port that Modbus RTU holds as
/// well as `serial_line`.
const SHARED_WORDS: &[&str] = &["mqtt_upstream", "LINK_SERIAL_PORT"];

/// The words of an identifier, lower-cased: `LINK_KNX_INTERFACE` is
/// `link`, `knx`, `interface`; `KnxArgs` is `knx`, `args`.
fn word_parts(ident: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for piece in ident.split('_') {
        let mut part = String::new();
        let mut after_lower = false;
        for c in piece.chars() {
            if c.is_ascii_uppercase() && after_lower && !part.is_empty() {
                parts.push(std::mem::take(&mut part));
            }
            after_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            part.push(c.to_ascii_lowercase());
        }
        if !part.is_empty() {
            parts.push(part);
        }
    }
    parts
}

/// The identifiers of Rust source, its comments and string literals left
/// out (a comment may say "MQTT"; a sentence may say "serial port").
fn code_words(source: &str) -> Vec<String> {
    let mut code = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                code.push('\n');
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                code.push(' ');
            }
            _ => code.push(c),
        }
    }
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn code_words_leave_out_comments_and_strings() {
    let words =
        code_words("// the MQTT adapter\nlet knx = \"ble \\\" radio\"; Modbus(x) /// BACnet\n");
    assert_eq!(words, ["let", "knx", "Modbus", "x"]);
    assert_eq!(
        word_parts("LINK_KNX_INTERFACE"),
        ["link", "knx", "interface"]
    );
    assert_eq!(word_parts("KnxArgs"), ["knx", "args"]);
    assert_eq!(word_parts("BACnetArgs"), ["bacnet", "args"]);
}

#[test]
fn fuzz_targets_exist_and_build_with_their_feature() {
    let fuzz_dir = crate_dir().join("../../fuzz");
    let fuzz = manifest(&fuzz_dir.join("Cargo.toml"));
    let bins: Vec<(String, String)> = fuzz["bin"]
        .as_array()
        .expect("fuzz has [[bin]]s")
        .iter()
        .filter_map(|b| {
            Some((
                b.get("name")?.as_str()?.to_string(),
                b.get("path")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let features = strings(fuzz["dependencies"]["adapters"].get("features"));
    let script = std::fs::read_to_string(crate_dir().join("../../scripts/fuzz.sh"))
        .expect("scripts/fuzz.sh");
    // The script runs every [[bin]] of fuzz/Cargo.toml, not a list of its own.
    assert!(
        script.contains("Cargo.toml"),
        "scripts/fuzz.sh must take its targets from fuzz/Cargo.toml"
    );
    for d in DECLARATIONS {
        for target in d.fuzz_targets {
            let bin = bins.iter().find(|(name, _)| name == target);
            let Some((_, path)) = bin else {
                panic!(
                    "{}: fuzz target {target} is not a [[bin]] of fuzz/Cargo.toml",
                    d.info.kind
                )
            };
            assert!(fuzz_dir.join(path).is_file(), "fuzz/{path} is missing");
            // A folder's kinds share its decoders (tcp_line and serial_line
            // both parse lines): one of the folder's features builds them.
            let folder_built = DECLARATIONS
                .iter()
                .filter(|other| other.folder == d.folder)
                .any(|other| features.iter().any(|f| f == other.feature));
            assert!(
                folder_built,
                "fuzz/Cargo.toml: adapters is built without {} (nor another feature of src/{}/), which {target} needs",
                d.feature,
                d.folder
            );
        }
    }
}

#[test]
fn the_names_that_once_drifted_are_declared() {
    let info = |kind: &str| {
        DECLARATIONS
            .iter()
            .find(|d| d.info.kind == kind)
            .map(|d| d.info)
    };
    #[cfg(feature = "lorawan")]
    assert_eq!(info("semtech_udp").map(|i| i.model), Some("LoRaWAN device"));
    #[cfg(feature = "coap")]
    assert_eq!(
        info("coap_observe").map(|i| (i.label, i.model)),
        Some(("CoAP", "CoAP sensor"))
    );
    let _ = info;
}

#[test]
fn every_placeholder_of_the_templates_is_filled() {
    let text = crate::template();
    assert!(!text.contains("${"), "a template placeholder has no value");
    for d in DECLARATIONS {
        assert!(
            text.contains(&format!("type = \"{}\"", d.info.kind)),
            "the template does not show type = \"{}\"",
            d.info.kind
        );
    }
}

/// A reload names each changed family section by its own name: a change
/// to `[[ble.device]]` once read as "lorawan".
#[cfg(all(feature = "ble", feature = "coap"))]
#[test]
fn a_changed_family_section_is_named_by_its_own_name() {
    use gateway_core::config::{AdapterSpec, Problems};

    let parse = |text: &str| {
        let root: toml::Table = text.parse().expect("toml");
        // Without its [[adapter]] a section is noted as a problem, and
        // still parsed: what is compared here.
        <crate::AdapterConfig as AdapterSpec>::sections(&root, &mut Problems::default())
    };
    let old = parse("");
    let ble = parse("[[ble.device]]\nmac = \"54:48:E6:8F:80:A5\"\nname = \"Kitchen\"\n");
    let both = parse(
        "[[ble.device]]\nmac = \"54:48:E6:8F:80:A5\"\nname = \"Kitchen\"\n\
         [[coap.psk]]\nidentity = \"node-7\"\nkey = \"a-long-enough-key\"\n",
    );
    assert_eq!(old.changed(&old), Vec::<&str>::new());
    assert_eq!(old.changed(&ble), ["ble"]);
    assert_eq!(ble.changed(&both), ["coap"]);
}
