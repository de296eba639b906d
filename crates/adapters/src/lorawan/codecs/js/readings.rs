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
}
