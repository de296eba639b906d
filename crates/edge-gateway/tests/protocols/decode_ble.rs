//! `edge-gateway decode --ble` / `--ble-line` on the published BTHome and
//! Ruuvi vectors (tests/data/vectors), run as the real binary: one JSON
//! object per payload on stdout, exit 0 when something decoded, 65 when
//! nothing did (the objects still say why), 64 for a wrong command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::{json, Value};

/// bthome.io's encryption example.
const ENC_MAC: &str = "54:48:E6:8F:80:A5";
const ENC_KEY: &str = "231d39c1d7cc1ab1aee224cd096db932";
const ENC_FRAME: &str = "41e445f3c9962b332211006c7c4519";
/// Ruuvi's "valid data" vector.
const RUUVI: &str = "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F";

fn decode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("decode")
        .args(args)
        .env_remove("EDGE_GATEWAY_TEST_BINDKEY")
        .output()
        .unwrap()
}

/// The JSON objects on stdout, one per line.
fn objects(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn vectors(file: &str) -> Value {
    let path = format!(
        "{}/../../tests/data/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn plain_bthome_gives_the_readings_the_gateway_would() {
    let out = decode(&[
        "--ble",
        "4002ca0903bf13",
        "--mac",
        "A4:C1:38:8D:18:B2",
        "--rssi",
        "-60",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        objects(&out),
        [json!({
            "mac": "a4:c1:38:8d:18:b2",
            "uuid": "fcd2",
            "format": "bthome",
            "values": {"temperature": 25.06, "humidity": 50.55, "rssi": -60.0},
        })]
    );
}

#[test]
fn encrypted_bthome_opens_with_the_bindkey_from_the_command_line_or_the_environment() {
    let want = json!({
        "mac": "54:48:e6:8f:80:a5",
        "uuid": "fcd2",
        "format": "bthome_encrypted",
        "values": {"temperature": 25.06, "humidity": 50.55},
    });
    let out = decode(&["--ble", ENC_FRAME, "--mac", ENC_MAC, "--bindkey", ENC_KEY]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(objects(&out), std::slice::from_ref(&want));

    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["decode", "--ble", ENC_FRAME, "--mac", ENC_MAC])
        .args(["--bindkey", "env:EDGE_GATEWAY_TEST_BINDKEY"])
        .env("EDGE_GATEWAY_TEST_BINDKEY", ENC_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(objects(&out), [want]);
}

#[test]
fn every_published_encrypted_vector_decodes_or_is_refused_as_published() {
    let v = vectors("bthome_v2.json");
    let mut checked = 0;
    for vector in v["encrypted_vectors"].as_array().unwrap() {
        let id = vector["id"].as_str().unwrap();
        let (Some(hex), Some(mac), Some(key)) = (
            vector["service_data_hex"].as_str(),
            vector["mac"].as_str(),
            vector["bindkey"].as_str(),
        ) else {
            continue;
        };
        let out = decode(&["--ble", hex, "--mac", mac, "--bindkey", key]);
        let got = objects(&out);
        assert_eq!(got.len(), 1, "{id}: {out:?}");
        let expected = &vector["expected"];
        if expected["bindkey_verified"] == json!(false) {
            assert_eq!(out.status.code(), Some(65), "{id}: {out:?}");
            assert_eq!(got[0]["refused"], "decryption_failed", "{id}");
            assert!(got[0].get("values").is_none(), "{id}: no garbage values");
        } else {
            assert_eq!(out.status.code(), Some(0), "{id}: {out:?}");
            let values = &got[0]["values"];
            if let Some(t) = expected["temperature_c"].as_f64() {
                assert_eq!(values["temperature"].as_f64(), Some(t), "{id}");
            }
            if let Some(h) = expected["humidity_pct"].as_f64() {
                assert_eq!(values["humidity"].as_f64(), Some(h), "{id}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} encrypted vectors ran");
}

#[test]
fn security_refusals_exit_65_with_the_reason_and_no_values() {
    let wrong_key = "814aac74c4f17b6c1581e1ab87816b99";
    let rows: [(&[&str], &str); 3] = [
        (
            &["--ble", ENC_FRAME, "--mac", ENC_MAC, "--bindkey", wrong_key],
            "decryption_failed",
        ),
        (&["--ble", ENC_FRAME, "--mac", ENC_MAC], "no_bindkey"),
        // bad_inputs downgrade-plain-when-key-set
        (
            &[
                "--ble",
                "4004138a01",
                "--mac",
                ENC_MAC,
                "--bindkey",
                ENC_KEY,
            ],
            "downgrade_detected",
        ),
    ];
    for (args, reason) in rows {
        let out = decode(args);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {out:?}");
        let got = objects(&out);
        assert_eq!(got.len(), 1, "{args:?}");
        assert_eq!(got[0]["refused"], reason, "{args:?}");
        assert!(got[0].get("values").is_none(), "{args:?}");
        assert!(stderr(&out).contains("no decoder gave values"), "{out:?}");
        // The key is never repeated, whatever happens.
        assert!(!stderr(&out).contains(wrong_key) && !stderr(&out).contains(ENC_KEY));
    }
}

#[test]
fn ruuvi_by_company_id_matches_the_published_vector() {
    let v = vectors("ruuvi_rawv2.json");
    let vector = &v["vectors"][0];
    let hex = vector["payload_hex"].as_str().unwrap();
    assert_eq!(hex, RUUVI);
    let out = decode(&[
        "--ble",
        hex,
        "--mac",
        "CB:B8:33:4C:88:4F",
        "--company",
        "0499",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = objects(&out);
    assert_eq!(got[0]["format"], "ruuvi_rawv2");
    assert_eq!(got[0]["company"], "0499");
    let values = &got[0]["values"];
    let e = &vector["expected"];
    assert_eq!(values["temperature"], e["temperature_c"]);
    assert_eq!(values["humidity"], e["humidity_pct"]);
    assert_eq!(
        values["pressure"].as_f64(),
        Some(e["pressure_pa"].as_f64().unwrap() / 100.0)
    );
    assert_eq!(values["voltage"], e["voltage_v"]);
    assert_eq!(values["movement_counter"].as_f64(), Some(66.0));
}

#[test]
fn a_recorded_line_prints_what_each_decoder_makes_of_each_payload() {
    let line = format!(
        r#"{{"ts":"2026-11-21T10:00:00.000Z","mac":"{ENC_MAC}","rssi":-67,"service_data":{{"0000fcd2-0000-1000-8000-00805f9b34fb":"{ENC_FRAME}"}},"manufacturer_data":{{"0499":"{RUUVI}","004c":"0215"}}}}"#
    );
    // Without the key: BTHome refused, Ruuvi decoded, Apple's not understood.
    let out = decode(&["--ble-line", &line]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = objects(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0]["uuid"], "fcd2");
    assert_eq!(got[0]["refused"], "no_bindkey");
    // Service data first, then manufacturer data by company id.
    assert_eq!(got[1]["company"], "004c");
    assert_eq!(got[1]["refused"], "not_understood");
    assert_eq!(got[1]["format"], Value::Null);
    assert_eq!(got[2]["company"], "0499");
    assert_eq!(got[2]["values"]["temperature"].as_f64(), Some(24.3));
    assert_eq!(got[2]["values"]["rssi"].as_f64(), Some(-67.0));

    // With it: BTHome decodes, and the Ruuvi frame from a keyed device is a
    // downgrade, as the running gateway judges it.
    let out = decode(&["--ble-line", &line, "--bindkey", ENC_KEY]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = objects(&out);
    assert_eq!(got[0]["values"]["temperature"].as_f64(), Some(25.06));
    assert_eq!(got[2]["refused"], "downgrade_detected");
}

#[test]
fn published_bad_inputs_never_crash_and_never_invent_values() {
    let v = vectors("bthome_v2.json");
    for vector in v["bad_inputs"].as_array().unwrap() {
        let id = vector["id"].as_str().unwrap();
        let Some(hex) = vector["service_data_hex"].as_str() else {
            continue;
        };
        let mut args = vec!["--ble", hex, "--mac", "A4:C1:38:8D:18:B2"];
        if let Some(key) = vector["bindkey"].as_str() {
            args.extend(["--bindkey", key]);
        }
        let out = decode(&args);
        let code = out.status.code();
        assert!(matches!(code, Some(0 | 65)), "{id}: {out:?}");
        let got = objects(&out);
        assert_eq!(got.len(), 1, "{id}");
        // Only what bthome-ble 3.25.0 also found may appear.
        let published = &vector["verification"]["bthome_ble_3_25_0"]["values"];
        if let Some(values) = got[0]["values"].as_object() {
            for (name, value) in values {
                assert_eq!(published[name].as_f64(), value.as_f64(), "{id}: {name}");
            }
        }
    }
}

#[test]
fn a_wrong_command_line_exits_64_and_bad_bytes_65() {
    let rows: [(&[&str], i32, &str); 9] = [
        (&["--ble", "4002ca09"], 64, "--ble needs --mac"),
        (&["--ble", "4002ca09", "--mac", "54:48"], 64, "--mac"),
        (
            &["--ble", "40", "--mac", ENC_MAC, "--bindkey", "abcd"],
            64,
            "32 hex digits",
        ),
        (
            &[
                "--ble",
                "40",
                "--mac",
                ENC_MAC,
                "--bindkey",
                "env:EDGE_GATEWAY_TEST_BINDKEY",
            ],
            64,
            "EDGE_GATEWAY_TEST_BINDKEY is not set",
        ),
        (
            &["--ble", "40", "--mac", ENC_MAC, "--company", "49"],
            64,
            "--company",
        ),
        (
            &["--ble", "40", "--mac", ENC_MAC, "--codec", "compact_i16"],
            64,
            "do not go together",
        ),
        (&["--ble-line", "{}", "--mac", ENC_MAC], 64, "--ble-line"),
        (&["--ble", "4g", "--mac", ENC_MAC], 65, "hex"),
        (&["--ble-line", r#"{"ts":"x"}"#], 65, "--ble-line"),
    ];
    for (args, code, needle) in rows {
        let out = decode(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // clap refuses --uuid with --company itself (its usage status, 2).
    let out = decode(&[
        "--ble",
        "40",
        "--mac",
        ENC_MAC,
        "--uuid",
        "fcd2",
        "--company",
        "0499",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_payload_cut_short_and_a_button_press_are_said_in_words() {
    // A temperature object (0x02) with its two bytes missing, then a
    // button (0x3A) pressed twice: neither is Rust's debug notation.
    let out = decode(&["--ble", "4002", "--mac", ENC_MAC]);
    let got = objects(&out);
    assert_eq!(
        got[0]["stopped"], "object id 0x02 runs past the end of the payload",
        "{got:?}"
    );
    let out = decode(&["--ble", "40013a3a023a02", "--mac", ENC_MAC]);
    let got = objects(&out);
    assert_eq!(
        got[0]["events"],
        json!(["button double_press", "button double_press"]),
        "{got:?}"
    );
    assert_eq!(got[0]["values"]["battery"], 58.0, "{got:?}");
}
