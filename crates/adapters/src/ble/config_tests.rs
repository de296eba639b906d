#![allow(clippy::unwrap_used)]

use super::*;
use crate::registry::OwnedSection;

const KEY: &str = "231d39c1d7cc1ab1aee224cd096db932";

fn adapter(text: &str) -> (Option<BleConfig>, Vec<String>) {
    let table: toml::Value = toml::from_str(text).unwrap();
    let mut problems = Problems::default();
    let c = BleConfig::from_table(table, "adapter[0]", &mut problems);
    (c, problems.iter().map(|p| p.to_string()).collect())
}

fn ble(text: &str, env: &[(&str, &str)]) -> (BleSection, Vec<String>) {
    let root: toml::Table = toml::from_str(text).unwrap();
    let mut problems = Problems::default();
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    };
    let s = section(&root, &lookup, &mut problems);
    (s, problems.iter().map(|p| p.to_string()).collect())
}

#[test]
fn defaults_and_replay() {
    let (c, p) = adapter(r#"name = "ble""#);
    assert!(p.is_empty(), "{p:?}");
    let c = c.unwrap();
    assert_eq!(c.source, BleSource::Radio { adapter: None });
    assert_eq!((c.accept, c.silence), (Accept::Any, DEFAULT_SILENCE));

    let (c, p) = adapter(
        r#"name = "ble"
source = "replay"
replay_file = "c.jsonl"
replay_speed = 0
accept = "registered""#,
    );
    assert!(p.is_empty(), "{p:?}");
    let c = c.unwrap();
    assert_eq!(
        c.source,
        BleSource::Replay {
            file: "c.jsonl".into(),
            speed: 0.0
        }
    );
    assert_eq!(c.accept, Accept::Registered);
}

#[test]
fn every_problem_has_its_path() {
    let (c, p) = adapter(
        r#"name = "ble"
replay_file = "c.jsonl"
silence = "1s""#,
    );
    assert!(c.is_none());
    assert!(p.iter().any(|p| p.contains("adapter[0].silence")), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("adapter[0].replay_file")),
        "{p:?}"
    );
    let (_, p) = adapter(
        r#"name = "ble"
source = "replay""#,
    );
    assert!(
        p.iter().any(|p| p.contains("adapter[0].replay_file")),
        "{p:?}"
    );
    let (_, p) = adapter(
        r#"name = "ble"
source = "replay"
replay_file = "x"
replay_speed = -1.0"#,
    );
    assert!(
        p.iter().any(|p| p.contains("adapter[0].replay_speed")),
        "{p:?}"
    );
}

#[test]
fn devices_with_keys_from_hex_or_env_never_show_the_key() {
    let text = format!(
        r#"[[ble.device]]
mac = "54:48:E6:8F:80:A5"
bindkey = "{KEY}"
name = "Kitchen"
room = "kitchen"
[[ble.device]]
mac = "a4:c1:38:8d:18:b2"
bindkey = "env:BLE_KEY"
[[ble.device]]
mac = "A4:C1:38:00:00:01"
"#
    );
    let (s, p) = ble(&text, &[("BLE_KEY", KEY)]);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.devices.len(), 3);
    assert!(s.devices[0].bindkey.is_some() && s.devices[1].bindkey.is_some());
    assert!(s.devices[2].bindkey.is_none());
    let reg = s.registry_devices();
    assert_eq!(reg.len(), 1);
    assert_eq!(reg[0].id.as_str(), "54:48:e6:8f:80:a5");
    assert_eq!(reg[0].room.as_deref(), Some("kitchen"));
    assert!(!format!("{s:?}").contains(KEY));

    let bad = r#"[[ble.device]]
mac = "54:48:E6:8F:80"
[[ble.device]]
mac = "54:48:E6:8F:80:A5"
bindkey = "env:MISSING"
[[ble.device]]
mac = "54:48:E6:8F:80:A6"
bindkey = "00112233445566778899aabbccddeeff00"
[[ble.device]]
mac = "54:48:E6:8F:80:A7"
[[ble.device]]
mac = "54:48:e6:8f:80:a7"
"#;
    let (s, p) = ble(bad, &[]);
    assert_eq!(s.devices.len(), 1, "{p:?}");
    assert!(p.iter().any(|p| p.contains("ble.device[0].mac")), "{p:?}");
    assert!(
        p.iter()
            .any(|p| p.contains("ble.device[1].bindkey") && p.contains("MISSING")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("ble.device[2].bindkey")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.contains("ble.device[4].mac")), "{p:?}");
    assert!(
        !p.iter().any(|p| p.contains("00112233445566778899")),
        "{p:?}"
    );
}

#[test]
fn the_template_parses_when_uncommented() {
    let text: String = template()
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with('[')
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let root: toml::Table = toml::from_str(&text).unwrap();
    let adapter_table = root["adapter"].as_array().unwrap()[0].clone();
    let mut table = adapter_table.as_table().unwrap().clone();
    table.remove("type");
    // Both sources are shown; the replay keys need source = "replay".
    table.insert("source".into(), "replay".into());
    let mut problems = Problems::default();
    assert!(
        BleConfig::from_table(toml::Value::Table(table), "adapter[0]", &mut problems).is_some(),
        "{problems:?}"
    );
    let mut problems = Problems::default();
    let s = section(&root, &|_| Some(KEY.into()), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(s.devices.len(), 1);
}

#[test]
fn a_device_placed_but_unnamed_is_registered_under_its_mac_and_names_no_adapter() {
    let text = r#"[[ble.device]]
mac = "A4:C1:38:8D:18:B2"
room = "living"
floor = 1
tags = { zone = "north" }
[[ble.device]]
mac = "A4:C1:38:00:00:02"
adapter = "ble"
[[ble.device]]
mac = "A4:C1:38:00:00:03"
name = ""
"#;
    let (s, p) = ble(text, &[]);
    assert_eq!(s.devices.len(), 1, "{p:?}");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("ble.device[1].adapter: unknown key"),
        "{p:?}"
    );
    assert_eq!(p[1], "ble.device[2].name: expected a non-empty text");
    let reg = s.registry_devices();
    assert_eq!(reg.len(), 1);
    assert_eq!(reg[0].id.as_str(), "a4:c1:38:8d:18:b2");
    assert_eq!(reg[0].name, "a4:c1:38:8d:18:b2");
    assert_eq!(reg[0].room.as_deref(), Some("living"));
    assert!(reg[0].floor.is_some());
}
