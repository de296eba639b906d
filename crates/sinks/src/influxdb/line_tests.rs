use gateway_core::config::DeviceConfig;
use gateway_core::{DeviceId, MetricName, TimeSource, Timestamp};

use super::*;
use crate::event::MetricStats;

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
    let devices: Vec<DeviceConfig> = toml::from_str::<toml::Table>(
        r#"
[[device]]
id = "bme-1"
name = "Lab, bench=1"
room = "a b"
"#,
    )
    .unwrap()["device"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.clone().try_into().unwrap())
        .collect();
    let config = InfluxConfig {
        measurement: "bme680 measure,x".into(),
        write: write.to_vec(),
        ..InfluxConfig::default()
    };
    Encoder::new(&config, DeviceRegistry::from_config(&devices))
}

fn lines(e: &Encoder, ev: &SinkEvent) -> String {
    let mut out = String::new();
    e.encode(ev, &mut out);
    out
}

#[test]
fn readings_of_one_sample_are_one_point_with_escaped_names() {
    let e = encoder(&[Series::Readings]);
    let ev = SinkEvent::Readings(vec![
        reading("bme-1", "temperature", 21.0, 1_700_000_000_000),
        reading("bme-1", "hum idity", 45.5, 1_700_000_000_000),
        reading("bme-1", "temperature", 21.25, 1_700_000_001_000),
        reading("other", "a=b", -1e-7, 1_700_000_001_000),
    ]);
    assert_eq!(
        lines(&e, &ev),
        "bme680\\ measure\\,x,device=bme-1,name=Lab\\,\\ bench\\=1,room=a\\ b temperature=21,hum\\ idity=45.5 1700000000000\n\
         bme680\\ measure\\,x,device=bme-1,name=Lab\\,\\ bench\\=1,room=a\\ b temperature=21.25 1700000001000\n\
         bme680\\ measure\\,x,device=other,name=other a\\=b=-0.0000001 1700000001000\n"
    );
}

#[test]
fn aggregates_are_one_point_at_window_start_with_five_fields_per_metric() {
    let e = encoder(&[Series::Aggregates]);
    let w = WindowEvent {
        device: DeviceId::new("other").unwrap(),
        start: Timestamp::from_millis(60_000).unwrap(),
        end: Timestamp::from_millis(120_000).unwrap(),
        partial: false,
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
        lines(&e, &SinkEvent::Window(w)),
        "aggregates,device=other,name=other t_avg=2,t_min=1,t_max=3.5,t_count=3 60000\n"
    );
    // Not written by a sink that does not write readings.
    assert_eq!(
        lines(&e, &SinkEvent::Readings(vec![reading("x", "t", 1.0, 1)])),
        ""
    );
}

#[test]
fn alerts_carry_their_transition_as_tags_and_an_escaped_text() {
    let e = encoder(&[Series::Alerts]);
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
    };
    assert_eq!(
        lines(&e, &SinkEvent::Alert(a)),
        "alerts,device=other,kind=threshold,name=other,rule=too\\ \"hot\"\\\\,state=raised value=31.5,limit=30,text=\"too \\\"hot\\\"\\\\ raised threshold: 31.5 (limit 30)\" 5\n"
    );
}

#[test]
fn a_line_break_in_a_name_never_breaks_the_line() {
    let mut out = String::new();
    key(&mut out, "a\nb");
    assert_eq!(out, "a\\ b");
}
