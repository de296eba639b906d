//! Uplink events of LoRaWAN network servers, for devices a network server
//! already handled (MIC, counters, decryption):
//!
//! - ChirpStack v4, `application/{app}/device/{dev_eui}/event/up`:
//!   `{"time":…,"deviceInfo":{"devEui":…},"fPort":2,"data":"<base64>",
//!   "object":{…},"rxInfo":[{"rssi":…,"snr":…}]}`;
//! - The Things Stack v3, `v3/{app}@{tenant}/devices/{device_id}/up`:
//!   `{"end_device_ids":{"device_id":…},"received_at":…,"uplink_message":
//!   {"f_port":2,"frm_payload":"<base64>","decoded_payload":{…},
//!   "rx_metadata":[{"rssi":…,"snr":…}]}}`.
//!
//! The server's decoded object (`object`, `decoded_payload`) is used when
//! present: numbers and booleans, named as a JavaScript codec's are
//! (ChirpStack's Cayenne decoder writes `{"temperatureSensor":{"3":27.2}}`,
//! read as `temperatureSensor_3`). Otherwise the route's `codec` decodes
//! the FRMPayload. Either way the best `rssi` and `snr` over the receiving
//! gateways and their number (`gateways`) are readings too, as with
//! `semtech_udp`. The server's receive time is the event time.

use serde_json::{Map, Value};

use super::json_text;
use super::{text, Context, DecodeError, Decoded, FieldReason, When};
use crate::lorawan::codecs::js::readings::{self, Fate, Leaf};
use crate::lorawan::codecs::js::ScriptCodec;
use crate::lorawan::codecs::Codec;
use crate::lorawan::semtech::base64_decode;

/// A route's codec for FRMPayloads the network server did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCodec {
    Named(Codec),
    /// `js:FILE`: run on the codec workers; this message's task waits for
    /// it (off the async runtime's worker, `block_in_place`).
    Script(ScriptCodec),
}

impl std::fmt::Display for RouteCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(c) => c.fmt(f),
            Self::Script(s) => write!(f, "js:{}", s.name()),
        }
    }
}

/// Which network server wrote the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkServer {
    ChirpstackV4,
    TtsV3,
}

struct Keys {
    object: &'static str,
    data: &'static str,
    fport: &'static str,
    rx: &'static str,
}

const CHIRPSTACK: Keys = Keys {
    object: "object",
    data: "data",
    fport: "fPort",
    rx: "rxInfo",
};
const TTS: Keys = Keys {
    object: "decoded_payload",
    data: "frm_payload",
    fport: "f_port",
    rx: "rx_metadata",
};

pub(super) fn decode(
    server: NetworkServer,
    codec: Option<&RouteCodec>,
    payload: &[u8],
    ctx: &Context,
) -> Result<Decoded, DecodeError> {
    let root = match json_text::parse::<Value>(text(payload)?)? {
        Value::Object(m) => m,
        other => {
            return Err(DecodeError::WrongShape {
                expected: "a JSON object",
                found: json_text::shape(&other),
            })
        }
    };
    let (keys, uplink, named, time) = match server {
        NetworkServer::ChirpstackV4 => {
            let named = path(&root, &["deviceInfo", "devEui"]);
            (&CHIRPSTACK, &root, named, path(&root, &["time"]))
        }
        NetworkServer::TtsV3 => {
            let Some(Value::Object(up)) = root.get("uplink_message") else {
                return Err(DecodeError::WrongShape {
                    expected: "an object with an uplink_message",
                    found: "another event",
                });
            };
            let named = path(&root, &["end_device_ids", "device_id"]);
            let time = path(&root, &["received_at"]).or_else(|| path(up, &["received_at"]));
            (&TTS, up, named, time)
        }
    };
    let device = match (ctx.device, named.and_then(Value::as_str)) {
        (Some(d), _) => d.clone(),
        (None, Some(id)) => {
            gateway_core::DeviceId::new(id).map_err(|source| DecodeError::InvalidDevice {
                id: id.chars().take(128).collect(),
                source,
            })?
        }
        (None, None) => return Err(DecodeError::NoDevice),
    };
    let mut out = Decoded::default();
    let when = match time {
        None => When::arrival(ctx.now),
        Some(t) => match t.as_str().map(gateway_core::Timestamp::parse_rfc3339) {
            Some(Ok(t)) => When::event(t),
            _ => {
                out.problem("time", FieldReason::BadTimestamp);
                When::arrival(ctx.now)
            }
        },
    };
    match uplink.get(keys.object) {
        Some(object @ Value::Object(obj)) if !obj.is_empty() => {
            push_fields(
                readings::fields(object),
                &device,
                when,
                keys.object,
                &mut out,
            );
        }
        _ => frm_payload(uplink, keys, codec, &device, when, &mut out),
    }
    if let Some(Value::Array(rx)) = uplink.get(keys.rx) {
        let best = |key: &str| {
            rx.iter()
                .filter_map(|r| r.get(key).and_then(Value::as_f64))
                .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))))
        };
        if let Some(rssi) = best("rssi") {
            out.push(&device, "rssi", "rssi", rssi, when);
        }
        if let Some(snr) = best("snr") {
            out.push(&device, "snr", "snr", snr, when);
        }
        out.push(&device, keys.rx, "gateways", rx.len() as f64, when);
    }
    if out.readings.is_empty() && out.problems.is_empty() {
        return Err(DecodeError::NoValues);
    }
    Ok(out)
}

fn path<'a>(root: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    rest.iter().try_fold(root.get(*first)?, |v, k| v.get(*k))
}

/// A decoded object's values, named as a JavaScript codec's are
/// ([`readings::fields`]: arrays by index, a radio metric's name as
/// `<name>_decoded`), so a network server's object and the gateway's own
/// codec give one device the same series. Two keys that flatten to one
/// name (`a_b` and `{"a": {"b"}}`) give the first a reading and the other
/// a problem, never two readings of one metric at one time.
fn push_fields(
    fields: readings::Fields,
    device: &gateway_core::DeviceId,
    when: When,
    field: &str,
    out: &mut Decoded,
) {
    for (key, leaf, fate) in fields.fields {
        match (fate, leaf) {
            (Fate::Reading(metric), Leaf::Number(v)) => {
                out.push_metric(device, &key, metric, v, when)
            }
            (Fate::Dropped(why), _) => out.problem(&key, FieldReason::LeftOut(why)),
            (Fate::Text | Fate::Reading(_), _) => out.ignore(device, &key),
        }
    }
    if fields.cut > 0 {
        out.problem(
            field,
            FieldReason::LeftOut(format!(
                "{} value(s) not read (beyond the first {}, or nested too deep)",
                fields.cut,
                readings::MAX_VALUES
            )),
        );
    }
}

/// The FRMPayload through the route's codec. FPort 0 (MAC commands) and
/// events without data carry no application values.
fn frm_payload(
    uplink: &Map<String, Value>,
    keys: &Keys,
    codec: Option<&RouteCodec>,
    device: &gateway_core::DeviceId,
    when: When,
    out: &mut Decoded,
) {
    let Some(data) = uplink.get(keys.data).and_then(Value::as_str) else {
        return;
    };
    if uplink.get(keys.fport).and_then(Value::as_u64).unwrap_or(0) == 0 {
        return;
    }
    let Some(codec) = codec else {
        out.problem(keys.data, FieldReason::NoCodec);
        return;
    };
    let Some(bytes) = base64_decode(data) else {
        out.problem(keys.data, FieldReason::Undecodable("not base64".into()));
        return;
    };
    let fport = uplink.get(keys.fport).and_then(Value::as_u64).unwrap_or(0);
    let codec = match codec {
        RouteCodec::Named(c) => *c,
        RouteCodec::Script(script) => {
            let fport = u8::try_from(fport).unwrap_or(0);
            return script_payload(script, bytes, fport, device, when, keys, out);
        }
    };
    match codec.decode(&bytes) {
        Ok(values) => {
            for v in values {
                let at = match v.time_ms.map(gateway_core::Timestamp::from_millis) {
                    Some(Ok(t)) => When::event(t),
                    _ => when,
                };
                out.push(device, &v.metric, &v.metric, v.value, at);
            }
        }
        Err(e) => out.problem(keys.data, FieldReason::Undecodable(format!("{codec}: {e}"))),
    }
}

/// The FRMPayload through a `js:` codec, waiting for its worker.
fn script_payload(
    script: &ScriptCodec,
    bytes: Vec<u8>,
    fport: u8,
    device: &gateway_core::DeviceId,
    when: When,
    keys: &Keys,
    out: &mut Decoded,
) {
    let result = script.decode_waiting(bytes, fport, when.time.as_millis());
    let undecodable = |e: String| FieldReason::Undecodable(format!("js:{}: {e}", script.name()));
    match result {
        Ok(decoded) => {
            let errors = decoded.errors();
            if !errors.is_empty() {
                let shown = crate::lorawan::codecs::js::clipped_list(&errors);
                return out.problem(keys.data, undecodable(shown.join("; ")));
            }
            // With the values that were not finite numbers, said.
            push_fields(decoded.fields(), device, when, keys.data, out);
        }
        Err(e) => out.problem(keys.data, undecodable(e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::{DeviceId, Timestamp};

    fn run(
        server: NetworkServer,
        codec: Option<Codec>,
        json: &str,
    ) -> (Vec<(String, String, f64)>, Vec<String>) {
        let ctx = Context {
            device: None,
            metric: None,
            now: Timestamp::from_millis(1_000).unwrap(),
        };
        let codec = codec.map(RouteCodec::Named);
        let d = decode(server, codec.as_ref(), json.as_bytes(), &ctx).unwrap();
        (
            d.readings
                .iter()
                .map(|r| (r.device().to_string(), r.metric().to_string(), r.value()))
                .collect(),
            d.problems
                .iter()
                .map(|p| p.reason.kind().to_string())
                .collect(),
        )
    }

    /// Shape of ChirpStack v4's `up` event (chirpstack docs, integrations/events).
    const CHIRPSTACK_UP: &str = r#"{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d","time":"2022-07-18T09:34:15.775023242+00:00","deviceInfo":{"tenantId":"52f14cd4-c6f1-4fbd-8f87-4025e1d49242","applicationId":"17c82e96-be03-4f38-aef3-f83d48582d97","deviceName":"Test device","devEui":"0101010101010101","tags":{"key":"value"}},"devAddr":"00189440","adr":true,"dr":1,"fCnt":10,"fPort":1,"confirmed":false,"data":"AGcBEQFoUA==","object":{"temperatureSensor":{"0":27.3},"humiditySensor":{"1":40.0}},"rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-60,"snr":10.5},{"gatewayId":"0016c001f153a14d","rssi":-80,"snr":1.0}],"txInfo":{"frequency":868100000}}"#;

    #[test]
    fn chirpstack_object_wins_and_signal_is_kept() {
        let (r, p) = run(NetworkServer::ChirpstackV4, None, CHIRPSTACK_UP);
        let dev = "0101010101010101".to_string();
        // serde_json's map orders keys by name.
        assert_eq!(
            r,
            [
                (dev.clone(), "humiditySensor_1".into(), 40.0),
                (dev.clone(), "temperatureSensor_0".into(), 27.3),
                (dev.clone(), "rssi".into(), -60.0),
                (dev.clone(), "snr".into(), 10.5),
                (dev, "gateways".into(), 2.0),
            ]
        );
        assert!(p.is_empty(), "{p:?}");
    }

    /// A water meter's codec reports the signal of the downlink it heard
    /// as `rssi`: kept as its own metric, never mixed into the uplink's.
    #[test]
    fn a_decoded_rssi_is_the_devices_not_the_uplinks() {
        let up = CHIRPSTACK_UP.replace(
            r#""object":{"temperatureSensor":{"0":27.3},"humiditySensor":{"1":40.0}},"#,
            r#""object":{"rssi":-101,"snr":-3.5},"#,
        );
        let (r, p) = run(NetworkServer::ChirpstackV4, None, &up);
        let dev = "0101010101010101".to_string();
        assert_eq!(
            r,
            [
                (dev.clone(), "rssi_decoded".into(), -101.0),
                (dev.clone(), "snr_decoded".into(), -3.5),
                (dev.clone(), "rssi".into(), -60.0),
                (dev.clone(), "snr".into(), 10.5),
                (dev, "gateways".into(), 2.0),
            ]
        );
        assert!(p.is_empty(), "{p:?}");
    }

    /// A server's object read as the gateway's own JavaScript codecs read
    /// one: two keys that flatten to one name were two readings of one
    /// metric at one time; arrays were skipped.
    #[test]
    fn a_servers_object_is_flattened_as_a_codecs_is() {
        let up = CHIRPSTACK_UP.replace(
            r#""object":{"temperatureSensor":{"0":27.3},"humiditySensor":{"1":40.0}},"#,
            r#""object":{"a":{"b":2},"a_b":1,"ch":[{"t":5}],"label":"x","gone":null},"#,
        );
        let (r, p) = run(NetworkServer::ChirpstackV4, None, &up);
        let dev = "0101010101010101".to_string();
        assert_eq!(
            r,
            [
                (dev.clone(), "a_b".into(), 2.0),
                (dev.clone(), "ch_0_t".into(), 5.0),
                (dev.clone(), "rssi".into(), -60.0),
                (dev.clone(), "snr".into(), 10.5),
                (dev, "gateways".into(), 2.0),
            ]
        );
        assert_eq!(p, ["left_out"]);
    }

    #[test]
    fn chirpstack_without_object_uses_the_codec_on_data() {
        let no_object = CHIRPSTACK_UP.replace(
            r#""object":{"temperatureSensor":{"0":27.3},"humiditySensor":{"1":40.0}},"#,
            "",
        );
        // data = Cayenne LPP 00 67 0111 (ch 0 temperature 27.3) 01 68 50 (ch 1 humidity 40).
        let (r, p) = run(
            NetworkServer::ChirpstackV4,
            Some(Codec::CayenneLpp),
            &no_object,
        );
        assert_eq!(r[0].1, "temperature_0");
        assert!((r[0].2 - 27.3).abs() < 1e-9);
        assert_eq!((r[1].1.as_str(), r[1].2), ("relative_humidity_1", 40.0));
        assert!(p.is_empty());
        let (r, p) = run(NetworkServer::ChirpstackV4, None, &no_object);
        assert_eq!(r.len(), 3, "signal only");
        assert_eq!(p, ["no_codec"]);
    }

    #[test]
    fn tts_uplink_message() {
        let up = r#"{"end_device_ids":{"device_id":"eui-70b3d57ed0001234","application_ids":{"application_id":"building"},"dev_eui":"70B3D57ED0001234","dev_addr":"260B1234"},"received_at":"2026-11-21T10:00:00.123456789Z","uplink_message":{"f_port":2,"f_cnt":7,"frm_payload":"ANctAXI=","rx_metadata":[{"gateway_ids":{"gateway_id":"gw"},"rssi":-42,"channel_rssi":-42,"snr":9.25}],"received_at":"2026-11-21T10:00:00.1Z"}}"#;
        let ctx = Context {
            device: None,
            metric: None,
            now: Timestamp::from_millis(1_000).unwrap(),
        };
        let d = decode(
            NetworkServer::TtsV3,
            Some(&RouteCodec::Named(Codec::CompactI16)),
            up.as_bytes(),
            &ctx,
        )
        .unwrap();
        let got: Vec<(&str, f64)> = d
            .readings
            .iter()
            .map(|r| (r.metric().as_str(), r.value()))
            .collect();
        assert_eq!(
            got,
            [
                ("temperature", 21.5),
                ("humidity", 45.0),
                ("battery", 3.7),
                ("rssi", -42.0),
                ("snr", 9.25),
                ("gateways", 1.0)
            ]
        );
        assert_eq!(
            d.readings[0].device(),
            &DeviceId::new("eui-70b3d57ed0001234").unwrap()
        );
        assert_eq!(
            d.readings[0].time().to_rfc3339(),
            "2026-11-21T10:00:00.123Z"
        );
        // A decoded_payload is used as is.
        let decoded = up.replace(
            r#""frm_payload""#,
            r#""decoded_payload":{"co2":612,"ok":true},"frm_payload""#,
        );
        let d = decode(NetworkServer::TtsV3, None, decoded.as_bytes(), &ctx).unwrap();
        assert_eq!(d.readings[0].metric().as_str(), "co2");
        assert_eq!(d.readings[1].value(), 1.0);
    }

    #[test]
    fn other_events_and_junk_are_errors_not_panics() {
        let ctx = Context {
            device: None,
            metric: None,
            now: Timestamp::from_millis(1_000).unwrap(),
        };
        for (server, text, kind) in [
            (
                NetworkServer::TtsV3,
                r#"{"end_device_ids":{"device_id":"d"},"join_accept":{}}"#,
                "wrong_shape",
            ),
            (NetworkServer::ChirpstackV4, "[1]", "wrong_shape"),
            (NetworkServer::ChirpstackV4, r#"{"fPort":1}"#, "no_device"),
            (
                NetworkServer::ChirpstackV4,
                r#"{"deviceInfo":{"devEui":"a/b"}}"#,
                "invalid_device",
            ),
            (
                NetworkServer::ChirpstackV4,
                r#"{"deviceInfo":{"devEui":"d"},"fPort":0,"data":"AA=="}"#,
                "no_values",
            ),
            (NetworkServer::ChirpstackV4, "{", "invalid_json"),
        ] {
            let codec = RouteCodec::Named(Codec::CompactI16);
            let e = decode(server, Some(&codec), text.as_bytes(), &ctx).unwrap_err();
            assert_eq!(e.kind(), kind, "{text}");
        }
        let bad =
            r#"{"deviceInfo":{"devEui":"d"},"fPort":2,"data":"!!","time":"soon","rxInfo":[]}"#;
        let d = decode(
            NetworkServer::ChirpstackV4,
            Some(&RouteCodec::Named(Codec::CompactI16)),
            bad.as_bytes(),
            &ctx,
        )
        .unwrap();
        let kinds: Vec<&str> = d.problems.iter().map(|p| p.reason.kind()).collect();
        assert_eq!(kinds, ["bad_timestamp", "undecodable"]);
    }

    /// A `js:` codec on a route decodes what the server left encoded,
    /// from a plain thread as from a runtime's worker.
    #[test]
    fn a_javascript_codec_decodes_the_frm_payload() {
        use std::io::Write as _;
        let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
        f.write_all(
            b"function decodeUplink(i) { if (i.bytes[0] === 0) return { errors: ['zero'] }; \
              return { data: { t: i.bytes[0] / 2, port: i.fPort, ok: true, label: 'x' } }; }",
        )
        .unwrap();
        let script = ScriptCodec::load(
            "r.js",
            f.path(),
            Default::default(),
            crate::lorawan::codecs::js::Limits::default(),
        )
        .unwrap();
        let codec = RouteCodec::Script(script);
        let ctx = Context {
            device: None,
            metric: None,
            now: Timestamp::from_millis(1_000).unwrap(),
        };
        let event = |b64: &str| {
            format!(r#"{{"deviceInfo":{{"devEui":"d1"}},"fPort":5,"data":"{b64}","rxInfo":[]}}"#)
        };
        let d = decode(
            NetworkServer::ChirpstackV4,
            Some(&codec),
            event("KQ==").as_bytes(),
            &ctx,
        )
        .unwrap();
        let got: Vec<(String, f64)> = d
            .readings
            .iter()
            .map(|r| (r.metric().to_string(), r.value()))
            .collect();
        assert_eq!(
            got,
            [
                ("ok".to_string(), 1.0),
                ("port".into(), 5.0),
                ("t".into(), 20.5),
                ("gateways".into(), 0.0)
            ]
        );
        assert_eq!(d.ignored.len(), 1);
        let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
        let d = rt.block_on(async {
            decode(
                NetworkServer::ChirpstackV4,
                Some(&codec),
                event("AA==").as_bytes(),
                &ctx,
            )
            .unwrap()
        });
        assert_eq!(d.problems[0].reason.kind(), "undecodable");
        assert!(
            d.problems[0].reason.to_string().contains("zero"),
            "{:?}",
            d.problems
        );
    }

    /// A route's codec reporting huge `errors` is said in a bounded
    /// problem (its log line), as a device's codec is: each was joined
    /// whole, a megabyte a line.
    #[test]
    fn a_route_codecs_errors_are_said_bounded() {
        use std::io::Write as _;
        let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
        f.write_all(
            b"function decodeUplink(i) { var e = ['x'.repeat(1 << 20)]; \
              for (var k = 0; k < 1000; k++) e.push('error ' + k); return { errors: e }; }",
        )
        .unwrap();
        let script = ScriptCodec::load(
            "r.js",
            f.path(),
            Default::default(),
            crate::lorawan::codecs::js::Limits::default(),
        )
        .unwrap();
        let ctx = Context {
            device: None,
            metric: None,
            now: Timestamp::from_millis(1_000).unwrap(),
        };
        let event = r#"{"deviceInfo":{"devEui":"d1"},"fPort":5,"data":"AA==","rxInfo":[]}"#;
        let codec = RouteCodec::Script(script);
        let d = decode(
            NetworkServer::ChirpstackV4,
            Some(&codec),
            event.as_bytes(),
            &ctx,
        )
        .unwrap();
        let said = d.problems[0].reason.to_string();
        assert!(
            said.len() < 3 * crate::lorawan::codecs::js::MAX_TEXT,
            "{} bytes",
            said.len()
        );
        assert!(said.contains("and 1000 more"), "{said}");
    }

    /// A route codec's value that is not a finite number is a problem of
    /// its own, as for a device's codec, not skipped without a word.
    #[test]
    fn a_route_codecs_value_that_is_not_finite_is_a_problem() {
        use std::io::Write as _;
        let mut f = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
        f.write_all(b"function decodeUplink(i) { return { data: { t: 1, r: i.bytes[3] * 2 } }; }")
            .unwrap();
        let script = ScriptCodec::load(
            "r.js",
            f.path(),
            Default::default(),
            crate::lorawan::codecs::js::Limits::default(),
        )
        .unwrap();
        let ctx = Context {
            device: None,
            metric: None,
            now: Timestamp::from_millis(1_000).unwrap(),
        };
        let event = r#"{"deviceInfo":{"devEui":"d1"},"fPort":5,"data":"AA==","rxInfo":[]}"#;
        let codec = RouteCodec::Script(script);
        let d = decode(
            NetworkServer::ChirpstackV4,
            Some(&codec),
            event.as_bytes(),
            &ctx,
        )
        .unwrap();
        let said: Vec<String> = d.problems.iter().map(|p| p.reason.to_string()).collect();
        assert!(
            said.iter().any(|p| p.contains("not a finite number: NaN")),
            "{said:?}"
        );
        assert!(d.readings.iter().any(|r| r.metric().as_str() == "t"));
    }
}
