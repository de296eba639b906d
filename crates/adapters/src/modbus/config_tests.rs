#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gateway_core::config::Problems;

use super::*;
use crate::modbus::devices::section;
use crate::modbus::registers::{Order, Table, ValueType};
use crate::registry::{AdapterKind, OwnedSection};

fn adapter(text: &str) -> (Option<ModbusConfig>, Problems) {
    let mut p = Problems::default();
    let c = ModbusConfig::from_table(toml::from_str(text).unwrap(), "adapter[0]", &mut p);
    (c, p)
}

fn devices(text: &str) -> (crate::modbus::ModbusSection, Problems) {
    let root: toml::Table = toml::from_str(text).unwrap();
    let mut p = Problems::default();
    (section(&root, &mut p), p)
}

#[test]
fn tcp_and_rtu_buses_with_their_defaults() {
    let (c, p) = adapter("name = \"m\"\nurl = \"tcp://192.168.1.20\"");
    let c = c.unwrap_or_else(|| panic!("{p}"));
    assert_eq!(
        c.transport,
        Transport::Tcp {
            host: "192.168.1.20".into(),
            port: 502
        }
    );
    assert_eq!(
        (c.poll, c.timeout),
        (Duration::from_secs(10), Duration::from_secs(1))
    );
    let (c, _) = adapter("name = \"m\"\npath = \"/dev/ttyUSB0\"\nparity = \"even\"\npoll = \"2s\"");
    let Transport::Rtu(s) = c.unwrap().transport else {
        panic!("rtu")
    };
    assert_eq!(
        (s.baud, s.data_bits, s.parity, s.stop_bits, s.echo),
        (9600, 8, Parity::Even, 1, false)
    );
    // 11 bits a character at 9600 baud: 3.5 characters are 4.01 ms.
    assert_eq!(s.inter_frame_gap(), Duration::from_micros(4010));
    let fast = SerialSettings { baud: 115_200, ..s };
    assert_eq!(fast.inter_frame_gap(), Duration::from_micros(1750));
    assert_eq!(
        parse_tcp_url("tcp://[::1]:1502"),
        Ok(("::1".to_string(), 1502))
    );
    assert_eq!(
        parse_tcp_url("tcp://meter.local:15020/"),
        Ok(("meter.local".into(), 15020))
    );
}

#[test]
fn a_bus_needs_exactly_one_place_and_sane_settings() {
    let (c, p) = adapter("name = \"m\"");
    assert!(c.is_none() && p.to_string().contains("either url"), "{p}");
    let (c, p) = adapter("name = \"m\"\nurl = \"tcp://a\"\npath = \"/dev/x\"");
    assert!(c.is_none() && p.to_string().contains("either url"), "{p}");
    let (c, p) =
        adapter("name = \"m\"\nurl = \"http://a\"\nbaud = 9600\ntimeout = \"0s\"\npoll = \"10ms\"");
    assert!(c.is_none());
    let text = p.to_string();
    for key in [
        "adapter[0].url",
        "adapter[0].baud",
        "adapter[0].timeout",
        "adapter[0].poll",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
    let (c, p) =
        adapter("name = \"m\"\npath = \"/dev/x\"\ndata_bits = 9\nstop_bits = 3\nparity = \"mark\"");
    assert!(c.is_none());
    assert!(p.to_string().contains("parity"), "{p}");
}

#[test]
fn an_rs485_adapter_that_echoes_is_said_so_on_its_line_only() {
    let (c, p) = adapter("name = \"m\"\npath = \"/dev/ttyUSB0\"\necho = true");
    let Transport::Rtu(s) = c.unwrap_or_else(|| panic!("{p}")).transport else {
        panic!("rtu")
    };
    assert!(s.echo);
    // A TCP server has no line to echo on.
    let (c, p) = adapter("name = \"m\"\nurl = \"tcp://a\"\necho = true");
    assert!(c.is_none());
    assert!(
        p.to_string().contains("adapter[0].echo")
            && p.to_string().contains("only a serial line (path) takes it"),
        "{p}"
    );
    // Not a boolean: a problem at its key (the file is refused).
    let (_, p) = adapter("name = \"m\"\npath = \"/dev/ttyUSB0\"\necho = \"yes\"");
    assert!(p.to_string().contains("adapter[0].echo"), "{p}");
}

const BUS: &str = "[[adapter]]\ntype = \"modbus\"\nname = \"meters\"\npath = \"/dev/ttyUSB0\"\n";

#[test]
fn a_device_with_a_profile_and_its_own_registers() {
    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"meter-kitchen\"
unit = 3
name = \"Kitchen\"
room = \"kitchen\"
tags = {{ circuit = \"C4\" }}
profile = \"eastron_sdm120\"
poll = \"5s\"
registers = [
  {{ metric = \"voltage\", table = \"holding\", address = 100, type = \"i32\", order = \"cdab\", scale = 0.1, unit = \"V\" }},
  {{ metric = \"relay\", table = \"coil\", address = 7 }},
]
"
    ));
    assert!(p.is_empty(), "{p}");
    let d = &s.devices[0];
    assert_eq!((d.unit, d.poll), (3, Some(Duration::from_secs(5))));
    assert_eq!(d.common.adapter, None);
    let voltage = d.registers.iter().find(|r| r.metric == "voltage").unwrap();
    assert_eq!(
        (
            voltage.table,
            voltage.address,
            voltage.ty,
            voltage.order,
            voltage.scale
        ),
        (Table::Holding, 100, ValueType::I32, Order::Cdab, 0.1)
    );
    assert_eq!(
        d.registers.iter().filter(|r| r.metric == "voltage").count(),
        1
    );
    assert!(d
        .registers
        .iter()
        .any(|r| r.metric == "energy" && r.address == 0x156));
    assert!(d
        .registers
        .iter()
        .any(|r| r.metric == "relay" && r.table == Table::Coil));
    let reg = s.registry_devices();
    assert_eq!(reg[0].name, "Kitchen");
    assert_eq!(reg[0].units.get("energy").map(String::as_str), Some("kWh"));
    assert_eq!(
        reg[0].units.get("power_factor").map(String::as_str),
        Some("")
    );
    assert_eq!(
        reg[0].tag_map().get("circuit").map(String::as_str),
        Some("C4")
    );
    assert_eq!(s.devices_of("meters").len(), 1);
}

/// A register map copied from Home Assistant (`float32`, `uint16`) or
/// Telegraf (`INT32`, `CDAB`) reads as our own names do.
#[test]
fn home_assistants_and_telegrafs_type_and_order_names_are_taken() {
    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"meter-hall\"
unit = 4
registers = [
  {{ metric = \"a\", address = 0, type = \"float32\" }},
  {{ metric = \"b\", address = 2, type = \"uint16\" }},
  {{ metric = \"c\", address = 3, type = \"INT32\", order = \"CDAB\" }},
  {{ metric = \"d\", address = 5, type = \"FLOAT64\", order = \"dcba\" }},
]
"
    ));
    assert!(p.is_empty(), "{p}");
    let got: Vec<(&str, ValueType, Order)> = s.devices[0]
        .registers
        .iter()
        .map(|r| (r.metric.as_str(), r.ty, r.order))
        .collect();
    assert_eq!(
        got,
        [
            ("a", ValueType::F32, Order::Abcd),
            ("b", ValueType::U16, Order::Abcd),
            ("c", ValueType::I32, Order::Cdab),
            ("d", ValueType::F64, Order::Dcba),
        ]
    );
}

#[test]
fn every_mistake_in_a_device_is_reported_with_its_path() {
    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"a\"
unit = 0
profile = \"eastron_sdm999\"

[[modbus.device]]
id = \"b\"
unit = 1
registers = [
  {{ metric = \"t\", address = 65535, type = \"f32\" }},
  {{ metric = \"c\", table = \"coil\", address = 1, type = \"f32\" }},
  {{ metric = \"bad name/\", address = 1 }},
  {{ metric = \"s\", address = 1, scale = nan }},
  {{ metric = \"s\", address = 2, order = \"abdc\" }},
]

[[modbus.device]]
id = \"c\"
unit = 1

[[modbus.device]]
id = \"d\"
unit = 1
adapter = \"nope\"
registers = [{{ metric = \"x\", address = 0 }}]

[[modbus.device]]
id = \"e\"
unit = 0
registers = [{{ metric = \"x\", address = 0 }}]
"
    ));
    assert!(s.devices.is_empty(), "{:?}", s.devices);
    let text = p.to_string();
    for needle in [
        "modbus.device[0].profile: expected one of \"eastron_sdm120\"",
        "modbus.device[1].registers[0].address",
        "modbus.device[1].registers[1].type",
        "modbus.device[1].registers[2].metric",
        "modbus.device[1].registers[3].scale",
        "modbus.device[1].registers[4].order",
        "modbus.device[2]: expected registers",
        "modbus.device[3].adapter: no [[adapter]]",
        "modbus.device[4].unit: expected 1 to 247",
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }
}

#[test]
fn devices_must_say_their_bus_when_there_are_several_and_never_repeat() {
    let two = format!(
        "{BUS}\n[[adapter]]\ntype = \"modbus\"\nname = \"plant\"\nurl = \"tcp://10.0.0.2\"\n"
    );
    let (_, p) = devices(&format!(
        "{two}
[[modbus.device]]
id = \"a\"
unit = 1
profile = \"eastron_sdm630\"
"
    ));
    assert!(p.to_string().contains("name the one"), "{p}");
    let (s, p) = devices(&format!(
        "{two}
[[modbus.device]]
adapter = \"plant\"
id = \"a\"
unit = 255
profile = \"systemair_save\"

[[modbus.device]]
adapter = \"plant\"
id = \"b\"
unit = 255
profile = \"systemair_save\"

[[modbus.device]]
adapter = \"meters\"
id = \"a\"
unit = 2
profile = \"eastron_sdm120\"
"
    ));
    let text = p.to_string();
    assert!(
        text.contains("modbus.device[1].unit: unit 255 on \"plant\" is already modbus.device[0]"),
        "{text}"
    );
    assert!(
        text.contains("modbus.device[2].id: a is listed twice"),
        "{text}"
    );
    assert_eq!(s.devices.len(), 1);
    assert_eq!(s.devices_of("plant").len(), 1);
    assert!(s.devices_of("meters").is_empty());
    let (_, p) = devices("[[modbus.device]]\nid = \"a\"\nunit = 1\nprofile = \"eastron_sdm120\"\n");
    assert!(
        p.to_string()
            .contains("no [[adapter]] type = \"modbus\" reads it"),
        "{p}"
    );
}

#[test]
fn the_template_parses_once_uncommented() {
    let text: String = template()
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut table = doc["adapter"].as_array().unwrap()[0].clone();
    let kind = table.as_table_mut().unwrap().remove("type").unwrap();
    assert_eq!(kind.as_str(), Some(KIND));
    let mut p = Problems::default();
    assert!(
        ModbusConfig::from_table(table, "a", &mut p).is_some(),
        "{p}"
    );
    let (s, p) = devices(&text);
    assert!(p.is_empty(), "{p}\n{text}");
    assert_eq!(s.devices.len(), 1);
    assert!(s.devices[0]
        .registers
        .iter()
        .any(|r| r.metric == "total_energy"));
}

#[test]
fn writable_registers_and_their_bounds() {
    let head = "[[adapter]]\ntype = \"modbus\"\nname = \"m\"\nurl = \"tcp://127.0.0.1\"\n[[modbus.device]]\nid = \"ahu\"\nunit = 1\n";
    let (s, p) = devices(&format!(
        "{head}registers = [{{ metric = \"sp\", address = 0, scale = 0.1, writable = true, min = 15.0, max = 30.0 }}, {{ metric = \"fan\", table = \"coil\", address = 1, writable = true }}]"
    ));
    assert!(p.is_empty(), "{p}");
    let regs = &s.devices[0].registers;
    assert!(regs[0].writable && regs[1].writable);
    assert_eq!(regs[0].bounds(), Some((15.0, 30.0)));
    assert_eq!(regs[1].bounds(), None);
    for (register, key) in [
        (
            "{ metric = \"t\", table = \"input\", address = 0, writable = true }",
            "writable",
        ),
        ("{ metric = \"t\", address = 0, min = 1.0 }", "min"),
        (
            "{ metric = \"t\", address = 0, writable = true, min = 5.0, max = 1.0 }",
            "min",
        ),
        (
            "{ metric = \"t\", address = 0, writable = true, scale = 0.0 }",
            "scale",
        ),
    ] {
        let (_, p) = devices(&format!("{head}registers = [{register}]"));
        assert!(
            p.to_string().contains(&format!("registers[0].{key}")),
            "{register}: {p}"
        );
    }
}

#[test]
fn a_unit_out_of_range_is_one_problem_in_words() {
    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"a\"
unit = 300
profile = \"eastron_sdm120\"
"
    ));
    assert!(s.devices.is_empty());
    let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        got,
        ["modbus.device[0].unit: expected a whole number from 0 to 255, got 300"],
        "one problem, no Rust type name, no false \"missing required key\""
    );
}

#[test]
fn a_manuals_register_number_is_noted_with_the_address_it_probably_means() {
    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"a\"
unit = 1
registers = [
  {{ metric = \"voltage\", table = \"input\", address = 30001, type = \"f32\" }},
  {{ metric = \"setpoint\", table = \"holding\", address = 40013 }},
  {{ metric = \"fine\", table = \"input\", address = 30000 }},
  {{ metric = \"coil\", table = \"coil\", address = 40001 }},
]
"
    ));
    assert!(p.is_empty(), "valid, so no problem: {p}");
    assert_eq!(s.devices.len(), 1);
    use crate::registry::OwnedSection;
    assert_eq!(
        s.notes(),
        [
            "modbus.device[0].registers[0].address: 30001 looks like a manual's register number (30001 is the first input register, counted from 1); addresses here are 0-based protocol addresses, so it is probably address = 0",
            "modbus.device[0].registers[1].address: 40013 looks like a manual's register number (40001 is the first holding register, counted from 1); addresses here are 0-based protocol addresses, so it is probably address = 12",
        ]
    );
}

#[test]
fn bits_and_strings_expand_into_registers_and_their_mistakes_are_named() {
    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"heat-pump\"
unit = 1
registers = [
  {{ table = \"holding\", address = 30, bits = {{ compressor_on = 0, defrost = 1, alarm = 15 }} }},
  {{ metric = \"status\", address = 31, type = \"u32\", bits = {{ fault = 31 }} }},
  {{ metric = \"serial_number\", address = 40, type = \"string\", length = 5 }},
]
"
    ));
    assert!(p.is_empty(), "{p}");
    let regs = &s.devices[0].registers;
    let bit = |m: &str| {
        regs.iter()
            .find(|r| r.metric == m)
            .map(|r| (r.address, r.bit))
    };
    assert_eq!(bit("compressor_on"), Some((30, Some(0))));
    assert_eq!(bit("alarm"), Some((30, Some(15))));
    assert_eq!(bit("status"), Some((31, None)), "the whole word too");
    assert_eq!(bit("fault"), Some((31, Some(31))));
    let serial = regs.iter().find(|r| r.metric == "serial_number").unwrap();
    assert_eq!((serial.span(), serial.is_text()), (5, true));
    // A status word 0x8001: compressor on, no defrost, alarm.
    let alarm = regs.iter().find(|r| r.metric == "alarm").unwrap();
    let defrost = regs.iter().find(|r| r.metric == "defrost").unwrap();
    assert_eq!(alarm.value_of_words(&[0x8001]), Some(1.0));
    assert_eq!(defrost.value_of_words(&[0x8001]), Some(0.0));
    assert_eq!(
        serial.text_of_words(&[0x534E, 0x2D30, 0x3034, 0x3200, 0x0000]),
        Some("SN-0042".to_string())
    );

    let (s, p) = devices(&format!(
        "{BUS}
[[modbus.device]]
id = \"b\"
unit = 1
registers = [
  {{ address = 1 }},
  {{ address = 2, type = \"i16\", bits = {{ a = 0 }} }},
  {{ address = 3, bits = {{ b = 16 }} }},
  {{ address = 4, bits = {{ c = 0 }}, scale = 0.1 }},
  {{ metric = \"s\", address = 5, type = \"string\" }},
  {{ metric = \"t\", address = 6, type = \"string\", length = 2, order = \"cdab\" }},
  {{ metric = \"u\", address = 7, length = 2 }},
  {{ metric = \"v\", address = 8, type = \"string\", length = 2, writable = true }},
  {{ address = 9, bits = {{ d = 0, e = 0 }} }},
  {{ address = 10, bits = {{ d = 1 }} }},
]
"
    ));
    assert!(s.devices.is_empty());
    let text = p.to_string();
    for needle in [
        "modbus.device[0].registers[0].metric: missing required key (or bits",
        "modbus.device[0].registers[1].type: bits are read from an unsigned register",
        "modbus.device[0].registers[2].bits.b: a u16 has bits 0 to 15, got 16",
        "modbus.device[0].registers[3].scale: bits take no scale",
        "modbus.device[0].registers[4].length: a string takes length",
        "modbus.device[0].registers[5].order: a string's characters are in order abcd",
        "modbus.device[0].registers[6].length: only type = \"string\" takes it",
        "modbus.device[0].registers[7].writable",
        "modbus.device[0].registers[9].bits: \"d\" is read twice",
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }
}
