use gateway_core::{DeviceId, MetricName, TimeSource, Timestamp};

use super::*;
use gateway_core::event::MetricStats;

fn reading(device: &str, metric: &str, value: f64, ms: i64) -> Reading {
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new(metric).unwrap(),
        value,
        Timestamp::from_millis(ms).unwrap(),
        TimeSource::Event,
    )
    .unwrap()
}

fn encoder(write: &[Series]) -> Encoder {
    let devices = crate::test_devices(
        r#"
[[device]]
id = "bme-1"
name = "Lab, bench=1"
room = "a b"
"#,
    );
    let config = InfluxConfig {
        measurement: "bme680 measure,x".into(),
        write: write.to_vec(),
        ..InfluxConfig::default()
    };
    Encoder::new(&config, DeviceRegistry::from_config(&devices))
}

fn lines(e: &mut Encoder, ev: &SinkEvent) -> String {
    let mut out = String::new();
    e.encode(ev, &mut out);
    out
}

#[test]
fn readings_of_one_sample_are_one_point_with_escaped_names() {
    let mut e = encoder(&[Series::Readings]);
    let ev = SinkEvent::Readings(vec![
        reading("bme-1", "temperature", 21.0, 1_700_000_000_000),
        reading("bme-1", "hum idity", 45.5, 1_700_000_000_000),
        reading("bme-1", "temperature", 21.25, 1_700_000_001_000),
        reading("other", "a=b", -1e-7, 1_700_000_001_000),
    ]);
    assert_eq!(
        lines(&mut e, &ev),
        "bme680\\ measure\\,x,device=bme-1,name=Lab\\,\\ bench\\=1,room=a\\ b temperature=21,hum\\ idity=45.5 1700000000000000000\n\
         bme680\\ measure\\,x,device=bme-1,name=Lab\\,\\ bench\\=1,room=a\\ b temperature=21.25 1700000001000000000\n\
         bme680\\ measure\\,x,device=other,name=other a\\=b=-0.0000001 1700000001000000000\n"
    );
}

/// A metric named like a tag a point of the measurement can have
/// (`device`, `name`, any device's registry tag, whether or not this
/// device has it) would make InfluxQL's `WHERE room = …` read the field
/// and blank every panel that filters by it: written as `{metric}_value`.
#[test]
fn a_metric_named_like_a_tag_is_written_apart_from_the_tag() {
    let mut e = encoder(&[Series::Readings]);
    let ev = SinkEvent::Readings(vec![
        reading("bme-1", "device", 1.0, 1_700_000_000_000),
        reading("bme-1", "room", 2.0, 1_700_000_000_000),
        reading("bme-1", "temperature", 21.0, 1_700_000_000_000),
        reading("stranger", "name", 3.0, 1_700_000_000_000),
        reading("stranger", "room", 4.0, 1_700_000_000_000),
    ]);
    assert_eq!(
        lines(&mut e, &ev),
        "bme680\\ measure\\,x,device=bme-1,name=Lab\\,\\ bench\\=1,room=a\\ b device_value=1,room_value=2,temperature=21 1700000000000000000\n\
         bme680\\ measure\\,x,device=stranger,name=stranger name_value=3,room_value=4 1700000000000000000\n"
    );
}

/// A metric named as a renamed one's field (`name_value` beside `name`,
/// `time_value` beside `time`) would share its field: one of the two
/// values lost in a point, the two metrics mixed in one series across
/// points. Renamed the same way, each metric keeps a field of its own.
#[test]
fn a_metric_named_as_a_renamed_ones_field_gets_a_field_of_its_own() {
    let mut e = encoder(&[Series::Readings]);
    let at = 1_700_000_000_000;
    let ev = SinkEvent::Readings(vec![
        reading("stranger", "name", 1.0, at),
        reading("stranger", "name_value", 2.0, at),
        reading("stranger", "name_value_value", 3.0, at),
        reading("stranger", "time", 4.0, at),
        reading("stranger", "time_value", 5.0, at),
        reading("stranger", "room_value", 6.0, at),
        reading("stranger", "room", 7.0, at),
    ]);
    assert_eq!(
        lines(&mut e, &ev),
        "bme680\\ measure\\,x,device=stranger,name=stranger name_value=1,name_value_value=2,name_value_value_value=3,time_value=4,time_value_value=5,room_value_value=6,room_value=7 1700000000000000000\n"
    );
    // Each metric its own field, whatever else the point holds.
    let mut fields = std::collections::BTreeSet::new();
    for metric in [
        "name",
        "name_value",
        "name_value_value",
        "time",
        "time_value",
        "room",
        "room_value",
        "value",
        "_value",
        "temperature",
        "temperature_value",
    ] {
        assert!(
            fields.insert(reading_field(metric, &e.tag_keys).into_owned()),
            "{metric}"
        );
    }
    // Where nothing collides the names are the ones written before.
    for (metric, field) in [
        ("temperature", "temperature"),
        ("temperature_value", "temperature_value"),
        ("value", "value"),
        ("_value", "_value"),
        ("name", "name_value"),
        ("time", "time_value"),
        ("device", "device_value"),
    ] {
        assert_eq!(reading_field(metric, &e.tag_keys), field);
    }
}

/// A `[[device]]` tag `time` is written as the tag `time_tag`: a metric
/// `time_tag` is then named like a tag, and written apart from it.
#[test]
fn a_metric_named_like_the_tag_a_time_tag_becomes_is_written_apart_from_it() {
    let devices = crate::test_devices(
        r#"
[[device]]
id = "clock-1"
name = "Clock"
tags = { time = "utc" }
"#,
    );
    let config = InfluxConfig {
        measurement: "m".into(),
        write: vec![Series::Readings],
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::from_config(&devices));
    let at = 1_700_000_000_000;
    let ev = SinkEvent::Readings(vec![
        reading("clock-1", "time_tag", 1.0, at),
        reading("clock-1", "time", 2.0, at),
    ]);
    assert_eq!(
        lines(&mut e, &ev),
        "m,device=clock-1,name=Clock,time_tag=utc time_tag_value=1,time_value=2 1700000000000000000\n"
    );
}

/// A device tagged both `time` and `time_tag`: `time` is written
/// `time_tag` (InfluxDB refuses a tag key `time`), so `time_tag` must go
/// elsewhere, or one of the two values is lost.
#[test]
fn tags_time_and_time_tag_of_one_device_are_both_written() {
    let devices = crate::test_devices(
        r#"
[[device]]
id = "clock-2"
name = "Clock"
tags = { time = "utc", time_tag = "ntp", time_tag_tag = "gps", timer = "t", room = "r" }
"#,
    );
    let config = InfluxConfig {
        measurement: "m".into(),
        write: vec![Series::Readings],
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::from_config(&devices));
    let at = 1_700_000_000_000;
    let ev = SinkEvent::Readings(vec![
        reading("clock-2", "t", 1.0, at),
        reading("clock-2", "time_tag_tag", 2.0, at),
    ]);
    assert_eq!(
        lines(&mut e, &ev),
        "m,device=clock-2,name=Clock,room=r,time_tag=utc,time_tag_tag=ntp,time_tag_tag_tag=gps,timer=t \
         t=1,time_tag_tag_value=2 1700000000000000000\n",
        "a metric named like a written tag key still goes apart from it"
    );
}

/// Renaming a tag key never maps two keys to one on a point, never gives
/// a key the gateway writes on that point itself, and leaves every other
/// key as it was written before: for every set of the gateway's keys a
/// point can carry.
#[test]
fn tag_keys_are_renamed_injectively_and_only_where_they_would_meet() {
    let keys = [
        "time",
        "time_tag",
        "time_tag_tag",
        "time_tag_tag_tag",
        "Time",
        "timetag",
        "time_",
        "_tag",
        "tag",
        "room",
        "time_tags",
        "my_time",
        "my_time_tag",
        "device",
        "device_tag",
        "device_tag_tag",
        "name",
        "name_tag",
        "unit",
        "unit_tag",
        "rule",
        "rule_tag",
        "metric",
        "kind",
        "state",
        "state_tag",
        "devices",
        "my_device",
        "Device",
        "gateway",
    ];
    for (unit, alert) in [(false, false), (true, false), (false, true), (true, true)] {
        let on = GatewayKeys { unit, alert };
        let written: std::collections::BTreeSet<_> = keys.iter().map(|k| tag_key(k, on)).collect();
        assert_eq!(written.len(), keys.len(), "{on:?}: {written:?}");
        let mut own = vec!["device", "name"];
        if unit {
            own.push("unit");
        }
        if alert {
            own.extend(["rule", "metric", "kind", "state"]);
        }
        for own in own {
            assert!(!written.contains(own), "{on:?}: {own} is the gateway's");
        }
    }
    let every = GatewayKeys {
        unit: true,
        alert: true,
    };
    for (k, w) in [
        ("time", "time_tag"),
        ("time_tag", "time_tag_tag"),
        ("time_tag_tag", "time_tag_tag_tag"),
        ("Time", "Time"),
        ("timetag", "timetag"),
        ("time_tags", "time_tags"),
        ("my_time_tag", "my_time_tag"),
        ("room", "room"),
        ("device", "device_tag"),
        ("device_tag", "device_tag_tag"),
        ("name", "name_tag"),
        ("unit", "unit_tag"),
        ("unit_tag", "unit_tag_tag"),
        ("rule", "rule_tag"),
        ("metric", "metric_tag"),
        ("kind", "kind_tag"),
        ("state", "state_tag"),
        ("devices", "devices"),
        ("my_device", "my_device"),
        ("Device", "Device"),
    ] {
        assert_eq!(tag_key(k, every), w, "{k}");
    }
    // Where the gateway does not write the key, the device's is written
    // as it always was: a readings point without `unit_tag`.
    let readings = GatewayKeys {
        unit: false,
        alert: false,
    };
    for k in ["unit", "unit_tag", "rule", "metric", "kind", "state_tag"] {
        assert_eq!(tag_key(k, readings), k);
    }
    assert_eq!(tag_key("time", readings), "time_tag");
    assert_eq!(tag_key("device", readings), "device_tag");
}

/// A device's tag of a key only an alert's points carry (`state`,
/// `kind`), or `unit` without `unit_tag`, kept its value on the readings'
/// points before: it keeps its name there, so queries by it still work,
/// and goes beside the gateway's on its alerts.
#[test]
fn a_device_tag_named_as_an_alert_tag_keeps_its_name_on_readings() {
    let devices = crate::test_devices(
        r#"
[[device]]
id = "flat-4b"
name = "Flat 4B"
tags = { unit = "4B", state = "NSW", kind = "flat" }
"#,
    );
    let config = InfluxConfig {
        measurement: "m".into(),
        write: vec![Series::Readings],
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::from_config(&devices));
    let ev = SinkEvent::Readings(vec![reading("flat-4b", "temperature", 21.5, 1)]);
    assert_eq!(
        lines(&mut e, &ev),
        "m,device=flat-4b,kind=flat,name=Flat\\ 4B,state=NSW,unit=4B temperature=21.5 1000000\n"
    );
}

/// A `[[device]]` tag named as one the gateway writes itself (`device`,
/// `name`, `unit`) was overwritten by the gateway's, or overwrote it: one
/// value lost. The gateway's is kept as it is, the device's renamed as
/// `time` is, and one already named so (`device_tag`) one `_tag` further.
#[test]
fn a_device_tag_named_as_a_gateway_tag_is_written_beside_it() {
    let devices = crate::test_devices(
        r#"
[[device]]
id = "node"
name = "Node"
tags = { device = "x", unit = "y", name = "n", device_tag = "z", room = "r" }
"#,
    );
    let config = InfluxConfig {
        measurement: "m".into(),
        write: vec![Series::Readings],
        unit_tag: true,
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::from_config(&devices));
    let ev = SinkEvent::Readings(vec![reading("node", "temperature", 4.5, 1)]);
    assert_eq!(
        lines(&mut e, &ev),
        "m,device=node,device_tag=x,device_tag_tag=z,name=Node,name_tag=n,room=r,unit=°C,unit_tag=y \
         temperature=4.5 1000000\n"
    );
}

/// An alert's own tags (`rule`, `metric`, `kind`, `state`, and `unit`
/// with `unit_tag`) are kept; a device's tags of those keys go beside them.
#[test]
fn a_device_tag_named_as_an_alert_tag_is_written_beside_it() {
    let devices = crate::test_devices(
        r#"
[[device]]
id = "other"
name = "Other"
tags = { rule = "r", metric = "m", kind = "k", state = "s", unit = "u" }
"#,
    );
    let config = InfluxConfig {
        write: vec![Series::Alerts],
        unit_tag: true,
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::from_config(&devices));
    let a = AlertEvent {
        device: DeviceId::new("other").unwrap(),
        rule: "hot".into(),
        metric: "temperature".into(),
        kind: "threshold".into(),
        state: "raised".into(),
        value: 31.5,
        limit: 30.0,
        at: Timestamp::from_millis(5).unwrap(),
        reason: None,
        expected: None,
        observed: None,
        source: gateway_core::SourceId::UNKNOWN,
    };
    let out = lines(&mut e, &SinkEvent::Alert(a));
    let tags = out.split(' ').next().unwrap();
    assert_eq!(
        tags,
        "alerts,device=other,kind=threshold,kind_tag=k,metric=temperature,metric_tag=m,\
         name=Other,rule=hot,rule_tag=r,state=raised,state_tag=s,unit=°C,unit_tag=u"
    );
}

/// `integer_fields`: the readings of a database an earlier bridge filled
/// with integers, written as it holds them; the windows stay floats.
#[test]
fn integer_fields_are_written_as_integers_rounded() {
    let config = InfluxConfig {
        measurement: "bme680_measure".into(),
        write: vec![Series::Readings],
        integer_fields: vec!["gas".into()],
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::default());
    let ev = SinkEvent::Readings(vec![
        reading("bme-2", "temperature", 21.5, 1_700_000_000_000),
        reading("bme-2", "gas", 12_000.6, 1_700_000_000_000),
        reading("bme-2", "gas", 1e300, 1_700_000_001_000),
    ]);
    assert_eq!(
        lines(&mut e, &ev),
        "bme680_measure,device=bme-2,name=bme-2 temperature=21.5,gas=12001i 1700000000000000000\n"
    );
}

#[test]
fn aggregates_are_one_point_at_window_start_with_five_fields_per_metric() {
    let mut e = encoder(&[Series::Aggregates]);
    let w = WindowEvent {
        device: DeviceId::new("other").unwrap(),
        start: Timestamp::from_millis(60_000).unwrap(),
        end: Timestamp::from_millis(120_000).unwrap(),
        partial: false,
        window_start: Timestamp::from_millis(60_000).unwrap(),
        rerun: 0,
        amendment: 0,
        partial_at: None,
        metrics: vec![(
            "t".into(),
            MetricStats {
                count: 3,
                avg: 2.0,
                min: 1.0,
                max: 3.5,
                std: f64::NAN,
            },
        )],
    };
    assert_eq!(
        lines(&mut e, &SinkEvent::Window(w)),
        "aggregates,device=other,name=other t_avg=2,t_min=1,t_max=3.5,t_count=3 60000000000\n"
    );
    // Not written by a sink that does not write readings.
    assert_eq!(
        lines(
            &mut e,
            &SinkEvent::Readings(vec![reading("x", "t", 1.0, 1)])
        ),
        ""
    );
}

#[test]
fn alerts_carry_their_transition_as_tags_and_an_escaped_text() {
    let mut e = encoder(&[Series::Alerts]);
    let a = AlertEvent {
        device: DeviceId::new("other").unwrap(),
        rule: "too \"hot\"\\".into(),
        metric: String::new(),
        kind: "threshold".into(),
        state: "raised".into(),
        value: 31.5,
        limit: 30.0,
        at: Timestamp::from_millis(5).unwrap(),
        reason: None,
        expected: None,
        observed: None,
        source: gateway_core::SourceId::UNKNOWN,
    };
    assert_eq!(
        lines(&mut e, &SinkEvent::Alert(a)),
        // A tag cannot end in a backslash (InfluxDB reads it as escaping
        // the comma after it): a fullwidth one stands for it. The text
        // keeps it, escaped.
        "alerts,device=other,kind=threshold,name=other,rule=too\\ \"hot\"\u{FF3C},state=raised value=31.5,limit=30,text=\"too \\\"hot\\\"\\\\ raised threshold: 31.5 (limit 30)\" 5000000\n"
    );
}

#[test]
fn an_anomaly_alert_states_its_range_in_the_unit_and_its_score_apart() {
    let mut e = encoder(&[Series::Alerts]);
    let a = AlertEvent {
        device: DeviceId::new("other").unwrap(),
        rule: "co2-anomaly".into(),
        metric: "co2".into(),
        kind: "anomaly".into(),
        state: "raised".into(),
        value: 894.0,
        limit: 5.25,
        at: Timestamp::from_millis(5).unwrap(),
        reason: Some("level_shift".into()),
        expected: Some((580.0, 702.5)),
        observed: Some(894.0),
        source: gateway_core::SourceId::UNKNOWN,
    };
    assert_eq!(
        lines(&mut e, &SinkEvent::Alert(a)),
        "alerts,device=other,kind=anomaly,metric=co2,name=other,rule=co2-anomaly,state=raised value=894,limit=5.25,score=5.25,expected_low=580,expected_high=702.5,text=\"co2-anomaly raised anomaly: co2 894 ppm (expected 580–702 ppm · score 5.2)\" 5000000\n"
    );
}

#[test]
fn with_unit_tag_each_metric_is_a_point_tagged_with_its_unit() {
    let sources = gateway_core::Sources::default();
    let lora = sources.register("lora", "semtech_udp");
    let units = Units::new(Default::default()).with_adapters(
        BTreeMap::from([(
            "lora".to_string(),
            BTreeMap::from([("battery".to_string(), "V".to_string())]),
        )]),
        sources,
    );
    let config = InfluxConfig {
        write: vec![Series::Readings, Series::Aggregates],
        unit_tag: true,
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::default()).with_units(units);
    let mut battery = reading("node", "battery", 3.7, 1);
    battery.set_source(lora);
    let readings = vec![reading("node", "temperature", 4.5, 1), battery];
    assert_eq!(
        lines(&mut e, &SinkEvent::Readings(readings)),
        "readings,device=node,name=node,unit=°C temperature=4.5 1000000\n\
         readings,device=node,name=node,unit=V battery=3.7 1000000\n"
    );
    // The window knows no adapter: the device's readings told it.
    let stats = MetricStats {
        count: 1,
        avg: 3.7,
        min: 3.7,
        max: 3.7,
        std: 0.0,
    };
    let w = WindowEvent {
        device: DeviceId::new("node").unwrap(),
        start: Timestamp::from_millis(0).unwrap(),
        end: Timestamp::from_millis(60_000).unwrap(),
        partial: false,
        window_start: Timestamp::from_millis(0).unwrap(),
        rerun: 0,
        amendment: 0,
        partial_at: None,
        metrics: vec![("battery".into(), stats), ("rssi".into(), stats)],
    };
    assert_eq!(
        lines(&mut e, &SinkEvent::Window(w)),
        "aggregates,device=node,name=node,unit=V battery_avg=3.7,battery_min=3.7,battery_max=3.7,battery_std=0,battery_count=1 0\n\
         aggregates,device=node,name=node,unit=dBm rssi_avg=3.7,rssi_min=3.7,rssi_max=3.7,rssi_std=0,rssi_count=1 0\n"
    );
}

/// The unit a device states itself (a BACnet object's `units`, reported
/// by its adapter) tags its points, where the name alone says nothing
/// (`supply_air`) or says wrong (`discharge_temp` in °F).
#[test]
fn with_unit_tag_a_unit_the_device_states_tags_its_points() {
    let sources = gateway_core::Sources::default();
    let bms = sources.register("bms", "bacnet");
    sources.report_units(
        "ahu-1",
        BTreeMap::from([
            ("supply_air".to_string(), "°C".to_string()),
            ("discharge_temp".to_string(), "°F".to_string()),
        ]),
    );
    let units = Units::new(Default::default()).with_adapters(BTreeMap::new(), sources);
    let config = InfluxConfig {
        write: vec![Series::Readings],
        unit_tag: true,
        ..InfluxConfig::default()
    };
    let mut e = Encoder::new(&config, DeviceRegistry::default()).with_units(units);
    let mut a = reading("ahu-1", "supply_air", 16.5, 1);
    let mut b = reading("ahu-1", "discharge_temp", 95.5, 1);
    a.set_source(bms);
    b.set_source(bms);
    assert_eq!(
        lines(&mut e, &SinkEvent::Readings(vec![a, b])),
        "readings,device=ahu-1,name=ahu-1,unit=°C supply_air=16.5 1000000\n\
         readings,device=ahu-1,name=ahu-1,unit=°F discharge_temp=95.5 1000000\n"
    );
}

/// What each part writes, as InfluxDB 1.6 reads it back (each row was
/// written to a real `influxd` and queried: `tests/influxdb_escaping.rs`
/// keeps checking the ones a device can send).
#[test]
fn backslashes_are_written_the_way_influxdb_reads_them_back() {
    let tag = |s: &str| {
        let mut out = String::new();
        key(&mut out, s);
        out
    };
    let field = |s: &str| {
        let mut out = String::new();
        field_key(&mut out, s);
        out
    };
    for (value, written) in [
        // Stored exactly: `x\,device=victim`, not with the backslash doubled.
        ("x\\,device=victim", "x\\\\,device\\=victim"),
        ("a\\b", "a\\b"),
        ("C:\\Users\\x y", "C:\\Users\\x\\ y"),
        // No tag can end in a backslash (InfluxDB takes it as escaping
        // the separator): a fullwidth one stands for each, so `node\`
        // stays its own series beside `node`.
        ("node\\", "node\u{FF3C}"),
        ("node\\\\", "node\u{FF3C}\u{FF3C}"),
        ("\\", "\u{FF3C}"),
        ("plain", "plain"),
    ] {
        assert_eq!(tag(value), written, "tag {value:?}");
    }
    assert!(tag_writable("\\") && !tag_writable(""));
    for (value, written) in [
        ("t\\x", "t\\x"),
        // Field keys are read as backslash pairs: a run before an escaped
        // character or at the end lost backslashes, or broke the line
        // (`t\\=1,hum=9` read as one field `t\=1,hum`).
        ("t\\", "t\u{FF3C}"),
        ("t\\\\", "t\u{FF3C}\u{FF3C}"),
        ("a\\,b", "a\u{FF3C}\\,b"),
        ("a\\\\,b", "a\u{FF3C}\u{FF3C}\\,b"),
        ("hum idity", "hum\\ idity"),
    ] {
        assert_eq!(field(value), written, "field key {value:?}");
    }
    assert!(field_key_writable("\\") && !field_key_writable(""));
    let mut out = String::new();
    measurement(&mut out, "m,x y\\");
    assert_eq!(out, "m\\,x\\ y\u{FF3C}");
}

#[test]
fn a_line_break_in_a_name_never_breaks_the_line() {
    let mut out = String::new();
    key(&mut out, "a\nb");
    assert_eq!(out, "a\\ b");
}

/// The times of the lines, in order.
fn times(text: &str) -> Vec<i64> {
    text.lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn readings_of_one_device_in_one_millisecond_are_each_their_own_point() {
    let mut e = encoder(&[Series::Readings]);
    let ms = 1_700_000_000_123;
    // 300 one-metric lines written to a socket at once, stamped alike.
    let burst: Vec<Reading> = (0..300)
        .map(|i| reading("bme-1", "temperature", f64::from(i), ms))
        .collect();
    let text = lines(&mut e, &SinkEvent::Readings(burst));
    assert_eq!(text.lines().count(), 300);
    assert!(text.lines().all(|l| l.matches("temperature=").count() == 1));
    let t = times(&text);
    assert_eq!(t[0], ms * 1_000_000);
    assert_eq!(t[299], ms * 1_000_000 + 299);
    // The next event in the same millisecond goes on counting.
    let more = lines(
        &mut e,
        &SinkEvent::Readings(vec![reading("bme-1", "temperature", 1.0, ms)]),
    );
    assert_eq!(times(&more), [ms * 1_000_000 + 300]);
    // Another device, and a later millisecond, start at 0.
    let other = lines(
        &mut e,
        &SinkEvent::Readings(vec![
            reading("other", "temperature", 1.0, ms),
            reading("bme-1", "temperature", 1.0, ms + 1),
        ]),
    );
    assert_eq!(times(&other), [ms * 1_000_000, (ms + 1) * 1_000_000]);
}

#[test]
fn a_sample_split_over_two_events_keeps_one_time_and_never_repeats_a_field() {
    let mut e = encoder(&[Series::Readings]);
    let ms = 1_000;
    let first = lines(
        &mut e,
        &SinkEvent::Readings(vec![reading("x", "temperature", 1.0, ms)]),
    );
    // The rest of the sample, then the next sample of the same second.
    let second = lines(
        &mut e,
        &SinkEvent::Readings(vec![
            reading("x", "humidity", 40.0, ms),
            reading("x", "temperature", 2.0, ms),
            reading("x", "humidity", 41.0, ms),
        ]),
    );
    assert_eq!(times(&first), [ms * 1_000_000]);
    assert_eq!(
        second,
        "bme680\\ measure\\,x,device=x,name=x humidity=40 1000000000\n\
         bme680\\ measure\\,x,device=x,name=x temperature=2,humidity=41 1000000001\n"
    );
}

#[test]
fn the_same_readings_encoded_again_get_the_same_times() {
    // A fresh encoder is a restarted gateway replaying its journal.
    let readings: Vec<Reading> = (0..20)
        .flat_map(|i| {
            let ms = 5_000 + (i / 4) * 1_000;
            [
                reading("a", "t", i as f64, ms),
                reading("b", "t", i as f64, ms),
            ]
        })
        .collect();
    let ev = SinkEvent::Readings(readings);
    let once = lines(&mut encoder(&[Series::Readings]), &ev);
    let again = lines(&mut encoder(&[Series::Readings]), &ev);
    assert_eq!(once, again);
    let mut t = times(&once);
    assert_eq!(t.len(), 40);
    t.sort_unstable();
    t.dedup();
    assert_eq!(t.len(), 20, "per device, 20 distinct times");
}

#[test]
fn records_stored_in_milliseconds_are_sent_in_nanoseconds() {
    let mut out = Vec::new();
    ms_record_to_ns(
        b"m,device=a t=1 1700000000000\nm,device=a t=2 5\n",
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "m,device=a t=1 1700000000000000000\nm,device=a t=2 5000000\n"
    );
}

#[test]
fn a_node_flushing_a_few_samples_out_of_order_still_gets_distinct_times() {
    let mut e = encoder(&[Series::Readings]);
    let ev = SinkEvent::Readings(vec![
        reading("x", "t", 1.0, 1_000),
        reading("x", "t", 2.0, 2_000),
        reading("x", "t", 3.0, 1_000),
        reading("x", "t", 4.0, 3_000),
        reading("x", "t", 5.0, 1_000),
    ]);
    assert_eq!(
        times(&lines(&mut e, &ev)),
        [
            1_000_000_000,
            2_000_000_000,
            1_000_000_001,
            3_000_000_000,
            1_000_000_002
        ]
    );
}

/// Four whole-second samples of one node, a checkpoint between the second
/// and the third (the journal's next epoch), then a kill -9: the restarted
/// gateway replays only the journal since that checkpoint. A fresh encoder
/// told the epoch first must give the replayed samples the times the first
/// run gave them, which also differ from the two samples before it.
#[test]
fn a_replay_from_a_checkpoint_inside_a_millisecond_numbers_its_samples_as_the_first_run_did() {
    let ms = 1_700_000_000_000;
    let sample = |v: f64| SinkEvent::Readings(vec![reading("esp-a", "temperature", v, ms)]);
    let mut first_run = encoder(&[Series::Readings]);
    let mut before = String::new();
    for e in [SinkEvent::JournalEpoch(6), sample(1.0), sample(2.0)] {
        before.push_str(&lines(&mut first_run, &e));
    }
    let mut after = String::new();
    for e in [SinkEvent::JournalEpoch(7), sample(3.0), sample(4.0)] {
        after.push_str(&lines(&mut first_run, &e));
    }
    let mut replayed = String::new();
    let mut restarted = encoder(&[Series::Readings]);
    for e in [SinkEvent::JournalEpoch(7), sample(3.0), sample(4.0)] {
        replayed.push_str(&lines(&mut restarted, &e));
    }
    assert_eq!(replayed, after, "the replay rewrites the same points");
    let mut all = times(&before);
    all.extend(times(&after));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 4, "four samples, four points: {all:?}");
    assert!(
        all.iter().all(|t| t / 1_000_000 == ms),
        "all within their millisecond: {all:?}"
    );
    // The restart goes on appending to the epoch it replayed: being told
    // that epoch again keeps the numbering the replay rebuilt.
    let mut next = lines(&mut restarted, &SinkEvent::JournalEpoch(7));
    next.push_str(&lines(&mut restarted, &sample(5.0)));
    assert!(
        !all.contains(&times(&next)[0]),
        "the fifth sample is a point of its own"
    );
}
