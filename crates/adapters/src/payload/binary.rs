//! A raw binary payload through a codec, for a device its transport
//! already names (a CoAP body on `/s/{device}`): a built-in codec, or a
//! vendor's `js:` codec run on the codec workers, as LoRaWAN runs them.

use std::collections::BTreeMap;

use gateway_core::{DeviceId, Timestamp};

use super::lns::RouteCodec;
use super::{Decoded, When};
use crate::lorawan::codecs::js::readings::{self, Leaf};
use crate::lorawan::codecs::js::{self, Limits, ScriptCodec};

/// What a codec made of one payload.
#[derive(Debug, Default)]
pub struct BinaryOutcome {
    /// Readings of the device, stamped with the arrival time unless the
    /// codec gave one of its own (`batch`).
    pub decoded: Decoded,
    /// A `js:` codec's `warnings`: the values still count.
    pub warnings: Vec<String>,
    /// Units from the codec's `normalizeUplink`, by metric.
    pub units: BTreeMap<String, String>,
    /// Why the payload gave no values, as (`error_type`, detail): the
    /// same `codec_*` kinds as LoRaWAN uplinks (`codec_js_exception`,
    /// `codec_js_timeout`, `codec_truncated`, …).
    pub failure: Option<(String, String)>,
}

/// Decodes `bytes` of `device` with `codec`. A script runs on the codec
/// workers; this thread waits for it (off the async runtime's worker,
/// see [`ScriptCodec::decode_waiting`]).
pub fn decode(
    codec: &RouteCodec,
    bytes: Vec<u8>,
    fport: u8,
    device: &DeviceId,
    now: Timestamp,
) -> BinaryOutcome {
    let when = When::arrival(now);
    let mut out = BinaryOutcome::default();
    match codec {
        RouteCodec::Named(c) => match c.decode(&bytes) {
            Ok(values) => {
                for v in values {
                    let at = match v.time_ms.map(Timestamp::from_millis) {
                        Some(Ok(t)) => When::event(t),
                        _ => when,
                    };
                    out.decoded.push(device, &v.metric, &v.metric, v.value, at);
                }
            }
            Err(e) => out.failure = Some((format!("codec_{}", e.kind()), format!("{c}: {e}"))),
        },
        RouteCodec::Script(script) => {
            let failed = |e: js::ScriptError| {
                Some((
                    format!("codec_{}", e.kind()),
                    format!("js:{}: {e}", script.name()),
                ))
            };
            match script.decode_waiting(bytes, fport, now.as_millis()) {
                Err(e) => out.failure = failed(e),
                Ok(d) if !d.errors().is_empty() => {
                    out.failure = failed(js::ScriptError::Reported(d.errors()));
                }
                Ok(d) => {
                    out.warnings = d.warnings();
                    for (name, leaf) in readings::flatten(d.data()) {
                        match leaf {
                            Leaf::Number(v) => out.decoded.push(device, &name, &name, v, when),
                            Leaf::Text(_) => out.decoded.ignore(device, &name),
                        }
                    }
                    if let Some(normalized) = d.result.get("normalized") {
                        out.units = readings::normalized_units(d.data(), normalized);
                    }
                }
            }
        }
    }
    if let Err(e) = super::check_metric_count(&out.decoded.readings) {
        out.decoded.readings.clear();
        out.failure = Some((e.kind().to_string(), format!("{codec}: {e}")));
    }
    if out.failure.is_none() && out.decoded.readings.is_empty() {
        let detail = out.decoded.problems.first().map_or_else(
            || format!("{codec}: no values"),
            |p| format!("{codec}: {p}"),
        );
        out.failure = Some(("codec_no_values".into(), detail));
    }
    out
}

/// A `codec` setting where a raw payload is decoded (an MQTT route, a CoAP
/// server): a built-in codec's name, or `js:FILE` (relative to the config
/// file's directory) with its `codec_variables`, compiled now, so
/// `validate` names a syntax error by file and line.
///
/// # Errors
/// The problem, for the `codec` (or `codec_variables`) key.
pub fn route_codec(
    name: &str,
    variables: Option<BTreeMap<String, String>>,
) -> Result<RouteCodec, RouteCodecError> {
    let Some(file) = js::script_path(name) else {
        if variables.is_some() {
            return Err(RouteCodecError::Variables);
        }
        return name
            .parse::<crate::lorawan::codecs::Codec>()
            .map(RouteCodec::Named)
            .map_err(|e| RouteCodecError::Codec(format!("{e}, or js:FILE (a JavaScript codec)")));
    };
    if file.is_empty() {
        return Err(RouteCodecError::Codec(
            "expected a file or a [js_codecs] name after js: (\"js:codecs/em300-th.js\", \"js:em300-th\")".into(),
        ));
    }
    let script = ScriptCodec::configured(file, variables.unwrap_or_default(), Limits::default())
        .map_err(RouteCodecError::Codec)?;
    if !script.entries().decode {
        return Err(RouteCodecError::Codec(format!(
            "{file} defines no decodeUplink (nor Decode, Decoder) function"
        )));
    }
    Ok(RouteCodec::Script(script))
}

/// Why a `codec` setting was refused, and which key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteCodecError {
    #[error("{0}")]
    Codec(String),
    #[error("only a JavaScript codec (codec = \"js:FILE\") takes `codec_variables`")]
    Variables,
}

impl RouteCodecError {
    /// The key to name in the config problem.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Codec(_) => "codec",
            Self::Variables => "codec_variables",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn device() -> DeviceId {
        DeviceId::new("node-1").unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000).unwrap()
    }

    #[test]
    fn a_built_in_codec_gives_readings_or_a_counted_failure() {
        let codec = route_codec("compact_i16", None).unwrap();
        let out = decode(
            &codec,
            vec![0x00, 0xD7, 0x2D, 0x01, 0x72],
            1,
            &device(),
            now(),
        );
        let got: Vec<(&str, f64)> = out
            .decoded
            .readings
            .iter()
            .map(|r| (r.metric().as_str(), r.value()))
            .collect();
        assert_eq!(
            got,
            [("temperature", 21.5), ("humidity", 45.0), ("battery", 3.7)]
        );
        assert!(out.failure.is_none());
        let out = decode(&codec, vec![1], 1, &device(), now());
        assert_eq!(out.failure.unwrap().0, "codec_wrong_length");
        assert_eq!(
            route_codec("compact_i16", Some(BTreeMap::new())),
            Err(RouteCodecError::Variables)
        );
        assert!(route_codec("nope", None).is_err());
        assert!(route_codec("js:", None).is_err());
    }

    #[test]
    fn a_script_gets_its_variables_and_its_failures_are_counted_by_kind() {
        use std::io::Write as _;
        let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
        f.write_all(
            b"function decodeUplink(i) {\n\
              if (i.bytes[0] === 0) throw new Error('zero');\n\
              if (i.bytes[0] === 1) return { errors: ['one'] };\n\
              return { data: { v: Number(i.variables.scale) * i.bytes[0], port: i.fPort, s: 'x', n: null },\n\
                       warnings: ['w'] };\n}\n",
        )
        .unwrap();
        let name = format!("js:{}", f.path().display());
        let vars = BTreeMap::from([("scale".to_string(), "10".to_string())]);
        let codec = route_codec(&name, Some(vars)).unwrap();
        let out = decode(&codec, vec![4], 7, &device(), now());
        let got: Vec<(&str, f64)> = out
            .decoded
            .readings
            .iter()
            .map(|r| (r.metric().as_str(), r.value()))
            .collect();
        assert_eq!(got, [("port", 7.0), ("v", 40.0)]);
        assert_eq!(out.warnings, ["w"]);
        assert_eq!(out.decoded.ignored.len(), 1);
        let kinds = |b: u8| {
            decode(&codec, vec![b], 1, &device(), now())
                .failure
                .unwrap()
                .0
        };
        assert_eq!(kinds(0), "codec_js_exception");
        assert_eq!(kinds(1), "codec_js_errors");
    }
}
