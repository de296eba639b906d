//! A decoded object to named values, the way ChirpStack names its
//! measurements: nested keys joined with `_`, array items by their index
//! (`{"sensor":{"temp":21.5}}` → `sensor_temp`; `{"ch":[{"t":1}]}` →
//! `ch_0_t`); booleans are 0 and 1; strings are text fields; `null` is
//! skipped.

use serde_json::Value;

/// Values taken from one object at most: a codec that returns a huge
/// array is cut, not a flood of series.
pub const MAX_VALUES: usize = 512;
/// Nesting followed at most.
const MAX_DEPTH: usize = 8;

/// One leaf of a decoded object.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf {
    Number(f64),
    Text(String),
}

/// Every number, boolean and string under `data`, in key order, with its
/// metric name. Characters that cannot stand in a topic level (`/`, `+`,
/// `#`, controls) become `_`.
pub fn flatten(data: &Value) -> Vec<(String, Leaf)> {
    let mut out = Vec::new();
    walk(data, &mut String::new(), 0, &mut out);
    out
}

fn walk(value: &Value, name: &mut String, depth: usize, out: &mut Vec<(String, Leaf)>) {
    if out.len() >= MAX_VALUES {
        return;
    }
    let leaf = match value {
        Value::Null => return,
        Value::Bool(b) => Leaf::Number(f64::from(u8::from(*b))),
        Value::Number(n) => match n.as_f64() {
            Some(v) => Leaf::Number(v),
            None => return,
        },
        Value::String(s) => Leaf::Text(s.clone()),
        Value::Object(map) if depth < MAX_DEPTH => {
            for (key, v) in map {
                let len = name.len();
                push_key(name, key);
                walk(v, name, depth + 1, out);
                name.truncate(len);
            }
            return;
        }
        Value::Array(items) if depth < MAX_DEPTH => {
            for (i, v) in items.iter().enumerate() {
                let len = name.len();
                push_key(name, &i.to_string());
                walk(v, name, depth + 1, out);
                name.truncate(len);
            }
            return;
        }
        Value::Object(_) | Value::Array(_) => return,
    };
    // A bare number as `data` has no name of its own.
    let metric = if name.is_empty() { "value" } else { name };
    out.push((metric.to_string(), leaf));
}

fn push_key(name: &mut String, key: &str) {
    if !name.is_empty() {
        name.push('_');
    }
    if key.is_empty() {
        name.push('_');
        return;
    }
    name.extend(key.chars().map(|c| {
        if matches!(c, '/' | '+' | '#') || c.is_control() {
            '_'
        } else {
            c
        }
    }));
}

/// Units of The Things Stack's normalized payload (its schema's
/// quantities, by path), as `normalizeUplink` names them.
const NORMALIZED_UNITS: [(&str, &str); 24] = [
    ("air.temperature", "°C"),
    ("air.relativeHumidity", "%"),
    ("air.pressure", "hPa"),
    ("air.co2", "ppm"),
    ("air.lightIntensity", "lx"),
    ("air.pm1", "µg/m³"),
    ("air.pm25", "µg/m³"),
    ("air.pm10", "µg/m³"),
    ("air.tvoc", "ppb"),
    ("wind.speed", "m/s"),
    ("wind.direction", "°"),
    ("soil.temperature", "°C"),
    ("soil.moisture", "%"),
    ("soil.depth", "cm"),
    ("soil.ec", "dS/m"),
    ("water.temperature", "°C"),
    ("battery", "V"),
    ("position.latitude", "°"),
    ("position.longitude", "°"),
    ("position.altitude", "m"),
    ("metering.water.total", "L"),
    ("metering.electricity.energy", "kWh"),
    ("metering.electricity.power", "W"),
    ("metering.electricity.voltage", "V"),
];

/// The units `normalized` (what `normalizeUplink` returned for `data`: an
/// object, or a list of them) gives the metrics of `data`: a quantity of
/// the normalized schema whose value is that of exactly one number in
/// `data` gives that metric its unit. The schema names quantities, the
/// codec's own keys name metrics; equal values tie them.
pub fn normalized_units(
    data: &Value,
    normalized: &Value,
) -> std::collections::BTreeMap<String, String> {
    let mut units = std::collections::BTreeMap::new();
    let metrics = flatten(data);
    let records: Vec<&Value> = match normalized {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for record in records {
        for (path, unit) in NORMALIZED_UNITS {
            let value = path
                .split('.')
                .try_fold(record, |v, key| v.get(key))
                .and_then(Value::as_f64);
            let Some(value) = value else { continue };
            let mut same = metrics
                .iter()
                .filter(|(_, leaf)| *leaf == Leaf::Number(value));
            if let (Some((metric, _)), None) = (same.next(), same.next()) {
                units.insert(metric.clone(), unit.to_string());
            }
        }
    }
    units
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: Value) -> Vec<(String, Leaf)> {
        flatten(&v)
    }

    #[test]
    fn nested_keys_join_and_array_items_take_their_index() {
        let got = names(json!({
            "sensor": {"temp": 21.5},
            "ch": [{"t": 1}, {"t": 2}],
            "ok": true,
            "off": false,
            "label": "north",
            "gone": null,
        }));
        let expected: Vec<(String, Leaf)> = vec![
            ("ch_0_t".into(), Leaf::Number(1.0)),
            ("ch_1_t".into(), Leaf::Number(2.0)),
            ("label".into(), Leaf::Text("north".into())),
            ("off".into(), Leaf::Number(0.0)),
            ("ok".into(), Leaf::Number(1.0)),
            ("sensor_temp".into(), Leaf::Number(21.5)),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn names_lose_what_a_topic_level_cannot_hold_and_size_is_bounded() {
        let got = names(json!({"a/b": {"c#": 1}, "": 2}));
        assert_eq!(got[0].0, "_");
        assert_eq!(got[1].0, "a_b_c_");
        let big: Vec<u32> = (0..10_000).collect();
        assert_eq!(names(json!({ "x": big })).len(), MAX_VALUES);
        assert_eq!(names(json!(7)), vec![("value".into(), Leaf::Number(7.0))]);
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "d": deep });
        }
        assert!(names(deep).is_empty());
    }

    #[test]
    fn normalized_quantities_give_their_units_to_the_metrics_of_equal_value() {
        let data = json!({"temp": 21.5, "hum": 40, "bat_v": 3.1, "co2": 40, "label": "x"});
        let normalized =
            json!({"air": {"temperature": 21.5, "relativeHumidity": 40}, "battery": 3.1});
        let units = normalized_units(&data, &normalized);
        // 40 is both hum and co2: tied, so neither gets a unit.
        assert_eq!(
            units.into_iter().collect::<Vec<_>>(),
            [
                ("bat_v".to_string(), "V".to_string()),
                ("temp".into(), "°C".into())
            ]
        );
        let list = json!([{"air": {"temperature": 21.5}}, {"battery": 3.1}]);
        assert_eq!(normalized_units(&data, &list).len(), 2);
        assert!(normalized_units(&data, &json!(null)).is_empty());
    }
}
