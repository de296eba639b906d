#![allow(clippy::unwrap_used)]

use super::*;

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn layered(files: &[&str]) -> Layers {
    let mut layers = Layers::default();
    for (i, text) in files.iter().enumerate() {
        let origin = if i == 0 {
            Origin::Main
        } else {
            Origin::DropIn(format!("conf.d/{i}.toml"))
        };
        layers.merge_text(text, origin, "x");
    }
    assert!(layers.problems().is_empty(), "{}", layers.problems());
    layers
}

fn names(layers: &Layers, array: &str) -> Vec<String> {
    layers.root()[array]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tables_merge_key_by_key_and_the_later_layer_wins() {
    let l = layered(&[
        "[upstream]\nurl = \"mqtt://a\"\nqos = 1\n[aggregation]\nwindow = \"5m\"",
        "[upstream]\nurl = \"mqtt://b\"",
        "[upstream]\nurl = \"mqtt://c\"\n[log]\nlevel = \"debug\"",
    ]);
    assert_eq!(
        l.root().clone(),
        table(
            "[upstream]\nurl = \"mqtt://c\"\nqos = 1\n[aggregation]\nwindow = \"5m\"\n[log]\nlevel = \"debug\""
        )
    );
}

#[test]
fn arrays_of_tables_are_appended_in_layer_order() {
    let l = layered(&[
        "[[adapter]]\nname = \"a\"\n[[rule]]\nname = \"r1\"\n[lorawan]\n[[lorawan.device]]\nname = \"d1\"",
        "[[adapter]]\nname = \"b\"\n[[lorawan.device]]\nname = \"d2\"",
        "[[adapter]]\nname = \"c\"\n[[rule]]\nname = \"r2\"\n[[device]]\nname = \"x\"",
    ]);
    assert_eq!(names(&l, "adapter"), ["a", "b", "c"]);
    assert_eq!(names(&l, "rule"), ["r1", "r2"]);
    assert_eq!(names(&l, "device"), ["x"]);
    let lora: Vec<&str> = l.root()["lorawan"]["device"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(lora, ["d1", "d2"]);
}

#[test]
fn arrays_of_values_are_replaced_and_an_empty_array_adds_nothing() {
    let l = layered(&[
        "[x]\nlist = [1, 2]\n[[adapter]]\nname = \"a\"\ntopics = [\"t/1\", \"t/2\"]",
        "[x]\nlist = [3]\nadapter = []",
    ]);
    assert_eq!(l.root()["x"]["list"], toml::Value::Array(vec![3.into()]));
    assert_eq!(names(&l, "adapter"), ["a"]);
}

#[test]
fn each_value_remembers_the_layer_that_set_it() {
    let l = layered(&[
        "[aggregation]\nwindow = \"5m\"\n[[adapter]]\nname = \"a\"",
        "[aggregation]\nwindoww = \"1m\"\n[[adapter]]\nname = \"b\"\ncolour = \"red\"",
        "[upstream]\nurl = \"mqtt://x\"",
    ]);
    assert_eq!(l.source_of("aggregation.window"), None, "the main file");
    assert_eq!(
        l.source_of("aggregation.windoww").as_deref(),
        Some("conf.d/1.toml")
    );
    assert_eq!(l.source_of("adapter[0].name"), None);
    assert_eq!(
        l.source_of("adapter[1].colour").as_deref(),
        Some("conf.d/1.toml")
    );
    assert_eq!(l.source_of("adapter[1]").as_deref(), Some("conf.d/1.toml"));
    assert_eq!(
        l.source_of("upstream.qos").as_deref(),
        Some("conf.d/2.toml")
    );
    assert_eq!(l.origin_of("nowhere"), None);
}

#[test]
fn a_replaced_table_forgets_the_origins_inside_it() {
    let l = layered(&["[x]\na = 1", "[x]\nb = 2", "x = 3"]);
    assert_eq!(l.source_of("x").as_deref(), Some("conf.d/2.toml"));
    assert_eq!(l.source_of("x.b").as_deref(), Some("conf.d/2.toml"));
}

#[test]
fn a_layer_that_is_not_toml_is_named_and_left_out() {
    let mut l = Layers::default();
    l.merge_text("[upstream]\nqos = 1", Origin::Main, "main");
    l.merge_text(
        "[upstream\nqos = 2",
        Origin::DropIn("conf.d/20-bad.toml".into()),
        "bad",
    );
    let problems: Vec<String> = l.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("conf.d/20-bad.toml: not valid TOML"),
        "{problems:?}"
    );
    assert_eq!(l.root()["upstream"]["qos"].as_integer(), Some(1));
}

#[test]
fn variables_override_scalar_keys_with_toml_typed_values() {
    let mut l = layered(&["[gateway]\nid = \"gw-01\"\n[upstream]\nurl = \"mqtt://a\"\nqos = 1"]);
    l.apply_env(env(&[
        ("EDGE_GATEWAY__UPSTREAM__URL", "mqtts://cloud:8883"),
        ("EDGE_GATEWAY__UPSTREAM__QOS", "2"),
        ("EDGE_GATEWAY__UPSTREAM__MAX_BACKOFF", "5s"),
        ("EDGE_GATEWAY__METRICS__ENABLED", "false"),
        ("EDGE_GATEWAY__GATEWAY__ID", "1234"),
        ("EDGE_GATEWAY__GATEWAY__SITE", "\"42\""),
        ("EDGE_GATEWAY__AGGREGATION__X", "[1, 2]"),
        // Not ours: one underscore, or no prefix at all.
        ("EDGE_GATEWAY_PASSWORD", "hunter2"),
        ("PATH", "/usr/bin"),
    ]));
    assert!(l.problems().is_empty(), "{}", l.problems());
    assert_eq!(
        l.root().clone(),
        table(
            r#"
[gateway]
id = "1234"
site = "42"
[upstream]
url = "mqtts://cloud:8883"
qos = 2
max_backoff = "5s"
[metrics]
enabled = false
[aggregation]
x = [1, 2]
"#
        )
    );
    assert_eq!(
        l.source_of("upstream.url").as_deref(),
        Some("EDGE_GATEWAY__UPSTREAM__URL")
    );
    assert_eq!(
        l.source_of("metrics").as_deref(),
        Some("EDGE_GATEWAY__METRICS__ENABLED"),
        "a section only a variable created is named by it"
    );
    assert_eq!(
        l.source_of("upstream.qos").as_deref(),
        Some("EDGE_GATEWAY__UPSTREAM__QOS")
    );
    assert_eq!(
        l.source_of("gateway.id").as_deref(),
        Some("EDGE_GATEWAY__GATEWAY__ID")
    );
}

#[test]
fn variables_that_cannot_be_applied_are_named() {
    let mut l = layered(&["[upstream]\nqos = 1\n[[adapter]]\nname = \"a\""]);
    let mut vars = env(&[
        ("EDGE_GATEWAY__UPSTREAM", "x"),
        ("EDGE_GATEWAY__ADAPTER__0__NAME", "b"),
        ("EDGE_GATEWAY__UPSTREAM__QOS__X", "1"),
        ("EDGE_GATEWAY__UPSTREAM____QOS", "1"),
    ]);
    {
        use std::os::unix::ffi::OsStringExt;
        vars.push((
            "EDGE_GATEWAY__LOG__LEVEL".into(),
            OsString::from_vec(vec![0xff, 0xfe]),
        ));
    }
    l.apply_env(vars);
    let got: Vec<String> = l.problems().iter().map(ToString::to_string).collect();
    for expected in [
        "EDGE_GATEWAY__UPSTREAM: upstream: a table",
        "EDGE_GATEWAY__ADAPTER__0__NAME: adapter: an array of tables",
        "EDGE_GATEWAY__UPSTREAM__QOS__X: upstream.qos: not a table",
        "EDGE_GATEWAY__UPSTREAM____QOS: expected EDGE_GATEWAY__SECTION__KEY",
        "EDGE_GATEWAY__LOG__LEVEL: log.level: value is not UTF-8",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 5, "{got:#?}");
    // Nothing was changed by them.
    assert_eq!(
        l.root().clone(),
        table("[upstream]\nqos = 1\n[[adapter]]\nname = \"a\"")
    );
}

#[test]
fn drop_ins_are_read_in_name_order_after_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("gateway.toml");
    std::fs::write(
        &main,
        "[aggregation]\nwindow = \"5m\"\n[[adapter]]\nname = \"main\"",
    )
    .unwrap();
    let d = dir.path().join("conf.d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(
        d.join("20-b.toml"),
        "[aggregation]\nwindow = \"20m\"\n[[adapter]]\nname = \"b\"",
    )
    .unwrap();
    std::fs::write(
        d.join("10-a.toml"),
        "[aggregation]\nwindow = \"10m\"\n[[adapter]]\nname = \"a\"",
    )
    .unwrap();
    // Ignored: hidden (an editor's swap file), not *.toml, a directory.
    std::fs::write(d.join(".30-c.toml"), "[[adapter]]\nname = \"hidden\"").unwrap();
    std::fs::write(d.join("40-d.toml.dpkg-old"), "[[adapter]]\nname = \"old\"").unwrap();
    std::fs::create_dir(d.join("50-e.toml")).unwrap();
    let l = read(&main, env(&[("EDGE_GATEWAY__AGGREGATION__WINDOW", "1h")])).unwrap();
    assert!(l.problems().is_empty(), "{}", l.problems());
    assert_eq!(names(&l, "adapter"), ["main", "a", "b"]);
    assert_eq!(l.root()["aggregation"]["window"].as_str(), Some("1h"));
    assert_eq!(
        l.sources()[1..],
        [
            "conf.d/10-a.toml",
            "conf.d/20-b.toml",
            "EDGE_GATEWAY__AGGREGATION__WINDOW"
        ]
    );
    assert_eq!(l.sources()[0], main.display().to_string());
}

#[test]
fn no_drop_in_directory_is_no_drop_ins_and_a_missing_main_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("gateway.toml");
    let e = read(&main, Vec::new()).unwrap_err();
    assert_eq!(e.path, main);
    std::fs::write(&main, "[[adapter]]\nname = \"main\"").unwrap();
    let l = read(&main, Vec::new()).unwrap();
    assert_eq!(names(&l, "adapter"), ["main"]);
    // conf.d that is not a directory cannot be listed: an error, not silence.
    std::fs::write(dir.path().join("conf.d"), "").unwrap();
    let e = read(&main, Vec::new()).unwrap_err();
    assert_eq!(e.path, dir.path().join("conf.d"));
}

#[test]
fn print_redacts_secrets_and_keeps_references_to_them() {
    let l = layered(&[
        r#"
[upstream]
username = "gw"
password_env = "EDGE_GATEWAY_PASSWORD"
client_key = "/etc/edge-gateway/client.key"

[[lorawan.device]]
dev_addr = "260B1234"
nwk_s_key = "2B7E151628AED2A6ABF7158809CF4F3C"
app_s_key = "env:LORA_APP"

[[coap.psk]]
identity = "node-7"
key = "secretPSK"
[[coap.psk]]
identity = "node-8"
key_hex = "00112233445566778899aabbccddeeff"
[[coap.psk]]
identity = "node-9"
key = "env:COAP_NODE9"
"#,
        "[future]\ntoken = \"abc\"\npassword = \"hunter2\"\nbroker_password = 7",
    ]);
    let out = l.to_redacted_toml().unwrap();
    assert!(out.ends_with('\n'), "a whole last line:\n{out}");
    for secret in [
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "abc",
        "hunter2",
        "= 7",
        "secretPSK",
        "00112233445566778899aabbccddeeff",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    let printed: toml::Table = toml::from_str(&out).unwrap();
    let r = toml::Value::String(REDACTED.into());
    assert_eq!(printed["lorawan"]["device"][0]["nwk_s_key"], r);
    assert_eq!(
        printed["lorawan"]["device"][0]["app_s_key"].as_str(),
        Some("env:LORA_APP")
    );
    assert_eq!(printed["coap"]["psk"][0]["key"], r, "{out}");
    assert_eq!(printed["coap"]["psk"][1]["key_hex"], r);
    assert_eq!(
        printed["coap"]["psk"][2]["key"].as_str(),
        Some("env:COAP_NODE9")
    );
    assert_eq!(
        printed["coap"]["psk"][0]["identity"].as_str(),
        Some("node-7")
    );
    assert_eq!(printed["future"]["token"], r);
    assert_eq!(printed["future"]["password"], r);
    assert_eq!(printed["future"]["broker_password"], r);
    assert_eq!(
        printed["upstream"],
        l.root()["upstream"],
        "names and paths are not secrets"
    );
    assert_eq!(
        printed["lorawan"]["device"][0]["dev_addr"].as_str(),
        Some("260B1234")
    );
}

#[test]
fn print_redacts_bindkeys_and_the_password_of_every_url() {
    let l = layered(&[r#"
[upstream]
url = "mqtt://gw:MARKER1@127.0.0.1:1883"

[[sink]]
type = "influxdb"
url = "http://user:MARKER2@127.0.0.1:8086"

[[rule]]
name = "r"
action = { publish = "x", broker = "mqtt://u:MARKER3@127.0.0.1" }

[[ble.device]]
mac = "a4:c1:38:00:00:01"
bindkey = "231d39c1d7cc1ab1aee224cd096db932"
"#]);
    let out = l.to_redacted_toml().unwrap();
    for secret in ["MARKER", "231d39c1d7cc1ab1aee224cd096db932"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    let printed: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(
        printed["upstream"]["url"].as_str(),
        Some("mqtt://<redacted>@127.0.0.1:1883")
    );
    assert_eq!(
        printed["ble"]["device"][0]["mac"].as_str(),
        Some("a4:c1:38:00:00:01"),
        "what is not secret is shown"
    );
}

/// `validate --print` works on the file's text, before any type is known,
/// so it redacts by key name. This holds the two rules together: every
/// field of the workspace whose type holds a secret (`Secret`, a CoAP
/// `PskKey`, a BLE `BindKey`, a LoRaWAN `Key`) has a name the printer
/// redacts, so a new secret key cannot be forgotten by the printer.
#[test]
fn every_field_of_a_secret_type_has_a_name_the_printer_redacts() {
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    const SECRET_TYPES: [&str; 4] = ["Secret", "PskKey", "BindKey", "Key"];
    // Built at run time from `password`/`token`, never read from a file.
    const NOT_CONFIG: [&str; 1] = ["auth"];
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap().flatten() {
        let src = krate.path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    let mut fields = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut rename: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(r) = line
                .strip_prefix("#[serde(rename = \"")
                .and_then(|r| r.split('"').next())
            {
                rename = Some(r.to_string());
                continue;
            }
            let Some((name, ty)) = line
                .strip_prefix("pub ")
                .and_then(|l| l.split_once(": "))
                .filter(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            else {
                rename = None;
                continue;
            };
            let ty = ty.trim_end_matches(',');
            let ty = ty
                .strip_prefix("Option<")
                .and_then(|t| t.strip_suffix('>'))
                .unwrap_or(ty);
            if SECRET_TYPES.contains(&ty) && !NOT_CONFIG.contains(&name) {
                let key = rename.take().unwrap_or_else(|| name.to_string());
                fields.push((file.display().to_string(), key));
            }
            rename = None;
        }
    }
    assert!(
        fields.len() >= 6,
        "the scan found the known secret fields: {fields:?}"
    );
    for (file, key) in &fields {
        assert!(
            is_secret_key(key),
            "{file}: `{key}` holds a secret but validate --print would show it"
        );
    }
}

#[test]
fn the_pushed_layer_comes_after_the_drop_ins_and_before_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("gateway.toml");
    std::fs::write(
        &main,
        "[aggregation]\nwindow = \"5m\"\ngrace = \"1s\"\n[[adapter]]\nname = \"local\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/10-site.toml"),
        "[aggregation]\nwindow = \"2m\"\n",
    )
    .unwrap();
    let pushed = PushedLayer {
        label: "pushed configuration v2 (serial 2)",
        text: "[aggregation]\nwindow = \"1m\"\ngrace = \"2s\"\n[[adapter]]\nname = \"pushed\"\n[log]\nlevel = [",
    };
    let l = read_with_pushed(
        &main,
        Some(pushed),
        env(&[("EDGE_GATEWAY__AGGREGATION__GRACE", "3s")]),
    )
    .unwrap();
    // Not TOML: the whole layer is left out and the problem names it.
    assert_eq!(
        l.problems().iter().next().unwrap().source.as_deref(),
        Some("pushed configuration v2 (serial 2)")
    );
    let pushed = PushedLayer {
        text: "[aggregation]\nwindow = \"1m\"\ngrace = \"2s\"\n[[adapter]]\nname = \"pushed\"\n",
        ..pushed
    };
    let l = read_with_pushed(
        &main,
        Some(pushed),
        env(&[("EDGE_GATEWAY__AGGREGATION__GRACE", "3s")]),
    )
    .unwrap();
    assert!(l.problems().is_empty());
    assert_eq!(l.root()["aggregation"]["window"].as_str(), Some("1m"));
    assert_eq!(l.root()["aggregation"]["grace"].as_str(), Some("3s"));
    assert_eq!(names(&l, "adapter"), ["local", "pushed"]);
    assert_eq!(
        l.source_of("adapter[1].name").as_deref(),
        Some("pushed configuration v2 (serial 2)")
    );
    assert_eq!(
        l.sources()[1..3],
        [
            "conf.d/10-site.toml".to_string(),
            "pushed configuration v2 (serial 2)".to_string()
        ]
    );
}
