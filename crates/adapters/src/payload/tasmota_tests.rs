//! Tasmota's telemetry as its documentation and consoles show it.

use super::super::test_support::*;
use super::super::{decode, DecodeError, Decoded, FieldReason, PayloadFormat};
use gateway_core::TimeSource::{Arrival, Event};

fn tasmota(payload: &str) -> Result<Decoded, DecodeError> {
    let d = dev("tasmota_1A2B3C");
    decode(
        &PayloadFormat::Tasmota,
        payload.as_bytes(),
        &ctx(Some(&d), None),
    )
}

/// (metric, value) of each reading by name (a nested object's keys come
/// in serde_json's order, sorted), all at `ms` from `source`.
fn values(d: &Decoded, ms: i64, source: gateway_core::TimeSource) -> Vec<(String, f64)> {
    for r in &d.readings {
        assert_eq!(
            (r.time().as_millis(), r.time_source()),
            (ms, source),
            "{r:?}"
        );
        assert_eq!(r.device().as_str(), "tasmota_1A2B3C");
    }
    let mut got: Vec<(String, f64)> = d
        .readings
        .iter()
        .map(|r| (r.metric().as_str().to_string(), r.value()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

fn named(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    let mut want: Vec<(String, f64)> = pairs.iter().map(|(m, v)| ((*m).to_string(), *v)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    want
}

fn ignored(d: &Decoded) -> Vec<&str> {
    let mut keys: Vec<&str> = d.ignored.iter().map(|(_, f)| f.as_str()).collect();
    keys.sort_unstable();
    keys
}

#[test]
fn a_climate_sensor_is_read_under_its_name() {
    let d = tasmota(
        r#"{"Time":"2019-11-03T19:34:28","AM2301":{"Temperature":21.6,"Humidity":58.3,"DewPoint":13.1},"TempUnit":"C"}"#,
    )
    .unwrap();
    // A bare local time says nothing of when: the arrival time.
    assert_eq!(
        values(&d, NOW, Arrival),
        named(&[
            ("AM2301_Temperature", 21.6),
            ("AM2301_Humidity", 58.3),
            ("AM2301_DewPoint", 13.1)
        ])
    );
    assert_eq!(ignored(&d), ["TempUnit"]);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn several_sensors_of_one_kind_keep_apart_and_their_ids_are_text() {
    let d = tasmota(
        r#"{"Time":"2021-01-02T10:24:28","DS18B20-1":{"Id":"01144A0CB2AA","Temperature":23.1},"DS18B20-2":{"Id":"000003287011","Temperature":22.8},"TempUnit":"C"}"#,
    )
    .unwrap();
    // An id of digits alone is still an id, never a reading.
    assert_eq!(
        values(&d, NOW, Arrival),
        named(&[
            ("DS18B20-1_Temperature", 23.1),
            ("DS18B20-2_Temperature", 22.8)
        ])
    );
    assert_eq!(ignored(&d), ["DS18B20-1_Id", "DS18B20-2_Id", "TempUnit"]);
}

#[test]
fn an_energy_monitor_and_its_phases() {
    let d = tasmota(
        r#"{"Time":"2026-11-21T11:00:00+01:00","ENERGY":{"TotalStartTime":"2019-10-29T20:47:05","Total":12.345,"Today":0.08,"Power":[10,20,30],"Voltage":[230,231,229],"Factor":0.9}}"#,
    )
    .unwrap();
    // A time with its offset (SetOption52) is the event time.
    assert_eq!(
        values(&d, T0, Event),
        named(&[
            ("ENERGY_Total", 12.345),
            ("ENERGY_Today", 0.08),
            ("ENERGY_Power_0", 10.0),
            ("ENERGY_Power_1", 20.0),
            ("ENERGY_Power_2", 30.0),
            ("ENERGY_Voltage_0", 230.0),
            ("ENERGY_Voltage_1", 231.0),
            ("ENERGY_Voltage_2", 229.0),
            ("ENERGY_Factor", 0.9),
        ])
    );
    assert_eq!(ignored(&d), ["ENERGY_TotalStartTime"]);
}

#[test]
fn a_device_whose_clock_is_not_set_yet_gets_the_arrival_time() {
    // Just booted, NTP not answered, SetOption52 on: 1970 with an offset.
    let d = tasmota(r#"{"Time":"1970-01-01T00:00:37+00:00","ANALOG":{"A0":512}}"#).unwrap();
    assert_eq!(values(&d, NOW, Arrival), named(&[("ANALOG_A0", 512.0)]));
    assert!(d.problems.is_empty(), "{:?}", d.problems);
}

#[test]
fn the_state_message_gives_relays_and_the_link() {
    let d = tasmota(
        r#"{"Time":"2021-01-02T10:24:28","Uptime":"0T02:55:09","UptimeSec":10509,"Heap":25,"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER1":"ON","POWER2":"off","Wifi":{"AP":1,"SSId":"home","BSSId":"AA:BB:CC:DD:EE:FF","Channel":6,"Mode":"11n","RSSI":78,"Signal":-61,"LinkCount":1,"Downtime":"0T00:00:03"}}"#,
    )
    .unwrap();
    assert_eq!(
        values(&d, NOW, Arrival),
        named(&[
            ("UptimeSec", 10509.0),
            ("Heap", 25.0),
            ("Sleep", 50.0),
            ("LoadAvg", 19.0),
            ("MqttCount", 1.0),
            ("POWER1", 1.0),
            ("POWER2", 0.0),
            ("Wifi_AP", 1.0),
            ("Wifi_Channel", 6.0),
            ("Wifi_RSSI", 78.0),
            ("Wifi_Signal", -61.0),
            ("Wifi_LinkCount", 1.0),
        ])
    );
    assert_eq!(
        ignored(&d),
        [
            "SleepMode",
            "Uptime",
            "Wifi_BSSId",
            "Wifi_Downtime",
            "Wifi_Mode",
            "Wifi_SSId"
        ]
    );
}

#[test]
fn on_and_off_are_states_only_under_relays_and_switches() {
    let d = tasmota(r#"{"Time":"x","Switch1":"OFF","ANALOG":{"A0":512},"Mode":"ON"}"#).unwrap();
    assert_eq!(
        values(&d, NOW, Arrival),
        named(&[("Switch1", 0.0), ("ANALOG_A0", 512.0)])
    );
    assert_eq!(ignored(&d), ["Mode"]);
}

#[test]
fn a_failed_sensor_is_a_problem_of_its_own_field() {
    let d = tasmota(
        r#"{"Time":"2021-01-02T10:24:28","SHT3X":{"Temperature":null,"Humidity":45.0,"DewPoint":NaN},"TempUnit":"C"}"#,
    )
    .unwrap();
    assert_eq!(values(&d, NOW, Arrival), named(&[("SHT3X_Humidity", 45.0)]));
    assert_eq!(
        d.problems,
        [
            p("SHT3X_DewPoint", FieldReason::NotFinite),
            p("SHT3X_Temperature", FieldReason::Null)
        ]
    );
}

#[test]
fn two_values_flattened_to_one_name_give_one_reading() {
    let d = tasmota(r#"{"A_B":1,"A":{"B":2}}"#).unwrap();
    assert_eq!(values(&d, NOW, Arrival), named(&[("A_B", 1.0)]));
    assert_eq!(
        d.problems,
        [p(
            "A_B",
            FieldReason::LeftOut("the same name as an earlier value".into())
        )]
    );
}

#[test]
fn nesting_is_followed_four_levels_below_the_top() {
    let d = tasmota(r#"{"a":{"b":{"c":{"d":{"e":1,"f":{"g":2}}}}}}"#).unwrap();
    assert_eq!(values(&d, NOW, Arrival), named(&[("a_b_c_d_e", 1.0)]));
    assert_eq!(
        d.problems,
        [p(
            "a_b_c_d_f",
            FieldReason::LeftOut("nested deeper than 4 levels".into())
        )]
    );
}

#[test]
fn a_key_that_cannot_be_a_metric_is_a_problem() {
    let d = tasmota(r#"{"BME280":{"Temp/C":21.0,"Pressure":1013.2}}"#).unwrap();
    assert_eq!(
        values(&d, NOW, Arrival),
        named(&[("BME280_Pressure", 1013.2)])
    );
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].field, "BME280_Temp/C");
    assert_eq!(d.problems[0].reason.kind(), "invalid_name");
}

#[test]
fn what_is_not_telemetry_is_refused() {
    assert_eq!(
        tasmota(r#"{"Time":"2021-01-02T10:24:28","TempUnit":"C"}"#),
        Err(DecodeError::NoValues)
    );
    assert_eq!(tasmota("Online").unwrap_err().kind(), "invalid_json");
    assert_eq!(tasmota("[1,2]").unwrap_err().kind(), "wrong_shape");
    assert_eq!(tasmota("").unwrap_err(), DecodeError::Empty);
    assert_eq!(
        tasmota(r#"{"t":1,"t":2}"#).unwrap_err().kind(),
        "duplicate_key"
    );
    assert_eq!(
        decode(
            &PayloadFormat::Tasmota,
            br#"{"ANALOG":{"A0":1}}"#,
            &ctx(None, None)
        ),
        Err(DecodeError::NoDevice)
    );
    let deep = r#"{"a":"#.repeat(10_000);
    assert_eq!(tasmota(&deep).unwrap_err().kind(), "invalid_json");
}
