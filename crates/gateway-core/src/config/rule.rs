//! `[[rule]]`: the alert rules. Parsed here with the rest of the file so
//! `validate` reports a bad rule like any other key; the `rules` crate turns
//! them into a running rule engine.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::action::ActionConfig;
use super::load::Problems;
use super::values::duration;
use crate::model::{DeviceId, MetricName};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A value above `max` or below `min`.
    Threshold,
    /// A change faster than `rate` over its span.
    Rate,
    /// A device that sent nothing for `after`, or whose status went offline.
    Silence,
    /// A reading the learned detector finds anomalous.
    Anomaly,
}

impl RuleKind {
    /// The name used in `kind` and in the upstream alert payload.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Threshold => "threshold",
            Self::Rate => "rate",
            Self::Silence => "silence",
            Self::Anomaly => "anomaly",
        }
    }
}

/// Which way a rate rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `+2.0 per 10m`: rising by at least 2.0.
    Rising,
    /// `-2.0 per 10m`: falling by at least 2.0.
    Falling,
    /// `2.0 per 10m`: moving by at least 2.0 either way.
    Either,
}

/// A change per span, written `+2.0 per 10m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub direction: Direction,
    /// The size of the change, always positive.
    pub delta: f64,
    pub span: Duration,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = || format!("expected a change per span like \"+2.0 per 10m\", got \"{s}\"");
        let (amount, span) = s.split_once(" per ").ok_or_else(expected)?;
        let amount = amount.trim();
        let (direction, number) = match amount.as_bytes().first() {
            Some(b'+') => (Direction::Rising, &amount[1..]),
            Some(b'-') => (Direction::Falling, &amount[1..]),
            _ => (Direction::Either, amount),
        };
        let delta: f64 = number.trim().parse().map_err(|_| expected())?;
        if !(delta.is_finite() && delta > 0.0) {
            return Err(format!("the change must be a number above 0, got \"{s}\""));
        }
        let span_text = span.trim();
        let span = humantime::parse_duration(span_text).map_err(|_| expected())?;
        let span = super::values::duration::within_longest(span, span_text)?;
        if span.is_zero() {
            return Err(format!("the span must be longer than 0, got \"{s}\""));
        }
        Ok(Self {
            direction,
            delta,
            span,
        })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.direction {
            Direction::Rising => "+",
            Direction::Falling => "-",
            Direction::Either => "",
        };
        write!(
            f,
            "{sign}{} per {}",
            self.delta,
            duration::render(self.span)
        )
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[[rule]]`: one alert rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, in every alert as `rule`.
    pub name: String,
    pub kind: RuleKind,
    /// The metric watched; optional for `silence` (then any metric counts).
    #[serde(default)]
    pub metric: Option<MetricName>,
    /// Only this device.
    #[serde(default)]
    pub device: Option<DeviceId>,
    /// Only devices with this tag: a label (`"fridge"`) or `key=value`.
    #[serde(default)]
    pub tag: Option<String>,
    /// threshold: raise above this.
    #[serde(default)]
    pub max: Option<f64>,
    /// threshold: raise below this.
    #[serde(default)]
    pub min: Option<f64>,
    /// threshold and rate: clear only once back inside by this margin.
    #[serde(default)]
    pub hysteresis: f64,
    /// threshold and rate: the condition must hold this long before raising.
    #[serde(default, rename = "for", with = "duration")]
    pub for_: Duration,
    /// rate: `+2.0 per 10m` (rising), `-2.0 per 10m` (falling) or
    /// `2.0 per 10m` (either way). Each reading is compared with the lowest
    /// (rising) or highest (falling) reading of its series within the span
    /// before it, so a change within any interval up to the span raises,
    /// from a series' second reading on. A series with no reading within
    /// the span before (a node reporting less often) is compared with its
    /// previous reading, the change scaled to the span: +4.5 in 15 minutes
    /// is +3.0 per 10m.
    #[serde(default)]
    pub rate: Option<RateSpec>,
    /// silence: raise after this long without a reading.
    #[serde(default, with = "opt_duration")]
    pub after: Option<Duration>,
    /// anomaly: in (0, 1]; higher alerts on smaller deviations.
    #[serde(default)]
    pub sensitivity: Option<f64>,
    /// After a clear, the same rule and series may not raise again for this
    /// long: a flapping signal gives one alert, not a storm.
    #[serde(default = "default_cooldown", with = "duration")]
    pub cooldown: Duration,
    /// Local action on raise (and clear).
    #[serde(default)]
    pub action: Option<ActionConfig>,
}

/// Default `sensitivity` of an anomaly rule.
pub const DEFAULT_SENSITIVITY: f64 = 0.5;

/// Default `cooldown` of a rule.
pub fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}

mod opt_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration::deserialize(d).map(Some)
    }
}

impl RuleConfig {
    /// Checks what serde cannot: keys the kind needs or does not use.
    pub(crate) fn validate(&self, path: &str, problems: &mut Problems) {
        let mut bad = |key: &str, message: String| problems.push(format!("{path}.{key}"), message);
        let kind = self.kind.as_str();
        // The name's characters are checked with the other names'
        // (`config::names`).
        if self.device.is_some() && self.tag.is_some() {
            bad("tag", "give either device or tag, not both".into());
        }
        if let Some(tag) = &self.tag {
            if tag.trim().is_empty() || tag.starts_with('=') {
                bad(
                    "tag",
                    format!("expected a label or key=value, got \"{tag}\""),
                );
            }
        }
        // A silence rule hears any metric, and an anomaly rule without one
        // learns each device's metrics together (the multivariate model).
        if self.metric.is_none() && matches!(self.kind, RuleKind::Threshold | RuleKind::Rate) {
            bad(
                "metric",
                format!("missing required key for kind \"{kind}\""),
            );
        }
        let unused = |present: bool, key: &str, kinds: &str| {
            (present).then(|| {
                (
                    key.to_string(),
                    format!("not used by kind \"{kind}\" (only by {kinds})"),
                )
            })
        };
        let threshold = self.kind == RuleKind::Threshold;
        let rate = self.kind == RuleKind::Rate;
        let checks = [
            unused(!threshold && self.max.is_some(), "max", "threshold"),
            unused(!threshold && self.min.is_some(), "min", "threshold"),
            unused(
                !threshold && !rate && self.hysteresis != 0.0,
                "hysteresis",
                "threshold and rate",
            ),
            unused(
                !threshold && !rate && !self.for_.is_zero(),
                "for",
                "threshold and rate",
            ),
            unused(!rate && self.rate.is_some(), "rate", "rate"),
            unused(
                self.kind != RuleKind::Silence && self.after.is_some(),
                "after",
                "silence",
            ),
            unused(
                self.kind != RuleKind::Anomaly && self.sensitivity.is_some(),
                "sensitivity",
                "anomaly",
            ),
        ];
        for (key, message) in checks.into_iter().flatten() {
            bad(&key, message);
        }
        for (key, v) in [("max", self.max), ("min", self.min)] {
            if v.is_some_and(|v| !v.is_finite()) {
                bad(key, "expected a finite number".into());
            }
        }
        if !(self.hysteresis.is_finite() && self.hysteresis >= 0.0) {
            bad(
                "hysteresis",
                format!("expected 0 or more, got {}", self.hysteresis),
            );
        }
        match self.kind {
            RuleKind::Threshold => match (self.min, self.max) {
                (None, None) => bad("max", "a threshold rule needs max, min or both".into()),
                (Some(lo), Some(hi)) if lo >= hi => bad(
                    "min",
                    format!("expected min below max, got min {lo} and max {hi}"),
                ),
                (Some(lo), Some(hi)) if 2.0 * self.hysteresis >= hi - lo => bad(
                    "hysteresis",
                    format!(
                        "expected less than half of max - min ({}), got {}",
                        (hi - lo) / 2.0,
                        self.hysteresis
                    ),
                ),
                _ => {}
            },
            RuleKind::Rate => match &self.rate {
                None => bad("rate", "missing required key, like \"+2.0 per 10m\"".into()),
                Some(r) if self.hysteresis >= r.delta => bad(
                    "hysteresis",
                    format!(
                        "expected less than the rate's change ({}), got {}",
                        r.delta, self.hysteresis
                    ),
                ),
                Some(_) => {}
            },
            RuleKind::Silence => match self.after {
                None => bad("after", "missing required key, like \"15m\"".into()),
                Some(d) if d.is_zero() => bad("after", "expected a duration above 0".into()),
                Some(_) => {}
            },
            RuleKind::Anomaly => {
                if let Some(s) = self.sensitivity {
                    if !(s > 0.0 && s <= 1.0) {
                        bad(
                            "sensitivity",
                            format!("expected a number in (0, 1], got {s}"),
                        );
                    }
                }
            }
        }
        if let Some(a) = &self.action {
            a.validate(path, problems);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_direction() {
        let r: RateSpec = "+2.0 per 10m".parse().unwrap();
        assert_eq!(
            r,
            RateSpec {
                direction: Direction::Rising,
                delta: 2.0,
                span: Duration::from_secs(600)
            }
        );
        let r: RateSpec = "-0.5 per 30s".parse().unwrap();
        assert_eq!((r.direction, r.delta), (Direction::Falling, 0.5));
        let r: RateSpec = "3 per 1h".parse().unwrap();
        assert_eq!(r.direction, Direction::Either);
        assert_eq!(r.to_string(), "3 per 1h");
        for bad in [
            "2.0",
            "+x per 10m",
            "+2 per",
            "0 per 1m",
            "+2 per 0s",
            "+inf per 1m",
        ] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad} accepted");
        }
    }
}
