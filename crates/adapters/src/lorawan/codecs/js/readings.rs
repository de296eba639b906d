//! A decoded object to named values, the way ChirpStack names its
//! measurements: nested keys joined with `_`, array items by their index
//! (`{"sensor":{"temp":21.5}}` → `sensor_temp`; `{"ch":[{"t":1}]}` →
//! `ch_0_t`); booleans are 0 and 1; strings are text fields; `null` is
//! skipped.

use gateway_core::MetricName;
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
    walk(data, &mut String::new(), 0, &mut out, &mut 0);
    out
}

/// The readings every uplink already has from the radio: a codec value of
/// the same name (a device's own measure of its downlink's signal) is kept
/// as `<name>_decoded`, never mixed into the uplink's.
pub const RADIO_METRICS: [&str; 3] = ["rssi", "snr", "gateways"];

/// What becomes of one value of a decoded object.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// A reading of this metric.
    Reading(MetricName),
    /// A text field: not a reading.
    Text,
    /// Left out, and why (for the log and `decode`).
    Dropped(String),
}

/// A decoded object's values and their fates, as the gateway takes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields {
    /// (the value's name in the object, its leaf, what becomes of it).
    pub fields: Vec<(String, Leaf, Fate)>,
    /// Values and objects not read at all: beyond the first
    /// [`MAX_VALUES`], or nested deeper than [`MAX_DEPTH`].
    pub cut: usize,
}

impl Fields {
    /// What was left out, for one log line: the dropped values by name
    /// and why, and how many were not read.
    pub fn left_out(&self) -> Option<String> {
        let dropped: Vec<String> = self
            .fields
            .iter()
            .filter_map(|(key, _, fate)| match fate {
                Fate::Dropped(why) => Some(format!("`{}` ({why})", super::clipped_key(key))),
                _ => None,
            })
            .collect();
        if dropped.is_empty() && self.cut == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if !dropped.is_empty() {
            let shown = dropped.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            let more = dropped.len().saturating_sub(5);
            parts.push(if more > 0 {
                format!("{shown} and {more} more")
            } else {
                shown
            });
        }
        if self.cut > 0 {
            parts.push(format!(
                "{} value(s) not read (beyond the first {MAX_VALUES}, or nested deeper than {MAX_DEPTH})",
                self.cut
            ));
        }
        Some(parts.join("; "))
    }
}

/// The values of `data` as the gateway takes them: each number and
/// boolean a reading under its flattened name, unless that name is not a
/// valid metric name (over 64 bytes, say) or an earlier value has it (`a_b`
/// and `{"a": {"b"}}`); a radio metric's name is taken as
/// `<name>_decoded` ([`RADIO_METRICS`]). Nothing is left out silently:
/// what is, is in the result with its reason.
pub fn fields(data: &Value) -> Fields {
    let mut leaves = Vec::new();
    let mut cut = 0;
    walk(data, &mut String::new(), 0, &mut leaves, &mut cut);
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let fields = leaves
        .into_iter()
        .map(|(key, leaf)| {
            let fate = match leaf {
                Leaf::Text(_) => Fate::Text,
                Leaf::Number(_) => {
                    let name = if RADIO_METRICS.contains(&key.as_str()) {
                        format!("{key}_decoded")
                    } else {
                        key.clone()
                    };
                    match MetricName::new(name.as_str()) {
                        Err(e) => Fate::Dropped(format!("not a metric name: {e}")),
                        Ok(_) if taken.contains(&name) => {
                            Fate::Dropped("the same name as an earlier value".into())
                        }
                        Ok(m) => {
                            taken.insert(name);
                            Fate::Reading(m)
                        }
                    }
                }
            };
            (key, leaf, fate)
        })
        .collect();
    Fields { fields, cut }
}

fn walk(
    value: &Value,
    name: &mut String,
    depth: usize,
    out: &mut Vec<(String, Leaf)>,
    cut: &mut usize,
) {
    if out.len() >= MAX_VALUES {
        *cut += 1;
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
                walk(v, name, depth + 1, out, cut);
                name.truncate(len);
            }
            return;
        }
        Value::Array(items) if depth < MAX_DEPTH => {
            for (i, v) in items.iter().enumerate() {
                let len = name.len();
                push_key(name, &i.to_string());
                walk(v, name, depth + 1, out, cut);
                name.truncate(len);
            }
            return;
        }
        Value::Object(_) | Value::Array(_) => {
            *cut += 1;
            return;
        }
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

    /// A codec's own `rssi` (its downlink's signal, as a water meter
    /// reports it) is not mixed into the uplink's; two values that flatten
    /// to one name, a name too long to be a metric and values past the
    /// limits are left out and said, never silently.
    #[test]
    fn every_value_is_a_reading_or_is_said_to_be_left_out() {
        let long = "x".repeat(70);
        let got = fields(&json!({
            "rssi": -90, "snr": 7.5, "gateways": 3, "a_b": 12, "a": {"b": 13},
            long.clone(): 1, "label": "north", "t": 21.5,
        }));
        let fate = |key: &str| {
            got.fields
                .iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, _, f)| f.clone())
                .unwrap()
        };
        let reading = |name: &str| Fate::Reading(MetricName::new(name).unwrap());
        assert_eq!(fate("rssi"), reading("rssi_decoded"));
        assert_eq!(fate("snr"), reading("snr_decoded"));
        assert_eq!(fate("gateways"), reading("gateways_decoded"));
        assert_eq!(fate("t"), reading("t"));
        assert_eq!(fate("label"), Fate::Text);
        // `a`'s `b` comes first (key order) and keeps the name; `a_b`,
        // flattened to the same, is left out.
        let twins: Vec<&Fate> = got
            .fields
            .iter()
            .filter(|(k, _, _)| k == "a_b")
            .map(|(_, _, f)| f)
            .collect();
        assert_eq!(
            twins,
            [
                &reading("a_b"),
                &Fate::Dropped("the same name as an earlier value".into())
            ]
        );
        assert!(matches!(fate(&long), Fate::Dropped(_)));
        assert_eq!(got.cut, 0);
        let said = got.left_out().unwrap();
        assert!(said.contains("`a_b` (the same name as an earlier value)"), "{said}");

        let big: Vec<u32> = (0..600).collect();
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "d": deep });
        }
        let got = fields(&json!({ "x": big, "deep": deep }));
        assert_eq!(got.cut, 600 - MAX_VALUES + 1);
        assert!(got.left_out().unwrap().contains("not read"));
        assert_eq!(fields(&json!({"t": 1})).left_out(), None);
    }

    /// A key as long as a codec's heap allows is named in the log line
    /// by its start, not written whole (a megabyte a line before).
    #[test]
    fn a_huge_key_is_named_by_its_start() {
        let huge = format!("{}é", "k".repeat(1 << 20));
        let said = fields(&json!({ huge: 1, "t": 2 })).left_out().unwrap();
        assert!(said.len() < 200, "{} bytes", said.len());
        assert!(said.starts_with("`kkkk") && said.contains("…`"), "{said}");
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
