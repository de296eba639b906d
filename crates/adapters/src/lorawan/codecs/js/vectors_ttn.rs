//! The Things Network's device repository (`vendor/<vendor>/…`): a codec
//! `X.js` is named by a `*-codec.yaml` beside it, whose `uplinkDecoder`
//! and `downlinkEncoder` give its `fileName` and their `examples`:
//!
//! ```yaml
//! uplinkDecoder:
//!   fileName: am308.js
//!   examples:
//!     - description: Periodic uplink
//!       input: { fPort: 85, bytes: [0x01, 0x75, 0x5c] }
//!       output: { data: { battery: 92 }, errors: [], warnings: [] }
//! downlinkEncoder:
//!   fileName: am308.js
//!   examples:
//!     - input: { data: { reboot: true } }
//!       output: { fPort: 85, bytes: [0xff, 0x10, 0xff] }
//! ```
//!
//! Each example becomes a vector of ChirpStack's shape (`{name, input,
//! expected}`), judged as those are. `normalizedOutput` and
//! `downlinkDecoder` are not compared.

use std::path::Path;

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// A codec's decode vectors and encode vectors.
pub type Found = (Vec<Value>, Vec<Value>);

/// The decode and encode vectors the `*.yaml` files beside `codec` give it
/// (`None`: no file names it); an unreadable file naming it is an error.
pub fn vectors(codec: &Path) -> Option<Result<Found, String>> {
    let dir = codec.parent()?;
    let name = codec.file_name()?.to_str()?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    entries.sort();
    let (mut decodes, mut encodes, mut found) = (Vec::new(), Vec::new(), false);
    for path in entries {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // Cheap test first: most YAML files beside a codec (the device's
        // own description) do not name it.
        if !text.contains(name) {
            continue;
        }
        let docs = match YamlLoader::load_from_str(&text) {
            Ok(docs) => docs,
            Err(e) => return Some(Err(format!("{}: {e}", path.display()))),
        };
        let Some(doc) = docs.first().map(to_json) else {
            continue;
        };
        for (section, decode) in [("uplinkDecoder", true), ("downlinkEncoder", false)] {
            let Some(part) = doc.get(section) else { continue };
            if part.get("fileName").and_then(Value::as_str) != Some(name) {
                continue;
            }
            found = true;
            let examples = part.get("examples").and_then(Value::as_array);
            for (i, example) in examples.into_iter().flatten().enumerate() {
                let vector = as_vector(example, &path, section, i);
                if decode {
                    decodes.push(vector);
                } else {
                    encodes.push(vector);
                }
            }
        }
    }
    found.then_some(Ok((decodes, encodes)))
}

/// `{description, input, output}` as `{name, input, expected}`.
fn as_vector(example: &Value, file: &Path, section: &str, i: usize) -> Value {
    let name = example
        .get("description")
        .and_then(Value::as_str)
        .map_or_else(
            || format!("{} {section} #{}", file.display(), i + 1),
            str::to_string,
        );
    let mut vector = Map::new();
    vector.insert("name".into(), Value::String(name));
    vector.insert(
        "input".into(),
        example.get("input").cloned().unwrap_or(Value::Null),
    );
    vector.insert(
        "expected".into(),
        example.get("output").cloned().unwrap_or(Value::Null),
    );
    Value::Object(vector)
}

/// YAML as JSON: hex and octal integers as numbers, keys as text.
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Real(r) => r.clone(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn examples_of_a_codec_yaml_become_vectors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am308.js"), "").unwrap();
        std::fs::write(dir.path().join("am308.yaml"), "name: AM308\ndescription: a sensor\n")
            .unwrap();
        std::fs::write(
            dir.path().join("am308-codec.yaml"),
            "uplinkDecoder:\n  fileName: am308.js\n  examples:\n    - description: Periodic\n      input:\n        fPort: 85\n        bytes: [0x01, 0x75, 0x5C]\n      output:\n        data:\n          battery: 92\n          temp: -1.5\n        errors: []\n\
             downlinkEncoder:\n  fileName: am308.js\n  examples:\n    - input:\n        data: { reboot: true }\n      output:\n        fPort: 85\n        bytes: [0xff, 0x10, 0xFF]\n",
        )
        .unwrap();
        let (decodes, encodes) = vectors(&dir.path().join("am308.js")).unwrap().unwrap();
        assert_eq!(
            decodes,
            [serde_json::json!({
                "name": "Periodic",
                "input": {"fPort": 85, "bytes": [1, 117, 92]},
                "expected": {"data": {"battery": 92, "temp": -1.5}, "errors": []},
            })]
        );
        assert_eq!(encodes[0]["expected"]["bytes"], serde_json::json!([255, 16, 255]));
        assert!(encodes[0]["name"].as_str().unwrap().ends_with("downlinkEncoder #1"));
        // A codec no YAML names has none.
        std::fs::write(dir.path().join("other.js"), "").unwrap();
        assert!(vectors(&dir.path().join("other.js")).is_none());
    }
}
