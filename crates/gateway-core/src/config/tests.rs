#![allow(clippy::unwrap_used)]

use super::*;
use serde::Deserialize;
use std::time::Duration;

/// A stand-in adapter kind so the loader is tested without any protocol.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fake {
    name: String,
    #[serde(default)]
    url: Option<BrokerUrl>,
}

impl AdapterSpec for Fake {
    const KINDS: &'static [&'static str] = &["fake"];
    const SECTIONS: &'static [&'static str] = &["fakeproto"];
    type Sections = Vec<String>;
    fn sections(root: &toml::Table, p: &mut Problems) -> Vec<String> {
        match root.get("fakeproto") {
            None => Vec::new(),
            Some(v) => load::section::<FakeSection>(v.clone(), "fakeproto", p)
                .map(|s| s.things)
                .unwrap_or_default(),
        }
    }
    fn from_table(_: &str, t: toml::Value, path: &str, p: &mut Problems) -> Option<Self> {
        load::section(t, path, p)
    }
    fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeSection {
    things: Vec<String>,
}

fn problems(text: &str) -> Vec<String> {
    match Config::<Fake>::parse(text) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

const CONTRACT: &str = r#"
[gateway]
id = "gw-01"
site = "hq"
state_dir = "/var/lib/edge-gateway"

[upstream]
url = "mqtt://127.0.0.1:1883"
qos = 1
topic_prefix = "building/{site}"

[aggregation]
window = "5m"
grace = "30s"

[[adapter]]
type = "fake"
name = "local-sensors"

[[device]]
id = "a2:b2:c2:d2:e2:f2"
name = "Living Room"
"#;

#[test]
fn the_contract_file_is_accepted_as_written() {
    let c = Config::<Fake>::parse(CONTRACT).unwrap();
    assert_eq!(c.gateway.id, "gw-01");
    assert_eq!(c.upstream.forwarding.qos, Qos::AtLeastOnce);
    assert_eq!(c.aggregation.window, Duration::from_secs(300));
    assert_eq!(c.aggregation.grace, Duration::from_secs(30));
    assert_eq!(c.topic_prefix(), "building/hq");
    assert_eq!(c.adapters[0].name, "local-sensors");
    assert_eq!(c.devices[0].name, "Living Room");
}

#[test]
fn an_empty_file_means_all_defaults() {
    let c = Config::<Fake>::parse("").unwrap();
    assert_eq!(c.gateway, GatewayConfig::default());
    // Every default, and no upstream: the section is not there.
    assert_eq!(
        c.upstream,
        UpstreamConfig {
            enabled: false,
            ..UpstreamConfig::default()
        }
    );
    assert_eq!(c.aggregation, AggregationConfig::default());
}

#[test]
fn each_kind_of_mistake_names_its_key_path() {
    let cases: &[(&str, &str)] = &[
        ("[upstream]\nqos = 7", "upstream.qos: expected 0, 1 or 2, got 7"),
        ("[upstream]\nqoss = 1", "upstream.qoss: unknown key"),
        ("[upstream]\nqos = \"1\"", "upstream.qos: expected 0, 1 or 2, got \"1\""),
        ("[aggregation]\nwindow = \"5 parsecs\"", "aggregation.window: expected a duration"),
        ("[aggregation]\nwindow = 300", "aggregation.window: expected a duration string"),
        ("[aggregation]\nwindow = \"100ms\"", "aggregation.window: expected 1s to 7days"),
        ("[upstream]\nurl = \"http://x\"", "upstream.url: expected mqtt://host[:port]"),
        ("[gateway]\nid = \"a/b\"", "gateway.id: value contains '/'"),
        ("[bogus]\nx = 1", "bogus: unknown section"),
        ("[fakeproto]\nthings = [1]", "fakeproto.things[0]: invalid type"),
        ("[[adapter]]\ntype = \"fake\"\nname = \"a\"\nurl = \"mqtt//x\"", "adapter[0].url: expected mqtt://"),
        ("[[adapter]]\ntype = \"nope\"\nname = \"a\"", "adapter[0].type: unknown adapter type \"nope\", expected one of fake"),
        ("[[adapter]]\nname = \"a\"", "adapter[0].type: missing required key"),
        ("[[adapter]]\ntype = \"fake\"\nname = \"a\"\nextra = 1", "adapter[0].extra: unknown key"),
        ("[[adapter]]\ntype = \"fake\"", "adapter[0].name: missing required key"),
        ("[[adapter]]\ntype = \"fake\"\nname = \"a\"\n[[adapter]]\ntype = \"fake\"\nname = \"a\"",
         "adapter[1].name: duplicate adapter name \"a\" (first used by adapter[0])"),
        ("[[device]]\nid = \"x\"\nname = \"A\"\n[[device]]\nid = \"x\"\nname = \"B\"",
         "device[1].id: duplicate device id \"x\""),
        ("[[device]]\nid = \"a/b\"\nname = \"A\"", "device[0].id: device id contains '/'"),
        ("[upstream]\nurl = \"mqtt://h\"\nca_file = \"/x.pem\"", "upstream.ca_file: only used with an mqtts:// url"),
        ("[upstream]\nurl = \"mqtts://h\"\nca_file = \"/nonexistent/x.pem\"", "upstream.ca_file: cannot read"),
        ("[log]\nlevel = \"loud\"", "log.level: unknown variant `loud`"),
        ("[upstream]\nurl = \"mqtt://a\"\nurls = [\"mqtt://b\"]", "upstream.urls: set either url"),
        ("[upstream]\nurls = []", "upstream.urls: expected at least one node URL"),
        ("[upstream]\nurls = [\"mqtt://a\", \"mqtts://b\"]", "upstream.urls: expected every node with the same scheme"),
        ("[upstream]\nurls = [\"mqtt://a\", \"mqtt://a:1883\"]", "upstream.urls[1]: mqtt://a:1883 is listed twice"),
        ("[upstream]\nurls = [\"mqtt://a\", \"http://b\"]", "upstream.urls[1]: expected mqtt://"),
        ("this is = not toml =", "not valid TOML"),
        // Values that were accepted and cost or misled (issue #52).
        ("[aggregation]\ncheckpoint_interval = \"1ns\"", "aggregation.checkpoint_interval: expected \"0s\" (off) or at least 100ms"),
        ("[gateway]\nstate_dir = \"\"", "gateway.state_dir: expected a directory"),
        ("[gateway]\ndurability = \"maybe\"", "gateway.durability: unknown variant `maybe`, expected `disk` or `none`"),
        ("[upstream]\ntopic_prefix = \"building/\\u0000/x\"", "upstream.topic_prefix: a control character (U+0000) at byte 9"),
        ("[aggregation]\nmax_series = 18446744073709551616", "aggregation.max_series: not valid TOML (line 2, column 14)"),
        // Names become label values, payload fields and file names.
        ("[[adapter]]\ntype = \"fake\"\nname = \"k\\\"v} 1\\nedge_gateway_injected_total 43\\n\"", "adapter[0].name: expected 1 to 64 of A-Z a-z 0-9 _ - ."),
        ("[[rule]]\nname = \"two words\"\nkind = \"silence\"\nafter = \"1m\"", "rule[0].name: expected 1 to 64 of"),
        ("[[rule]]\nname = \"\"\nkind = \"silence\"\nafter = \"1m\"", "rule[0].name: expected 1 to 64 of A-Z a-z 0-9 _ - . starting with a letter or a digit, got an empty name"),
        ("[dashboard]\n[[dashboard.user]]\nname = \"a:b\"\npassword_hash = \"$argon2id$x\"", "dashboard.user[0].name: expected 1 to 64 of"),
        // Keys of the table that a split-off part parses are still hinted.
        ("[upstream]\npasswd_env = \"X\"", "upstream.passwd_env: unknown key, expected one of `password_env`, "),
        ("[upstream]\nkeepalive = \"10s\"", "upstream.keepalive: unknown key, expected one of `keep_alive`, "),
        ("[upstream]\npassword = \"hunter2\"", "upstream.password: unknown key, expected one of `password_env`, "),
    ];
    for (text, expected) in cases {
        let got = problems(text);
        assert!(
            !got.iter().any(|p| p.contains("hunter2")),
            "a value that may be a password is never echoed: {got:#?}"
        );
        assert!(
            got.iter().any(|p| p.starts_with(expected)),
            "for {text:?} expected a problem starting with {expected:?}, got {got:#?}"
        );
    }
}

#[test]
fn urls_name_the_nodes_of_a_cluster_in_order() {
    let c = Config::<Fake>::parse(
        "[upstream]\nurls = [\"mqtt://a:1\", \"mqtt://b:2\", \"mqtt://c:3\"]\nusername = \"gw\"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let nodes: Vec<String> = c.upstream.nodes().iter().map(|u| u.to_string()).collect();
    assert_eq!(nodes, ["mqtt://a:1", "mqtt://b:2", "mqtt://c:3"]);
    assert_eq!(
        c.upstream.broker.url.to_string(),
        "mqtt://a:1",
        "the first node stands for the cluster"
    );
    assert_eq!(
        c.upstream.broker.username, "gw",
        "the other keys are shared"
    );
    let one =
        Config::<Fake>::parse("[upstream]\nurl = \"mqtt://h:9\"").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.upstream.nodes(), vec![one.upstream.broker.url.clone()]);
}

#[test]
fn several_mistakes_are_reported_at_once() {
    let text = r#"
[gateway]
id = "gw-01"
colour = "blue"

[upstream]
url = "ftp://cloud"
qos = 7

[aggregation]
window = "soon"
grace = "30s"

[[adapter]]
type = "fake"
name = "a"

[[adapter]]
type = "fake"
name = "a"
"#;
    let got = problems(text);
    for expected in [
        "gateway.colour: unknown key",
        "upstream.url: expected",
        "upstream.qos: expected 0, 1 or 2, got 7",
        "aggregation.window: expected a duration",
        "adapter[1].name: duplicate adapter name",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn device_tags_accept_tables_lists_and_shorthands() {
    let text = r#"
[[device]]
id = "d1"
name = "Fridge 2"
room = "kitchen"
floor = 1
tags = ["fridge"]

[[device]]
id = "d2"
name = "Hall"
tags = { zone = "north", floor = "2" }
"#;
    let c = Config::<Fake>::parse(text).unwrap();
    let t1 = c.devices[0].tag_map();
    assert_eq!(t1.get("fridge").map(String::as_str), Some("true"));
    assert_eq!(t1.get("room").map(String::as_str), Some("kitchen"));
    assert_eq!(t1.get("floor").map(String::as_str), Some("1"));
    assert_eq!(
        c.devices[1].tag_map().get("zone").map(String::as_str),
        Some("north")
    );
}

#[test]
fn registry_matches_macs_ignoring_case() {
    let c = Config::<Fake>::parse(CONTRACT).unwrap();
    let reg = crate::registry::DeviceRegistry::from_config(&c.devices);
    let upper = crate::DeviceId::new("A2:B2:C2:D2:E2:F2").unwrap();
    assert_eq!(reg.name_of(&upper), "Living Room");
    let unknown = crate::DeviceId::new("zz").unwrap();
    assert_eq!(reg.name_of(&unknown), "zz");
}

#[test]
fn an_adapter_family_owns_its_sections() {
    let c = Config::<Fake>::parse("[fakeproto]\nthings = [\"a\", \"b\"]").unwrap();
    assert_eq!(c.sections, ["a", "b"]);
    assert_eq!(
        Config::<Fake>::parse("").unwrap().sections,
        Vec::<String>::new()
    );
    let p = problems("[nope]\n");
    assert!(p[0].contains("fakeproto"), "{p:?}");
}

#[test]
fn the_issue_rules_parse_as_written() {
    let c = Config::<Fake>::parse(
        r#"
[[rule]]
name = "fridge-max"
kind = "threshold"      # threshold | rate | silence | anomaly
metric = "temperature"
device = "fridge-2"     # optional: device id, or `tag = "fridge"`
max = 8.0

[[rule]]
name = "temp-anomaly"
kind = "anomaly"
metric = "value"        # sensitivity = ... optional, with a good default
"#,
    )
    .unwrap();
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].kind, RuleKind::Threshold);
    assert_eq!(c.rules[0].max, Some(8.0));
    assert_eq!(c.rules[0].cooldown, Duration::from_secs(300));
    assert_eq!(c.rules[1].sensitivity, None);
}

#[test]
fn an_anomaly_rule_without_a_metric_is_the_device_model_and_valid() {
    // The template offers it ("Without `metric`, the rule also learns each
    // device's metrics together"); threshold and rate still need a metric.
    let got = problems(
        r#"
[[rule]]
name = "devices"
kind = "anomaly"
tag = "fridge"

[[rule]]
name = "too-warm"
kind = "threshold"
max = 8.0
"#,
    );
    assert_eq!(
        got,
        ["rule[1].metric: missing required key for kind \"threshold\""],
        "{got:#?}"
    );
}

#[test]
fn bad_rules_are_reported_with_their_index_and_key() {
    let got = problems(
        r#"
[[rule]]
name = "ok"
kind = "rate"
metric = "temperature"
rate = "+2.0 per 10m"
for = "1m"
action = { publish = "actuators/hvac_zone_1/command", payload = "on" }

[[rule]]
name = "ok"
kind = "threshold"
metric = "temperature"
min = 5.0
max = 3.0
after = "5m"

[[rule]]
name = "r2"
kind = "rate"
rate = "fast"

[[rule]]
name = "r3"
kind = "silence"
device = "a"
tag = "fridge"

[[rule]]
name = "r4"
kind = "anomaly"
metric = "co2"
sensitivity = 1.5
action = { payload = "x" }

[[rule]]
name = "r5"
kind = "sometimes"
"#,
    );
    assert_eq!(
        got,
        [
            "rule[2].rate: expected a change per span like \"+2.0 per 10m\", got \"fast\"",
            "rule[5].kind: unknown variant `sometimes`, expected one of `threshold`, `rate`, `silence`, `anomaly`",
            // The loader drops a bad value and tries again without it,
            // without calling the key it just refused missing.
            "rule[1].after: not used by kind \"threshold\" (only by silence)",
            "rule[1].min: expected min below max, got min 5 and max 3",
            "rule[2].metric: missing required key for kind \"rate\"",
            "rule[2].rate: missing required key, like \"+2.0 per 10m\"",
            "rule[3].tag: give either device or tag, not both",
            "rule[3].after: missing required key, like \"15m\"",
            "rule[4].sensitivity: expected a number in (0, 1], got 1.5",
            "rule[4].action: expected publish = \"topic\" or coap_put = \"coap://...\"",
            "rule[1].name: duplicate rule name \"ok\" (first used by rule[0])",
        ],
        "{got:#?}"
    );
}

#[test]
fn metrics_listen_on_loopback_by_default_and_can_be_turned_off() {
    let c = Config::<Fake>::parse("").unwrap();
    assert_eq!(c.metrics, MetricsConfig::default());
    assert!(c.metrics.enabled);
    assert_eq!(c.metrics.bind.to_string(), "127.0.0.1:9898");
    let off = Config::<Fake>::parse("[metrics]\nenabled = false\nbind = \"[::]:9100\"").unwrap();
    assert!(!off.metrics.enabled);
    assert_eq!(off.metrics.bind.port(), 9100);
    let got = problems("[metrics]\nbind = \"localhost\"");
    assert!(
        got.iter().any(|p| p.starts_with("metrics.bind:")),
        "{got:#?}"
    );
}

fn layered_problems(main: &str, drop_in: &str, vars: &[(&str, &str)]) -> Vec<String> {
    let mut layers = Layers::default();
    layers.merge_text(main, Origin::Main, "gateway.toml");
    layers.merge_text(
        drop_in,
        Origin::DropIn("conf.d/20-site.toml".into()),
        "conf.d/20-site.toml",
    );
    layers.apply_env(vars.iter().map(|(k, v)| (k.into(), v.into())));
    match Config::<Fake>::from_layers(&layers) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn problems_of_merged_layers_name_the_drop_in_or_variable() {
    let got = layered_problems(
        "[upstream]\nqoss = 1\n[[adapter]]\ntype = \"fake\"\nname = \"a\"",
        "[aggregation]\nwindoww = \"5m\"\n[[adapter]]\ntype = \"fake\"\nname = \"a\"\ncolour = 1",
        &[
            ("EDGE_GATEWAY__UPSTREAM__URL", "http://x"),
            ("EDGE_GATEWAY__BOGUS__KEY", "1"),
            ("EDGE_GATEWAY__UPSTREAM", "x"),
        ],
    );
    for expected in [
        // The main file is named once by the caller, as before drop-ins.
        "upstream.qoss: unknown key",
        "conf.d/20-site.toml: aggregation.windoww: unknown key",
        "conf.d/20-site.toml: adapter[1].colour: unknown key",
        "conf.d/20-site.toml: adapter[1].name: duplicate adapter name \"a\" (first used by adapter[0])",
        "EDGE_GATEWAY__UPSTREAM__URL: upstream.url: expected mqtt://",
        "EDGE_GATEWAY__BOGUS__KEY: bogus: unknown section",
        "EDGE_GATEWAY__UPSTREAM: upstream: a table",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 7, "{got:#?}");
}

#[test]
fn a_drop_in_adds_an_adapter_and_a_variable_overrides_the_upstream() {
    let mut layers = Layers::default();
    layers.merge_text(CONTRACT, Origin::Main, "gateway.toml");
    layers.merge_text(
        "[[adapter]]\ntype = \"fake\"\nname = \"site-b\"\n[aggregation]\ngrace = \"1m\"",
        Origin::DropIn("conf.d/10-b.toml".into()),
        "conf.d/10-b.toml",
    );
    layers.apply_env([(
        "EDGE_GATEWAY__UPSTREAM__URL".into(),
        "mqtts://cloud.example:8883".into(),
    )]);
    let c = Config::<Fake>::from_layers(&layers).unwrap();
    let names: Vec<&str> = c.adapters.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["local-sensors", "site-b"]);
    assert_eq!(
        c.upstream.broker.url.to_string(),
        "mqtts://cloud.example:8883"
    );
    assert_eq!(
        c.upstream.forwarding.qos,
        Qos::AtLeastOnce,
        "kept from the file"
    );
    assert_eq!(c.aggregation.window, Duration::from_secs(300));
    assert_eq!(c.aggregation.grace, Duration::from_secs(60));
}

#[test]
fn upstream_is_on_when_its_section_is_there_and_does_not_say_enabled_false() {
    let absent = Config::<Fake>::parse("[gateway]\nid = \"gw\"").unwrap();
    assert!(!absent.upstream.enabled);
    let present = Config::<Fake>::parse("[upstream]\nurl = \"mqtt://h:9\"").unwrap();
    assert!(present.upstream.enabled);
    let empty_section = Config::<Fake>::parse("[upstream]").unwrap();
    assert!(empty_section.upstream.enabled);
    // Off, with its keys kept (and still parsed strictly), but not
    // checked: a password variable of an unused broker need not be set.
    let off = Config::<Fake>::parse(
        "[upstream]\nenabled = false\nurl = \"mqtt://h:9\"\npassword_env = \"EDGE_GW_TEST_SURELY_UNSET\"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!off.upstream.enabled);
    assert_eq!(off.upstream.broker.url.to_string(), "mqtt://h:9");
    let on = Config::<Fake>::parse("[upstream]\nenabled = true\nurl = \"mqtt://h:9\"").unwrap();
    assert!(on.upstream.enabled);
    for (text, want) in [
        (
            "[upstream]\nenabled = \"no\"",
            "upstream.enabled: expected true or false",
        ),
        (
            "[upstream]\nenabled = false\nqoss = 1",
            "upstream.qoss: unknown key",
        ),
    ] {
        let e = Config::<Fake>::parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn an_adapter_sets_units_for_every_device_it_hears() {
    let c = Config::<Fake>::parse(
        r#"
[[adapter]]
type = "fake"
name = "lora"
units = { battery = "V" }

[[adapter]]
type = "fake"
name = "plain"
"#,
    )
    .unwrap();
    // The adapter kind never saw the key (Fake refuses unknown keys).
    assert_eq!(c.adapters.len(), 2);
    assert_eq!(
        c.adapter_units,
        std::collections::BTreeMap::from([(
            "lora".to_string(),
            std::collections::BTreeMap::from([("battery".to_string(), "V".to_string())])
        )])
    );
    let p = problems(
        r#"
[[adapter]]
type = "fake"
name = "lora"
units = { battery = 3 }
"#,
    );
    assert!(
        p.iter().any(|p| p.contains("adapter[0].units.battery")),
        "{p:?}"
    );
}

#[test]
fn a_dashboard_write_interval_under_100ms_is_refused() {
    // 1ns was accepted, and the writer's timer then kept a core busy.
    for (value, refused) in [
        ("1ns", true),
        ("99ms", true),
        ("100ms", false),
        ("30s", false),
    ] {
        let got = problems(&format!(
            "[dashboard]\nenabled = true\nwrite_interval = \"{value}\"\n"
        ));
        assert_eq!(
            got,
            if refused {
                vec!["dashboard.write_interval: expected at least 100ms".to_string()]
            } else {
                vec![]
            },
            "{value}"
        );
    }
}

#[test]
fn durations_above_100_years_are_refused_in_every_key() {
    // u64::MAX seconds parsed, and a BACnet request's deadline then
    // overflowed `Instant + Duration`: a panic at every start.
    let got = problems(
        r#"
[aggregation]
window = "18446744073709551615s"
grace = "1h"

[[rule]]
name = "r"
kind = "rate"
metric = "t"
rate = "+1 per 101years"
"#,
    );
    assert_eq!(
        got,
        [
            "aggregation.window: expected at most 100 years, got \"18446744073709551615s\"",
            "rule[0].rate: expected at most 100 years, got \"101years\"",
            "rule[0].rate: missing required key, like \"+2.0 per 10m\"",
        ],
        "{got:#?}"
    );
}
