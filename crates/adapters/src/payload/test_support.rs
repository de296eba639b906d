//! Builders shared by the payload decoders' tests.

use super::*;

/// 2026-11-21T10:00:00Z: the event time the examples carry.
pub(super) const T0: i64 = 1_795_255_200_000;

/// 2026-11-21T10:05:00Z: arrival time in every test.
pub(super) const NOW: i64 = 1_795_255_500_000;

pub(super) fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

pub(super) fn metric(s: &str) -> MetricName {
    MetricName::new(s).unwrap()
}

pub(super) fn ctx<'a>(device: Option<&'a DeviceId>, metric: Option<&'a MetricName>) -> Context<'a> {
    Context {
        device,
        metric,
        now: Timestamp::from_millis(NOW).unwrap(),
    }
}

pub(super) fn r(device: &str, metric: &str, value: f64, ms: i64, source: TimeSource) -> Reading {
    let time = Timestamp::from_millis(ms).unwrap();
    Reading::new(dev(device), self::metric(metric), value, time, source).unwrap()
}

pub(super) fn p(field: &str, reason: FieldReason) -> FieldProblem {
    FieldProblem {
        field: field.to_string(),
        reason,
    }
}

pub(super) fn ok(
    readings: Vec<Reading>,
    problems: Vec<FieldProblem>,
) -> Result<Decoded, DecodeError> {
    Ok(Decoded {
        readings,
        problems,
        ignored: Vec::new(),
    })
}

/// What a table row expects.
pub(super) type Want = Result<Decoded, DecodeError>;

/// Any [`DecodeError::InvalidJson`]: its text is serde_json's to choose.
pub(super) fn invalid_json() -> DecodeError {
    DecodeError::InvalidJson {
        reason: String::new(),
    }
}

/// Compares whole results; `InvalidJson` by kind only.
pub(super) fn assert_decoded(
    label: &str,
    got: Result<Decoded, DecodeError>,
    want: Result<Decoded, DecodeError>,
) {
    if let (Err(g @ DecodeError::InvalidJson { .. }), Err(DecodeError::InvalidJson { .. })) =
        (&got, &want)
    {
        assert!(!g.to_string().is_empty(), "{label}");
        return;
    }
    assert_eq!(got, want, "{label}");
}
