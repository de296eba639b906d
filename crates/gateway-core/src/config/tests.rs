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
    fn from_table(_: &str, t: toml::Value, path: &str, p: &mut Problems) -> Option<Self> {
        load::section(t, path, p)
    }
    fn name(&self) -> &str {
        &self.name
    }
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
    assert_eq!(c.upstream.qos, Qos::AtLeastOnce);
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
    assert_eq!(c.upstream, UpstreamConfig::default());
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
        ("this is = not toml =", "not valid TOML"),
    ];
    for (text, expected) in cases {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p.starts_with(expected)),
            "for {text:?} expected a problem starting with {expected:?}, got {got:#?}"
        );
    }
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
