//! Every datapoint type against the values xknx 4.0.0 encodes
//! (`vectors.json`, made by `gen_vectors.py` in a venv with xknx).

#![allow(clippy::unwrap_used, clippy::float_cmp)]

use super::*;
use serde_json::Value as Json;

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Vec<Json> {
    serde_json::from_str(include_str!("vectors.json")).unwrap()
}

/// The value the gateway reports for a vector: xknx's, except where it
/// rounds (5.001 and 5.003 to whole units) or names (20.102's modes).
fn expected(dpt: Dpt, v: &Json, raw: &[u8]) -> Value {
    match (dpt.main, dpt.sub) {
        (5, Some(1)) => Value::Number(f64::from(raw[0]) * 100.0 / 255.0),
        (5, Some(3)) => Value::Number(f64::from(raw[0]) * 360.0 / 255.0),
        (20, _) => Value::Number(v["value"].as_f64().unwrap()),
        (16, _) => Value::Text(v["xknx"].as_str().unwrap().to_string()),
        _ => Value::Number(v["xknx"].as_f64().unwrap()),
    }
}

#[test]
fn every_dpt_decodes_what_xknx_encodes_and_encodes_it_back_byte_for_byte() {
    let all = vectors();
    assert!(all.len() > 90);
    for v in &all {
        let dpt: Dpt = v["dpt"].as_str().unwrap().parse().unwrap();
        let (data_owned, payload) = match (&v["small"], v["bytes"].as_str()) {
            (Json::Bool(b), _) => (Vec::new(), Payload::Small(u8::from(*b))),
            (_, Some(hex)) => (bytes(hex), Payload::Bytes(bytes(hex))),
            _ => panic!("{v}"),
        };
        let data = payload.as_data();
        let got = dpt.decode(data).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(got, expected(dpt, v, &data_owned), "{v}");
        let value = match &v["value"] {
            Json::Bool(b) => CommandValue::Bool(*b),
            Json::String(s) => CommandValue::Text(s.clone()),
            n => CommandValue::Number(n.as_f64().unwrap()),
        };
        assert_eq!(
            dpt.encode(&value).unwrap_or_else(|e| panic!("{v}: {e}")),
            payload,
            "{v}"
        );
    }
}

#[test]
fn exact_values_where_xknx_rounds_and_the_senders_decimal_for_floats() {
    let percent = Dpt::new(5, 1);
    assert_eq!(
        percent.decode(Data::Bytes(&[128])).unwrap(),
        Value::Number(128.0 * 100.0 / 255.0)
    );
    assert_eq!(
        percent.decode(Data::Bytes(&[255])).unwrap(),
        Value::Number(100.0)
    );
    // 14.x: the 7 digits a single carries, not its binary expansion.
    let power = Dpt::new(14, 56);
    assert_eq!(
        power.decode(Data::Bytes(&0.1f32.to_be_bytes())).unwrap(),
        Value::Number(0.1)
    );
    assert_eq!(
        power.decode(Data::Bytes(&f32::MAX.to_be_bytes())).unwrap(),
        Value::Number(3.402823e38)
    );
    assert_eq!(
        Dpt::new(9, 1).decode(Data::Bytes(&[0x0C, 0x33])).unwrap(),
        Value::Number(21.5)
    );
    assert_eq!(
        Dpt::new(8, 10).decode(Data::Bytes(&[0x04, 0xD2])).unwrap(),
        Value::Number(12.34)
    );
    assert_eq!(
        Dpt::new(7, 3).decode(Data::Bytes(&[0x00, 0x0C])).unwrap(),
        Value::Number(120.0)
    );
    // 18.001's learn bit is not part of the scene number.
    assert_eq!(
        Dpt::new(18, 1).decode(Data::Bytes(&[0x84])).unwrap(),
        Value::Number(5.0)
    );
}

#[test]
fn payloads_of_the_wrong_shape_or_marked_invalid_are_errors() {
    let cases: &[(Dpt, Data<'_>)] = &[
        (Dpt::new(9, 1), Data::Bytes(&[0x7F, 0xFF])),
        (Dpt::new(9, 1), Data::Bytes(&[0x0C])),
        (Dpt::new(9, 1), Data::Small(1)),
        (Dpt::new(1, 1), Data::Bytes(&[1])),
        (Dpt::new(5, 1), Data::Bytes(&[1, 2])),
        (Dpt::new(13, 13), Data::Bytes(&[0, 0, 1])),
        (Dpt::new(14, 56), Data::Bytes(&f32::NAN.to_be_bytes())),
        (Dpt::new(20, 102), Data::Bytes(&[5])),
        // Values the type cannot mean, as xknx refuses them: a reserved
        // mode or tariff, a temperature under -273 °C, a negative lux.
        (Dpt::new(20, 105), Data::Bytes(&[18])),
        (Dpt::new(20, 105), Data::Bytes(&[21])),
        (Dpt::new(5, 6), Data::Bytes(&[255])),
        (Dpt::new(9, 1), Data::Bytes(&encode_float16(-273.5))),
        (Dpt::new(9, 4), Data::Bytes(&[0x80, 0x00])),
        (Dpt::new(9, 27), Data::Bytes(&encode_float16(-460.0))),
        (Dpt::new(16, 0), Data::Bytes(&[0x41; 15])),
        (Dpt::new(16, 0), Data::Bytes(&[0xC3, 0xA9])),
    ];
    for (dpt, data) in cases {
        assert!(dpt.decode(*data).is_err(), "{dpt} {data:?}");
    }
    // Their neighbours inside the range are read.
    let read = |dpt: Dpt, b: &[u8]| dpt.decode(Data::Bytes(b)).unwrap();
    assert_eq!(read(Dpt::new(20, 105), &[20]), Value::Number(20.0));
    assert_eq!(read(Dpt::new(20, 105), &[17]), Value::Number(17.0));
    assert_eq!(read(Dpt::new(5, 6), &[254]), Value::Number(254.0));
    assert_eq!(
        read(Dpt::new(9, 1), &encode_float16(-273.0)),
        Value::Number(-272.96),
        "the coding's nearest to -273 °C"
    );
    assert_eq!(read(Dpt::new(9, 4), &[0, 0]), Value::Number(0.0));
    assert_eq!(read(Dpt::new(9, 2), &[0x80, 0x00]), Value::Number(-20.48));
}

#[test]
fn commands_outside_a_types_range_or_of_the_wrong_kind_are_refused() {
    let n = CommandValue::Number;
    for (dpt, value, reason) in [
        ("5.001", n(101.0), "out_of_range"),
        ("5.001", n(-1.0), "out_of_range"),
        ("5.010", n(1.5), "out_of_range"),
        ("1.001", n(2.0), "out_of_range"),
        ("1.001", CommandValue::Text("on".into()), "type"),
        ("9.001", n(f64::NAN), "out_of_range"),
        ("9.001", n(1e7), "out_of_range"),
        ("20.102", n(5.0), "out_of_range"),
        ("20.105", n(18.0), "out_of_range"),
        ("20.105", n(255.0), "out_of_range"),
        ("17.001", n(0.0), "out_of_range"),
        ("16.000", n(1.0), "type"),
        (
            "16.000",
            CommandValue::Text("fifteen chars!!".into()),
            "out_of_range",
        ),
        ("16.000", CommandValue::Text("é".into()), "out_of_range"),
        ("13.013", CommandValue::Null, "type"),
    ] {
        let dpt: Dpt = dpt.parse().unwrap();
        assert_eq!(
            dpt.encode(&value).unwrap_err().reason,
            reason,
            "{dpt} {value:?}"
        );
    }
    assert_eq!(
        Dpt::new(1, 1).encode(&CommandValue::Bool(true)).unwrap(),
        Payload::Small(1)
    );
}

#[test]
fn types_read_in_every_notation_with_their_units() {
    for (text, main, sub) in [
        ("9.001", 9, Some(1)),
        ("9.1", 9, Some(1)),
        ("DPST-9-1", 9, Some(1)),
        ("dpst-13-13", 13, Some(13)),
        ("DPT-9", 9, None),
        ("DPT 9.001", 9, Some(1)),
        ("DPT9.001", 9, Some(1)),
        ("dpt-5.001", 5, Some(1)),
        ("14", 14, None),
        ("20.102", 20, Some(102)),
    ] {
        assert_eq!(text.parse::<Dpt>().unwrap(), Dpt { main, sub }, "{text}");
    }
    for bad in ["", "9.", ".1", "x", "2.001", "10.001", "16.002", "9.001.1", "DPT", "DPT x"] {
        assert!(bad.parse::<Dpt>().is_err(), "{bad}");
    }
    assert_eq!(Dpt::new(9, 1).to_string(), "9.001");
    assert_eq!(Dpt::new(12, 1200).to_string(), "12.1200");
    for (dpt, unit) in [
        ("9.001", Some("°C")),
        ("9.004", Some("lx")),
        ("9.007", Some("%")),
        ("9.008", Some("ppm")),
        ("9.005", Some("m/s")),
        ("9.024", Some("kW")),
        ("5.001", Some("%")),
        ("13.010", Some("Wh")),
        ("13.013", Some("kWh")),
        ("14.056", Some("W")),
        ("14.031", Some("J")),
        ("14.019", Some("A")),
        ("1.001", None),
        ("9", None),
        ("5.010", None),
    ] {
        assert_eq!(dpt.parse::<Dpt>().unwrap().unit(), unit, "{dpt}");
    }
}

#[test]
fn each_subtype_takes_the_range_the_standard_gives_it() {
    let n = CommandValue::Number;
    let refused = |dpt: &str, v: f64| {
        let dpt: Dpt = dpt.parse().unwrap();
        match dpt.encode(&n(v)) {
            Err(r) => r.reason == "out_of_range",
            Ok(_) => false,
        }
    };
    for (dpt, below, lowest) in [
        ("9.001", -273.5, -273.0),
        ("9.027", -460.0, -459.6),
        ("9.004", -0.5, 0.0),
        ("9.005", -1.0, 0.0),
        ("9.006", -1.0, 0.0),
        ("9.007", -0.01, 0.0),
        ("9.008", -1.0, 0.0),
        ("9.028", -1.0, 0.0),
        ("9.029", -1.0, 0.0),
        ("9.030", -1.0, 0.0),
        ("9.002", -671_089.0, -671_088.64),
        ("9.020", -671_089.0, -671_088.64),
        ("9.026", -671_089.0, -671_088.64),
        ("9", -671_089.0, -671_088.64),
        ("9.100", -671_089.0, -671_088.64),
    ] {
        assert!(refused(dpt, below), "{dpt} {below}");
        assert!(!refused(dpt, lowest), "{dpt} {lowest}");
        assert!(refused(dpt, 670_433.29) && !refused(dpt, 670_433.28), "{dpt}");
    }
    assert!(refused("5.006", 255.0) && !refused("5.006", 254.0));
    assert!(!refused("5.010", 255.0));
    // The config's min and max are checked against the same ranges.
    assert_eq!("9.001".parse::<Dpt>().unwrap().bounds(), Some((-273.0, 670_433.28)));
}

#[test]
fn a_1_bit_value_with_bits_above_bit_0_set_is_refused_as_xknx_refuses_it() {
    // xknx: a DPTBinary above 1 for a 1-bit type.
    let switch = Dpt::new(1, 1);
    for v in [2, 3, 0x3E, 0x3F] {
        assert!(
            matches!(switch.decode(Data::Small(v)), Err(DptError::Invalid(_))),
            "1.001 {v}"
        );
    }
    assert_eq!(switch.decode(Data::Small(0)).unwrap(), Value::Number(0.0));
    assert_eq!(switch.decode(Data::Small(1)).unwrap(), Value::Number(1.0));
}

#[test]
fn a_16_x_string_of_other_than_14_bytes_is_refused_as_xknx_refuses_it() {
    for dpt in [Dpt::new(16, 0), Dpt::new(16, 1)] {
        for len in [0, 1, 5, 13, 15] {
            let b = vec![0x41; len];
            assert!(
                matches!(dpt.decode(Data::Bytes(&b)), Err(DptError::Length { .. })),
                "{dpt} {len} bytes"
            );
        }
        let mut fourteen = b"hi".to_vec();
        fourteen.resize(14, 0);
        assert_eq!(
            dpt.decode(Data::Bytes(&fourteen)).unwrap(),
            Value::Text("hi".into())
        );
    }
}

#[test]
fn a_17_001_scene_with_its_reserved_bits_set_is_refused_as_xknx_refuses_it() {
    // xknx: a DPTSceneNumber's raw value is below 64.
    let scene = Dpt::new(17, 1);
    for raw in [0x40, 0x41, 0x80, 0xC0, 0xFF] {
        assert!(
            matches!(scene.decode(Data::Bytes(&[raw])), Err(DptError::Invalid(_))),
            "17.001 {raw:#x}"
        );
    }
    assert_eq!(scene.decode(Data::Bytes(&[0x3F])).unwrap(), Value::Number(64.0));
    // The writing side already stays inside: scene 1 to 64 only.
    assert_eq!(
        scene.encode(&CommandValue::Number(65.0)).unwrap_err().reason,
        "out_of_range"
    );
    assert_eq!(
        scene.encode(&CommandValue::Number(64.0)).unwrap(),
        Payload::Bytes(vec![0x3F])
    );
}
