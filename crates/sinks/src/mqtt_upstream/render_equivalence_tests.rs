//! The window payload written straight (issue 69) against the
//! `serde_json::Value` tree it replaced, kept here as the reference, on
//! values chosen to catch any byte that moved: numbers that are not
//! finite, signed zeros, exponents, ids and names that need escaping,
//! metrics out of order or given twice, units, every optional field.

use gateway_core::event::{MetricStats, WindowEvent};
use gateway_core::{DeviceId, DeviceRegistry, Timestamp};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{Renderer, ID_NAMESPACE};

/// The window payload as it was written before issue 69, verbatim but for
/// the id's key being built in one place.
fn reference(
    r: &Renderer,
    w: &WindowEvent,
    mut unit_of: impl FnMut(&str) -> String,
) -> (String, Vec<u8>) {
    let mut key = format!(
        "{}\n{}\n{}\n{}",
        r.gateway_id,
        w.device,
        w.window_start.as_millis(),
        w.end.as_millis()
    );
    if let Some(at) = w.partial_at {
        key.push_str(&format!("\npartial\n{}", at.as_millis()));
    }
    if w.rerun > 0 {
        key.push_str(&format!("\nrerun\n{}", w.rerun));
    }
    if w.amendment > 0 {
        key.push_str(&format!("\namendment\n{}", w.amendment));
    }
    let mut obj = Map::new();
    obj.insert(
        "id".into(),
        json!(Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()),
    );
    obj.insert("gateway".into(), json!(r.gateway_id));
    obj.insert("device".into(), json!(w.device.as_str()));
    obj.insert("name".into(), json!(r.registry.name_of(&w.device)));
    if let Some(info) = r.registry.get(&w.device) {
        if !info.tags.is_empty() {
            obj.insert("tags".into(), json!(info.tags));
        }
    }
    obj.insert("window_start".into(), json!(w.window_start.to_rfc3339()));
    obj.insert("window_end".into(), json!(w.end.to_rfc3339()));
    if w.rerun > 0 {
        obj.insert("rerun".into(), json!(w.rerun));
    }
    if w.amendment > 0 {
        obj.insert("amendment".into(), json!(w.amendment));
    }
    let metrics: Map<String, Value> = w
        .metrics
        .iter()
        .map(|(name, s)| {
            let mut stats = json!({
                "count": s.count,
                "avg": s.avg,
                "min": s.min,
                "max": s.max,
                "std": s.std,
            });
            let unit = unit_of(name);
            if let (false, Some(o)) = (unit.is_empty(), stats.as_object_mut()) {
                o.insert("unit".into(), json!(unit));
            }
            (name.clone(), stats)
        })
        .collect();
    obj.insert("metrics".into(), Value::Object(metrics));
    if w.partial_at.is_some() {
        obj.insert("partial".into(), json!(true));
    }
    (
        format!("{}/{}/aggregated", r.prefix, w.device),
        Value::Object(obj).to_string().into_bytes(),
    )
}

/// 128 bytes (the most an id may have), with what JSON escapes and what it passes as is.
const LONG_ID: &str = "sensor \"north\" \\ wing é€😀 'x' <tag> & 01234567 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ ~!@$%^*()_=[]{}|;:,.?";

fn renderer() -> Renderer {
    let devices = crate::test_devices(&format!(
        r#"
[[device]]
id = {LONG_ID:?}
name = "Cold room \"A\"\t\\ line\nbreak \u0001 \u001f \u007f é"
tags = {{ "zone\"q" = "n\\orth\r", "a" = "", "é" = "\u0000" }}

[[device]]
id = "plain"
name = "Plain"
"#
    ));
    Renderer {
        gateway_id: "gw \"1\"\\é".into(),
        prefix: "site/é \"x\"".into(),
        registry: DeviceRegistry::from_config(&devices),
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn stats(count: u64, avg: f64, min: f64, max: f64, std: f64) -> MetricStats {
    MetricStats {
        count,
        avg,
        min,
        max,
        std,
    }
}

/// Numbers at every edge of how a float is written, and `null`s.
fn awkward_metrics() -> Vec<(String, MetricStats)> {
    vec![
        (
            "a".into(),
            stats(0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0),
        ),
        ("b".into(), stats(u64::MAX, 1e-7, 1e21, 1e22, 0.0)),
        ("c".into(), stats(1, 1e-6, 1e20, -1e-7, -1e21)),
        (
            "co2".into(),
            stats(7, 0.1 + 0.2, 5e-324, f64::MAX, f64::MIN_POSITIVE),
        ),
        (
            "humidity".into(),
            stats(2, 1.0, 100.0, -3.0, 123_456_789_012_345_680.0),
        ),
        (
            "temperature".into(),
            stats(3, 21.3, -273.15, 1e16, 1e15 + 0.3),
        ),
        (
            "x\"y\\z é".into(),
            stats(
                4,
                0.000_123_4,
                12_345.678_9,
                2.5e-300,
                9.007_199_254_740_993e15,
            ),
        ),
    ]
}

fn window(device: &str, metrics: Vec<(String, MetricStats)>) -> WindowEvent {
    WindowEvent {
        device: DeviceId::new(device).unwrap(),
        start: at(1_767_225_600_000),
        end: at(1_767_225_660_000),
        partial: false,
        window_start: at(1_767_225_600_000),
        rerun: 0,
        amendment: 0,
        partial_at: None,
        metrics,
    }
}

/// Units as outputs find them, with some that need escaping and some
/// metrics without one.
fn unit_of(metric: &str) -> String {
    match metric {
        "a" => String::new(),
        "b" => "\"quoted\" \\ unit\n".into(),
        "x\"y\\z é" => "µg/m³".into(),
        m => gateway_core::units::known(m).unit,
    }
}

fn same(r: &Renderer, w: &WindowEvent) {
    let (topic, payload) = reference(r, w, unit_of);
    let new = r.aggregated_in(w, unit_of);
    assert_eq!(new.topic, topic);
    assert_eq!(
        String::from_utf8_lossy(&new.payload),
        String::from_utf8_lossy(&payload)
    );
    assert_eq!(new.payload, payload);
    assert!(!new.retain);
}

#[test]
fn a_window_is_written_byte_for_byte_as_the_value_tree_wrote_it() {
    let r = renderer();
    for device in [LONG_ID, "plain", "not-registered", "MixedCase"] {
        let mut w = window(device, awkward_metrics());
        same(&r, &w);
        // Every optional field, alone and together.
        for (partial, rerun, amendment) in [
            (true, 0, 0),
            (false, 1, 0),
            (false, 0, 3),
            (true, u32::MAX, u32::MAX),
        ] {
            w.partial_at = partial.then(|| at(1_767_225_630_001));
            w.partial = partial;
            w.rerun = rerun;
            w.amendment = amendment;
            same(&r, &w);
        }
        // Out of order and given twice: the map sorted them and kept the
        // last of a name.
        let mut shuffled = awkward_metrics();
        shuffled.reverse();
        shuffled.push(("b".into(), stats(9, -0.0, 0.5, 0.5, 0.0)));
        shuffled.insert(0, ("co2".into(), stats(1, 1.0, 1.0, 1.0, 0.0)));
        same(&r, &window(device, shuffled));
        same(&r, &window(device, Vec::new()));
    }
    // Times on a whole second and not, early and late.
    for (start, end) in [
        (0, 1),
        (999, 1000),
        (253_402_300_798_000, 253_402_300_799_999),
    ] {
        let mut w = window("plain", awkward_metrics());
        w.window_start = at(start);
        w.end = at(end);
        same(&r, &w);
    }
}

#[test]
fn an_awkward_window_keeps_its_pinned_bytes() {
    let r = renderer();
    let mut w = window(
        "plain",
        vec![
            (
                "a".into(),
                stats(0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0),
            ),
            ("b".into(), stats(u64::MAX, 1e-7, 1e21, 1e22, 0.0)),
            ("c".into(), stats(1, 1e-6, 1e20, -1e-7, -1e21)),
        ],
    );
    w.amendment = 2;
    same(&r, &w);
    let m = r.aggregated_in(&w, unit_of);
    assert_eq!(m.topic, "site/é \"x\"/plain/aggregated");
    // Not finite: `null`; exponents as serde_json writes them.
    assert_eq!(
        std::str::from_utf8(&m.payload).unwrap(),
        r#"{"amendment":2,"device":"plain","gateway":"gw \"1\"\\é","id":"98deff9d-42f5-5c3b-965a-4de94081a4fd","metrics":{"a":{"avg":null,"count":0,"max":null,"min":null,"std":-0.0},"b":{"avg":1e-7,"count":18446744073709551615,"max":1e+22,"min":1e+21,"std":0.0,"unit":"\"quoted\" \\ unit\n"},"c":{"avg":1e-6,"count":1,"max":-1e-7,"min":1e+20,"std":-1e+21}},"name":"Plain","window_end":"2026-01-01T00:01:00Z","window_start":"2026-01-01T00:00:00Z"}"#
    );
}
