#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gateway_core::config::Problems;

use super::*;
use crate::bacnet::devices::section;
use crate::bacnet::tags::ObjectId;
use crate::registry::AdapterKind;

fn adapter(text: &str) -> (Option<BacnetConfig>, Problems) {
    let mut p = Problems::default();
    let c = BacnetConfig::from_table(toml::from_str(text).unwrap(), "adapter[0]", &mut p);
    (c, p)
}

fn devices(text: &str) -> (crate::bacnet::BacnetSection, Problems) {
    let root: toml::Table = toml::from_str(text).unwrap();
    let mut p = Problems::default();
    (section(&root, &mut p), p)
}

#[test]
fn an_adapter_with_its_defaults_and_a_bbmd() {
    let (c, p) = adapter("name = \"bms\"");
    let c = c.unwrap_or_else(|| panic!("{p}"));
    assert_eq!(c.bind, "0.0.0.0:47808".parse().unwrap());
    assert_eq!(
        (c.poll, c.timeout),
        (Duration::from_secs(60), Duration::from_secs(3))
    );
    assert!(c.broadcast.is_empty() && c.bbmd.is_none());
    let (c, p) = adapter(
        "name = \"bms\"\nbbmd = \"10.0.0.1\"\nbroadcast = [\"192.168.1.255:47808\"]\nttl = \"5m\"",
    );
    let c = c.unwrap_or_else(|| panic!("{p}"));
    assert_eq!(c.bbmd, Some("10.0.0.1:47808".parse().unwrap()));
    assert_eq!(c.broadcast, ["192.168.1.255:47808".parse().unwrap()]);
}

#[test]
fn bad_adapter_keys_are_problems_with_their_paths() {
    let (c, p) = adapter(
        "name = \"bms\"\nbind = \"nowhere\"\nttl = \"1s\"\ncov_lifetime = \"0s\"\npoll = \"1ms\"",
    );
    assert!(c.is_none());
    let text = p.to_string();
    for key in [
        "adapter[0].bind",
        "adapter[0].ttl",
        "adapter[0].cov_lifetime",
        "adapter[0].poll",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
}

#[test]
fn devices_with_objects_exclude_and_default_ids() {
    let (s, p) = devices(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"

[[bacnet.device]]
instance = 1001
objects = ["analog-input:1", "analogValue:3", "msv:2", "ANALOG_INPUT:5", "analog-value, 6"]
exclude = ["binary-input:4"]
cov = true

[[bacnet.device]]
instance = 1002
id = "ahu-2"
address = "127.0.0.1:47901"
"#,
    );
    assert!(p.is_empty(), "{p}");
    let d = &s.devices[0];
    assert_eq!(d.id.as_str(), "bacnet-1001");
    assert_eq!(
        d.objects.as_deref(),
        Some(
            &[
                ObjectId::new(0, 1),
                ObjectId::new(2, 3),
                ObjectId::new(19, 2),
                ObjectId::new(0, 5),
                ObjectId::new(2, 6)
            ][..]
        )
    );
    assert_eq!(d.exclude, [ObjectId::new(3, 4)]);
    assert!(d.cov);
    assert_eq!(
        s.devices[1].address,
        Some("127.0.0.1:47901".parse().unwrap())
    );
    assert_eq!(s.devices_of("bms").len(), 2);
}

#[test]
fn device_mistakes_are_reported() {
    let (s, p) = devices(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"

[[bacnet.device]]
instance = 4194303
objects = ["thermostat:1"]

[[bacnet.device]]
instance = 7
adapter = "other"

[[bacnet.device]]
instance = 8

[[bacnet.device]]
instance = 8
id = "again"
"#,
    );
    let text = p.to_string();
    assert!(text.contains("bacnet.device[0].instance"), "{text}");
    assert!(text.contains("bacnet.device[0].objects[0]"), "{text}");
    assert!(text.contains("bacnet.device[1].adapter"), "{text}");
    assert!(text.contains("bacnet.device[3].instance"), "{text}");
    assert_eq!(s.devices.len(), 1);
}

#[test]
fn writable_objects_and_their_priority() {
    let (s, p) = devices(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"

[[bacnet.device]]
instance = 1001
writable = ["analog-value:3", "binaryValue:1", "multi-state-value:2"]

[[bacnet.device]]
instance = 1002
writable = ["analog-output:1"]
priority = 8
"#,
    );
    assert!(p.is_empty(), "{p}");
    assert_eq!(
        s.devices[0].writable,
        [
            ObjectId::new(2, 3),
            ObjectId::new(5, 1),
            ObjectId::new(19, 2)
        ]
    );
    assert_eq!(s.devices[0].priority, 16, "the default");
    assert_eq!(s.devices[1].priority, 8);

    let (s, p) = devices(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"

[[bacnet.device]]
instance = 1
priority = 0

[[bacnet.device]]
instance = 2
priority = 17

[[bacnet.device]]
instance = 3
writable = ["device:3", "analog-value:1", "analog-value:1", "setpoint"]
"#,
    );
    let text = p.to_string();
    for key in [
        "bacnet.device[0].priority",
        "bacnet.device[1].priority",
        "bacnet.device[2].writable[0]",
        "bacnet.device[2].writable[2]",
        "bacnet.device[2].writable[3]",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
    assert!(s.devices.is_empty(), "{text}");
}

/// Issue 68 (5, 6): an input is not commandable; a misspelt type lists
/// the names accepted; an address without a port takes BACnet/IP's.
#[test]
fn an_input_is_not_writable_a_misspelt_type_lists_the_names_and_a_bare_host_takes_47808() {
    let (s, p) = devices(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"

[[bacnet.device]]
instance = 1
writable = ["analog-input:1", "binary-input:2", "multi-state-input:3"]

[[bacnet.device]]
instance = 2
objects = ["analog-inptu:1"]

[[bacnet.device]]
instance = 3
address = "127.0.0.1"
"#,
    );
    let text = p.to_string();
    for j in 0..3 {
        assert!(
            text.contains(&format!("bacnet.device[0].writable[{j}]")),
            "{text}"
        );
    }
    assert!(text.contains("is an input"), "{text}");
    assert!(text.contains("not commandable"), "{text}");
    assert!(text.contains("bacnet.device[1].objects[0]"), "{text}");
    for name in [
        "analog-input (ai)",
        "multi-state-value (msv)",
        "binary-output (bo)",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    assert_eq!(s.devices.len(), 1, "{text}");
    assert_eq!(
        s.devices[0].address,
        Some("127.0.0.1:47808".parse().unwrap())
    );
    let template = super::template();
    assert!(
        template.contains("\"host\" for BACnet/IP's port 47808"),
        "the default port is documented"
    );
}
