//! SenML packs in JSON (RFC 8428): `[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","v":120.1}, …]`.
//!
//! Records are resolved as §4.6 describes: name = `bn` + `n`, time = `bt` +
//! `t`, value = `bv` + `v`, sum = `bs` + `s`, with base fields carrying over
//! to later records until redefined. Units (`u`, `bu`) and `ut`/`bver` are
//! read past: a [`Reading`](gateway_core::Reading) has no unit.
//!
//! A malformed base field (`"bt":"noon"`, `"bv":NaN`) does not stop the
//! pack; it poisons only the records that depend on it until it is
//! redefined, each reported as a problem.

use gateway_core::DeviceId;
use serde_json::{Map, Value};

use super::json_text;
use super::{text, Context, DecodeError, Decoded, FieldReason, When, DEFAULT_METRIC};

/// Resolved times below 2^28 s are relative to "now" (§4.5.3).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// Characters that end a device prefix in a base name: `urn:dev:mac:…:`,
/// `building/dev1/`, `dev1.`, `dev1-`.
const DEVICE_SEPARATORS: [char; 4] = [':', '/', '.', '-'];

/// Where a resolved name splits into device and metric.
const NAME_SEPARATORS: [char; 2] = [':', '/'];

/// Base fields only; a record holding nothing else just sets them.
const BASE_KEYS: [&str; 6] = ["bn", "bt", "bu", "bv", "bs", "bver"];

/// The base fields in force, or the reason they are unusable.
struct Base {
    name: Result<String, FieldReason>,
    unit: Option<String>,
    time: Result<f64, FieldReason>,
    value: Result<f64, FieldReason>,
    sum: Result<f64, FieldReason>,
}

/// Decodes a SenML pack.
///
/// Value of a record: `v` (+ `bv`); `vb` as 1/0; `s` (+ `bs`) when the
/// record has no other value. `vs`/`vd` are [`FieldReason::NotNumeric`]; a
/// record with no value is [`FieldReason::NoValue`], except a record holding
/// only base fields, which is a legitimate header.
///
/// Time source: [`TimeSource::Event`](gateway_core::TimeSource::Event) when
/// the resolved time is non-zero; a zero (or absent) time means "now" per
/// §4.5.3 and is stamped as arrival.
///
/// Device and metric, when the context names the device: metric = `n`, or
/// the part of the resolved name after its last `:` or `/` if `n` is empty,
/// and `ctx.metric` (else `value`) if that is empty too.
/// Otherwise, device = `bn` without trailing separators and metric = `n`;
/// when either is empty, the resolved name is split at its last `:` or `/`.
/// A name starting `urn:dev:` (RFC 8428's device URNs) is always the device,
/// never a metric: the metric then comes from the unit (`Cel` →
/// `temperature`, `%RH` → `humidity`, `lat` → `latitude`, …).
///
/// A pack with no value records (`[]`, only headers) is
/// [`DecodeError::NoValues`]; a pack where no record yields a device is
/// [`DecodeError::NoDevice`].
pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    let records = match json_text::parse::<Value>(text(payload)?)? {
        Value::Array(records) => records,
        other => {
            return Err(DecodeError::WrongShape {
                expected: "a SenML array",
                found: json_text::shape(&other),
            })
        }
    };
    decode_records(&records, ctx)
}

/// Resolves the records of a pack, whatever its encoding: SenML CBOR is
/// turned into the same JSON shape first (`senml_cbor.rs`).
pub(super) fn decode_records(records: &[Value], ctx: &Context) -> Result<Decoded, DecodeError> {
    let mut base = Base {
        name: Ok(String::new()),
        unit: None,
        time: Ok(0.0),
        value: Ok(0.0),
        sum: Ok(0.0),
    };
    let mut out = Decoded::default();
    for (index, record) in records.iter().enumerate() {
        let Value::Object(record) = record else {
            let reason = FieldReason::WrongType {
                field: "record",
                expected: "an object",
            };
            out.problem(&format!("[{index}]"), reason);
            continue;
        };
        if let Some(key) = record.keys().find(|k| k.ends_with('_')) {
            return Err(DecodeError::SenmlMandatoryField {
                field: super::clip(key),
            });
        }
        update_base(&mut base, record);
        resolve(record, index, &base, ctx, &mut out);
    }
    if out.readings.is_empty() {
        if out.problems.is_empty() {
            return Err(DecodeError::NoValues);
        }
        if out
            .problems
            .iter()
            .all(|p| p.reason == FieldReason::NoDevice)
        {
            return Err(DecodeError::NoDevice);
        }
    }
    Ok(out)
}

fn update_base(base: &mut Base, record: &Map<String, Value>) {
    if let Some(bu) = record.get("bu") {
        base.unit = bu.as_str().map(str::to_string);
    }
    if let Some(bn) = record.get("bn") {
        base.name = match bn {
            Value::String(s) => Ok(s.clone()),
            _ => Err(FieldReason::WrongType {
                field: "bn",
                expected: "a string",
            }),
        };
    }
    if let Some(bt) = record.get("bt") {
        base.time = number(bt).map_err(|_| FieldReason::BadTimestamp);
    }
    if let Some(bv) = record.get("bv") {
        base.value = number(bv);
    }
    if let Some(bs) = record.get("bs") {
        base.sum = number(bs);
    }
}

/// One record into a reading or a problem.
fn resolve(
    record: &Map<String, Value>,
    index: usize,
    base: &Base,
    ctx: &Context,
    out: &mut Decoded,
) {
    let bn = match &base.name {
        Ok(bn) => bn.as_str(),
        Err(reason) => return out.problem(&format!("[{index}]"), reason.clone()),
    };
    let n = match record.get("n") {
        None => "",
        Some(Value::String(n)) => n.as_str(),
        Some(_) => {
            let reason = FieldReason::WrongType {
                field: "n",
                expected: "a string",
            };
            return out.problem(&format!("[{index}]"), reason);
        }
    };
    let name = format!("{bn}{n}");
    let field = if name.is_empty() {
        format!("[{index}]")
    } else {
        name.clone()
    };
    let value = match value(record, base) {
        Some(Ok(v)) => v,
        Some(Err(reason)) => return out.problem(&field, reason),
        None if record.keys().all(|k| BASE_KEYS.contains(&k.as_str())) => return,
        None => return out.problem(&field, FieldReason::NoValue),
    };
    let when = match time(record, base, ctx) {
        Some(when) => when,
        None => {
            out.problem(&field, FieldReason::BadTimestamp);
            When::arrival(ctx.now)
        }
    };
    let unit = record
        .get("u")
        .and_then(Value::as_str)
        .or(base.unit.as_deref());
    let (device, metric) = match device_and_metric(ctx, bn, n, &name, unit) {
        Ok(parts) => parts,
        Err(reason) => return out.problem(&field, reason),
    };
    out.push(&device, &field, &metric, value, when);
}

/// The record's value: `None` when it has none at all.
fn value(record: &Map<String, Value>, base: &Base) -> Option<Result<f64, FieldReason>> {
    if let Some(v) = record.get("v") {
        return Some(number(v).and_then(|v| Ok(base.value.clone()? + v)));
    }
    if let Some(vb) = record.get("vb") {
        return Some(match vb {
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            _ => Err(FieldReason::NotNumeric),
        });
    }
    if record.contains_key("vs") || record.contains_key("vd") {
        return Some(Err(FieldReason::NotNumeric));
    }
    // A sum alone is still a measurement (an energy meter's total).
    let s = record.get("s")?;
    Some(number(s).and_then(|s| Ok(base.sum.clone()? + s)))
}

/// A JSON number, or why it is not one.
fn number(v: &Value) -> Result<f64, FieldReason> {
    match v {
        Value::Number(n) => n.as_f64().ok_or(FieldReason::NotNumeric),
        Value::String(s) if json_text::is_non_finite(s) => Err(FieldReason::NotFinite),
        _ => Err(FieldReason::NotNumeric),
    }
}

/// The record's time, `None` when it is unusable.
fn time(record: &Map<String, Value>, base: &Base, ctx: &Context) -> Option<When> {
    let bt = base.time.clone().ok()?;
    let t = match record.get("t") {
        None => 0.0,
        Some(t) => number(t).ok()?,
    };
    let resolved = bt + t;
    if resolved == 0.0 {
        return Some(When::arrival(ctx.now));
    }
    if resolved >= RELATIVE_TIME_LIMIT {
        return gateway_core::Timestamp::from_secs_f64(resolved)
            .ok()
            .map(When::event);
    }
    // Relative to now; casts saturate and `from_millis` refuses the extremes.
    let offset = (resolved * 1000.0).round() as i64;
    let ms = ctx.now.as_millis().checked_add(offset)?;
    gateway_core::Timestamp::from_millis(ms)
        .ok()
        .map(When::event)
}

fn device_and_metric(
    ctx: &Context,
    bn: &str,
    n: &str,
    name: &str,
    unit: Option<&str>,
) -> Result<(DeviceId, String), FieldReason> {
    let whole = name.trim_end_matches(DEVICE_SEPARATORS);
    // RFC 8428's own examples (§5.1.1, §5.1.3) name the *device* with a
    // `urn:dev:` URN and tell measurements apart only by their unit; taking
    // the URN's last segment as a metric would average humidity with
    // latitude. So a `urn:dev:` name is the device, and the unit names the
    // metric.
    // `urn:dev:<kind>:<id>` (RFC 9039) has four parts; a fifth is a measurement.
    let names_device = |s: &str| {
        let s = s.trim_end_matches(DEVICE_SEPARATORS);
        s.starts_with(DEVICE_URN) && s.split(':').count() == 4
    };
    let by_unit = || unit.map(unit_metric);
    if let Some(device) = ctx.device {
        let from_name = if !n.is_empty() && !names_device(n) {
            Some(n)
        } else if n.is_empty() && !names_device(whole) {
            name.rsplit(NAME_SEPARATORS).next()
        } else {
            None
        };
        let metric = from_name
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(by_unit)
            // A bare `[{"v":21.5}]` on a device's topic: name it like a plain number.
            .unwrap_or_else(|| {
                ctx.metric
                    .map_or(DEFAULT_METRIC, |m| m.as_str())
                    .to_string()
            });
        return Ok((device.clone(), metric));
    }
    let (device, metric) = if names_device(whole) && (n.is_empty() || names_device(n)) {
        (
            whole,
            by_unit().unwrap_or_else(|| DEFAULT_METRIC.to_string()),
        )
    } else if !bn.is_empty() && !n.is_empty() {
        (bn, n.to_string())
    } else {
        let (d, m) = name
            .rsplit_once(NAME_SEPARATORS)
            .ok_or(FieldReason::NoDevice)?;
        (d, m.to_string())
    };
    let device = device.trim_end_matches(DEVICE_SEPARATORS);
    if device.is_empty() {
        return Err(FieldReason::NoDevice);
    }
    let device = DeviceId::new(device).map_err(FieldReason::InvalidName)?;
    Ok((device, metric))
}

/// SenML names that identify a device rather than a measurement.
const DEVICE_URN: &str = "urn:dev:";

/// The metric a SenML unit (RFC 8428 §12.1 registry) measures. Unknown units
/// name the metric themselves (`/` spelled out, as metric names cannot hold it).
fn unit_metric(unit: &str) -> String {
    let known = match unit {
        "Cel" => "temperature",
        "K" => "temperature_k",
        "%RH" => "humidity",
        "lat" => "latitude",
        "lon" => "longitude",
        "V" => "voltage",
        "A" => "current",
        "W" => "power",
        "VA" => "apparent_power",
        "var" => "reactive_power",
        "Wh" | "J" => "energy",
        "Pa" => "pressure",
        "lx" => "illuminance",
        "%EL" => "battery",
        "dB" => "sound_level",
        "m" => "distance",
        "m/s" => "speed",
        "Hz" => "frequency",
        "ppm" => "concentration",
        "beat/min" => "heart_rate",
        other => return other.replace('/', "_per_"),
    };
    known.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
    use gateway_core::ModelError;
    use gateway_core::TimeSource::{Arrival, Event};

    /// The `bt` of RFC 8428 §5.1.2's second example, in ms.
    const BT_512: i64 = 1_276_020_076_001;
    /// The `bt` of RFC 8428 §5.1.3, in ms.
    const BT_513: i64 = 1_320_067_464_000;
    const OW: &str = "urn:dev:ow:10e2073a01080063";

    fn forbidden(what: &'static str) -> FieldReason {
        FieldReason::InvalidName(ModelError::ForbiddenChar { what, ch: '/' })
    }

    #[test]
    fn packs() {
        let d = dev("meter");
        let topic = ctx(Some(&d), None);
        let anon = ctx(None, None);
        let cases: Vec<(&str, &[u8], _, Want)> = vec![
            (
                "§5.1.2: bn carries over; device from bn minus its trailing ':'",
                br#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                     {"n":"current","u":"A","v":1.2}]"#,
                anon,
                ok(
                    vec![r(OW, "voltage", 120.1, NOW, Arrival), r(OW, "current", 1.2, NOW, Arrival)],
                    vec![],
                ),
            ),
            (
                "§5.1.2 with the topic naming the device: metric = n",
                br#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                     {"n":"current","u":"A","v":1.2}]"#,
                topic,
                ok(
                    vec![r("meter", "voltage", 120.1, NOW, Arrival), r("meter", "current", 1.2, NOW, Arrival)],
                    vec![],
                ),
            ),
            (
                "§5.1.2 second example: absolute bt, t relative to bt, bver ignored",
                br#"[{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
                      "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
                     {"n":"current","t":-5,"v":1.2},
                     {"n":"current","t":-1,"v":1.6},
                     {"n":"current","v":1.7}]"#,
                anon,
                ok(
                    vec![
                        r("urn:dev:ow:10e2073a0108006", "voltage", 120.1, BT_512, Event),
                        r("urn:dev:ow:10e2073a0108006", "current", 1.2, BT_512 - 5000, Event),
                        r("urn:dev:ow:10e2073a0108006", "current", 1.6, BT_512 - 1000, Event),
                        r("urn:dev:ow:10e2073a0108006", "current", 1.7, BT_512, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "§5.1.1: a urn:dev name is the device; the unit names the metric",
                br#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
                anon,
                ok(vec![r(OW, "temperature", 23.1, NOW, Arrival)], vec![]),
            ),
            (
                "§5.1.1 with the topic naming the device: the unit still names the metric",
                br#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
                topic,
                ok(vec![r("meter", "temperature", 23.1, NOW, Arrival)], vec![]),
            ),
            (
                "§5.1.3 (first records): records told apart only by unit stay apart",
                br#"[{"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
                     {"u":"lon","v":24.30621},
                     {"u":"lat","v":60.07965},
                     {"t":60,"v":20.3}]"#,
                anon,
                ok(
                    vec![
                        r(OW, "humidity", 20.0, BT_513, Event),
                        r(OW, "longitude", 24.30621, BT_513, Event),
                        r(OW, "latitude", 60.07965, BT_513, Event),
                        r(OW, "humidity", 20.3, BT_513 + 60_000, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "times below 2^28 are relative to now; 0 or absent is now (arrival)",
                br#"[{"n":"t","t":-5,"v":21},{"n":"t","v":22},{"n":"t","t":0,"v":23},
                     {"bt":-10,"n":"t","t":5,"v":24}]"#,
                topic,
                ok(
                    vec![
                        r("meter", "t", 21.0, NOW - 5000, Event),
                        r("meter", "t", 22.0, NOW, Arrival),
                        r("meter", "t", 23.0, NOW, Arrival),
                        r("meter", "t", 24.0, NOW - 5000, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "bv and bs add to v and s; a sum alone is a value",
                br#"[{"bn":"dev1/","bv":100,"bs":1000,"n":"a","v":1.5},{"n":"b","v":-0.5},
                     {"n":"energy","s":7}]"#,
                anon,
                ok(
                    vec![
                        r("dev1", "a", 101.5, NOW, Arrival),
                        r("dev1", "b", 99.5, NOW, Arrival),
                        r("dev1", "energy", 1007.0, NOW, Arrival),
                    ],
                    vec![],
                ),
            ),
            (
                "header record; vb as 1/0; vs, vd and no value dropped",
                br#"[{"bn":"dev1:","bt":1795255200},{"n":"door","vb":true},{"n":"label","vs":"hi"},
                     {"n":"blob","vd":"aGk"},{"n":"nothing","u":"Cel"},{"n":"shut","vb":"no"}]"#,
                anon,
                ok(
                    vec![r("dev1", "door", 1.0, T0, Event)],
                    vec![
                        p("dev1:label", FieldReason::NotNumeric),
                        p("dev1:blob", FieldReason::NotNumeric),
                        p("dev1:nothing", FieldReason::NoValue),
                        p("dev1:shut", FieldReason::NotNumeric),
                    ],
                ),
            ),
            (
                "NaN and 1e400 salvaged; the other records kept",
                br#"[{"bn":"d1:","n":"t","v":NaN},{"n":"h","v":40},{"n":"x","v":1e400}]"#,
                anon,
                ok(
                    vec![r("d1", "h", 40.0, NOW, Arrival)],
                    vec![p("d1:t", FieldReason::NotFinite), p("d1:x", FieldReason::NotFinite)],
                ),
            ),
            (
                "a NaN bv poisons v records until redefined, not vb records",
                br#"[{"bn":"d1:","bv":NaN,"n":"a","v":1},{"n":"b","vb":false},{"bv":0,"n":"c","v":2}]"#,
                anon,
                ok(
                    vec![r("d1", "b", 0.0, NOW, Arrival), r("d1", "c", 2.0, NOW, Arrival)],
                    vec![p("d1:a", FieldReason::NotFinite)],
                ),
            ),
            (
                "a bad bt or t: problem, and the value at arrival time",
                br#"[{"bn":"d1:","bt":"noon","n":"a","v":1},{"bt":0,"n":"b","t":1e15,"v":2},
                     {"n":"c","v":3}]"#,
                anon,
                ok(
                    vec![
                        r("d1", "a", 1.0, NOW, Arrival),
                        r("d1", "b", 2.0, NOW, Arrival),
                        r("d1", "c", 3.0, NOW, Arrival),
                    ],
                    vec![p("d1:a", FieldReason::BadTimestamp), p("d1:b", FieldReason::BadTimestamp)],
                ),
            ),
            (
                "without bn the name splits at its last ':' or '/'",
                br#"[{"n":"dev7/temp","v":1},{"n":"urn:dev:mac:0024befffe804ff1:hum","v":2}]"#,
                anon,
                ok(
                    vec![
                        r("dev7", "temp", 1.0, NOW, Arrival),
                        r("urn:dev:mac:0024befffe804ff1", "hum", 2.0, NOW, Arrival),
                    ],
                    vec![],
                ),
            ),
            (
                "trailing '.' and '-' trimmed too; bn without n splits",
                br#"[{"bn":"dev-1.","n":"t","v":1},{"bn":"sensor9/co2","v":2}]"#,
                anon,
                ok(vec![r("dev-1", "t", 1.0, NOW, Arrival), r("sensor9", "co2", 2.0, NOW, Arrival)], vec![]),
            ),
            (
                "topic device and an empty n: metric after the last separator of bn",
                br#"[{"bn":"urn:dev:mac:0024befffe804ff1:temp","v":3}]"#,
                topic,
                ok(vec![r("meter", "temp", 3.0, NOW, Arrival)], vec![]),
            ),
            (
                "topic device and no name at all: metric `value`, as for a plain number",
                br#"[{"v":21.5},{"bn":"x:","v":1}]"#,
                topic,
                ok(vec![r("meter", "value", 21.5, NOW, Arrival), r("meter", "value", 1.0, NOW, Arrival)], vec![]),
            ),
            (
                "names that cannot be device ids or metrics",
                br#"[{"bn":"building/floor1/","n":"t","v":1},{"bn":"d1:","n":"a/b","v":2},
                     {"n":"c","v":3}]"#,
                anon,
                ok(
                    vec![r("d1", "c", 3.0, NOW, Arrival)],
                    vec![p("building/floor1/t", forbidden("device id")), p("d1:a/b", forbidden("metric name"))],
                ),
            ),
            (
                "a record without a device among good ones",
                br#"[{"n":"temp","v":1},{"n":"d/t","v":2},{"n":":t","v":3}]"#,
                anon,
                ok(
                    vec![r("d", "t", 2.0, NOW, Arrival)],
                    vec![p("temp", FieldReason::NoDevice), p(":t", FieldReason::NoDevice)],
                ),
            ),
            ("no record yields a device", br#"[{"n":"temp","v":1}]"#, anon, Err(DecodeError::NoDevice)),
            (
                "records of the wrong type, n and bn of the wrong type",
                br#"[1,{"n":5,"v":1},{"bn":5,"n":"a","v":1},{"bn":"","n":"ok","v":2}]"#,
                topic,
                ok(
                    vec![r("meter", "ok", 2.0, NOW, Arrival)],
                    vec![
                        p("[0]", FieldReason::WrongType { field: "record", expected: "an object" }),
                        p("[1]", FieldReason::WrongType { field: "n", expected: "a string" }),
                        p("[2]", FieldReason::WrongType { field: "bn", expected: "a string" }),
                    ],
                ),
            ),
            (
                "a must-understand field refuses the pack (§4.4)",
                br#"[{"n":"a","v":1},{"n":"b","v":2,"foo_":1}]"#,
                topic,
                Err(DecodeError::SenmlMandatoryField { field: "foo_".into() }),
            ),
            ("empty pack", b"[]", topic, Err(DecodeError::NoValues)),
            ("only a header", br#"[{"bn":"d1:","bt":5}]"#, topic, Err(DecodeError::NoValues)),
            (
                "an object, not a pack",
                br#"{"n":"a","v":1}"#,
                topic,
                Err(DecodeError::WrongShape { expected: "a SenML array", found: "an object" }),
            ),
            (
                "a number",
                b"5",
                topic,
                Err(DecodeError::WrongShape { expected: "a SenML array", found: "a number" }),
            ),
            ("truncated", br#"[{"n":"a","v":1}"#, topic, Err(invalid_json())),
            ("empty", b"", topic, Err(DecodeError::Empty)),
            ("invalid UTF-8", b"[\xff]", topic, Err(DecodeError::NotUtf8 { valid_up_to: 1 })),
        ];
        for (label, payload, ctx, want) in cases {
            assert_decoded(label, decode(&PayloadFormat::Senml, payload, &ctx), want);
        }
    }

    #[test]
    fn deep_nesting_is_invalid_json() {
        let d = dev("meter");
        let deep = "[".repeat(10_000);
        let err = decode(&PayloadFormat::Senml, deep.as_bytes(), &ctx(Some(&d), None)).unwrap_err();
        assert_eq!(err.kind(), "invalid_json");
    }
}
