//! One line of `key=value` pairs: `temperature=21.5 humidity=40`.
//!
//! Pairs are separated by white space or commas (firmwares print either).
//! `ts`, `time` and `timestamp` hold the event time; `device`, `mac` and
//! `id` name the device when the context does not, and are never metrics.
//! A token without `=` refuses the whole line: it is text that is not
//! this format (a boot banner on a serial port), not a broken field.
//! A key given twice (`temperature=1 temperature=99`) refuses the line,
//! as a JSON object with a duplicate key is: which one the device meant
//! cannot be known, and counting both would invent a reading.

use super::{text, text_time, Context, DecodeError, Decoded, FieldReason, IdKind, When, TIME_KEYS};

/// Keys naming the device, in order of preference.
const DEVICE_KEYS: [&str; 3] = ["device", "mac", "id"];

pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    let text = text(payload)?;
    let mut pairs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for token in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        match token.split_once('=') {
            // A set, not a scan of `pairs`: a long line stays linear.
            Some((k, _)) if !k.is_empty() && !seen.insert(k) => {
                return Err(DecodeError::DuplicateKey {
                    key: super::clip(k),
                })
            }
            Some((k, v)) if !k.is_empty() => pairs.push((k, v)),
            _ => {
                return Err(DecodeError::NotKeyValue {
                    token: super::clip(token),
                })
            }
        }
    }
    let device = match ctx.device {
        Some(d) => d.clone(),
        None => {
            let (key, id) = DEVICE_KEYS
                .iter()
                .find_map(|key| pairs.iter().find(|(k, v)| k == key && !v.is_empty()))
                .ok_or(DecodeError::NoDevice)?;
            // `mac=` declares a MAC: noise there names no device.
            let kind = if *key == "mac" {
                IdKind::Mac
            } else {
                IdKind::Any
            };
            super::device_id_of_kind(id, kind)?
        }
    };
    let mut out = Decoded::default();
    let mut when = When::arrival(ctx.now);
    if let Some((k, v)) = pairs.iter().find(|(k, _)| TIME_KEYS.contains(k)) {
        match text_time(v) {
            Some(t) => when = When::event(t),
            None => out.problem(k, FieldReason::BadTimestamp),
        }
    }
    let mut candidates = 0;
    for (k, v) in &pairs {
        if TIME_KEYS.contains(k) || DEVICE_KEYS.contains(k) {
            continue;
        }
        candidates += 1;
        match v.parse::<f64>() {
            Ok(x) => out.push(&device, k, k, x, when),
            Err(_) => out.problem(k, FieldReason::NotNumeric),
        }
    }
    if candidates == 0 {
        return Err(DecodeError::NoValues);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
    use gateway_core::TimeSource::{Arrival, Event};

    #[test]
    fn lines() {
        let c = ctx(None, None);
        let f = PayloadFormat::Kv;
        let cases: Vec<(&str, &[u8], Want)> = vec![
            (
                "the example, device key",
                b"device=lab temperature=21.5 humidity=40\r\n",
                ok(
                    vec![
                        r("lab", "temperature", 21.5, NOW, Arrival),
                        r("lab", "humidity", 40.0, NOW, Arrival),
                    ],
                    vec![],
                ),
            ),
            (
                "commas, mac, ts",
                b"mac=24:6f:28:aa:bb:01,ts=1795255200,t=1,bad=x",
                ok(
                    vec![r("24:6f:28:aa:bb:01", "t", 1.0, T0, Event)],
                    vec![p("bad", FieldReason::NotNumeric)],
                ),
            ),
            (
                "a mac in another notation is the same device",
                b"mac=24-6F-28-AA-BB-01 t=1",
                ok(vec![r("24:6f:28:aa:bb:01", "t", 1.0, NOW, Arrival)], vec![]),
            ),
            (
                "noise in a mac key names no device",
                b"mac=rl~lx24:6f:28:aa:bb:01 t=1",
                Err(DecodeError::InvalidDevice {
                    id: "rl~lx24:6f:28:aa:bb:01".into(),
                    source: gateway_core::ModelError::NotMac("rl~lx24:6f:28:aa:bb:01".into()),
                }),
            ),
            ("no device", b"temperature=21.5", Err(DecodeError::NoDevice)),
            (
                "boot banner",
                b"ets Jun  8 2016 00:22:57",
                Err(DecodeError::NotKeyValue {
                    token: "ets".into(),
                }),
            ),
            ("only a device", b"device=x", Err(DecodeError::NoValues)),
            (
                "empty key",
                b"device=x =1",
                Err(DecodeError::NotKeyValue { token: "=1".into() }),
            ),
            (
                "a key twice",
                b"device=x temperature=1 temperature=99",
                Err(DecodeError::DuplicateKey {
                    key: "temperature".into(),
                }),
            ),
            (
                "the device key twice",
                b"device=x device=y t=1",
                Err(DecodeError::DuplicateKey {
                    key: "device".into(),
                }),
            ),
        ];
        for (label, payload, want) in cases {
            assert_decoded(label, decode(&f, payload, &c), want);
        }
        let d = dev("given");
        assert_decoded(
            "the context wins",
            decode(&f, b"device=x t=1", &ctx(Some(&d), None)),
            ok(vec![r("given", "t", 1.0, NOW, Arrival)], vec![]),
        );
    }
}
