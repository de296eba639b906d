//! `[upstream] report`: which metrics are sent upstream at once when they
//! change, besides their windows. Keys are `"device/metric"`, each part an
//! exact id or a pattern where `*` stands for any run of characters
//! (`"ahu-*/mode"`, `"*/setpoint"`); values `"change"` or `"window"` (the
//! default, to exempt a series a broader pattern takes). It applies to
//! every adapter alike: it is keyed by what every reading carries, its
//! device and metric.
//!
//! The most specific key wins: an exact one over any pattern, then the
//! pattern with the most literal characters (`"ahu-3/mode"` over
//! `"ahu-*/mode"` over `"*/mode"`); between equals, the key that sorts
//! last.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// How a metric goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportMode {
    /// Each new value at once (and windowed as ever).
    Change,
    /// In its windows only.
    Window,
}

/// The checked rules, for matching readings.
#[derive(Debug, Clone, Default)]
pub struct ReportRules {
    exact: HashMap<(String, String), ReportMode>,
    /// `(device pattern, metric pattern, mode)`, most specific first.
    patterns: Vec<(String, String, ReportMode)>,
    /// The metric parts of the `change` keys, each once, with whether it
    /// is a pattern: what every reading is first checked against.
    change_metrics: Vec<(String, bool)>,
}

/// Why a key is not `"device/metric"`.
pub fn check_key(key: &str) -> Result<(&str, &str), String> {
    let Some((device, metric)) = key.split_once('/') else {
        return Err(format!(
            "expected \"device/metric\" such as \"ahu-1/fan_status\" or \"*/setpoint\", got \"{key}\""
        ));
    };
    if device.is_empty() || metric.is_empty() || metric.contains('/') {
        return Err(format!(
            "expected one device and one metric (each an id or a pattern with *), got \"{key}\""
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| matches!(c, '+' | '#') || c.is_control())
    {
        return Err(format!(
            "{c:?} is in no device id or metric name (use * for any characters), in \"{key}\""
        ));
    }
    Ok((device, metric))
}

impl ReportRules {
    /// The rules of `[upstream] report`; keys that are not
    /// `"device/metric"` are left out (`validate` has named them).
    pub fn new(report: &BTreeMap<String, ReportMode>) -> Self {
        let mut rules = Self::default();
        for (key, mode) in report {
            let Ok((device, metric)) = check_key(key) else {
                continue;
            };
            if *mode == ReportMode::Change && !rules.change_metrics.iter().any(|m| m.0 == metric) {
                rules
                    .change_metrics
                    .push((metric.to_string(), metric.contains('*')));
            }
            if device.contains('*') || metric.contains('*') {
                rules
                    .patterns
                    .push((device.to_string(), metric.to_string(), *mode));
            } else {
                rules
                    .exact
                    .insert((device.to_string(), metric.to_string()), *mode);
            }
        }
        let literal = |p: &(String, String, ReportMode)| {
            p.0.chars().chain(p.1.chars()).filter(|c| *c != '*').count()
        };
        // Stable: between equals, the key that sorts last comes first.
        rules.patterns.reverse();
        rules
            .patterns
            .sort_by_key(|p| std::cmp::Reverse(literal(p)));
        rules
    }

    /// No metric is reported on change.
    pub fn is_empty(&self) -> bool {
        self.change_metrics.is_empty()
    }

    /// Whether some device's `metric` may be reported on change: the
    /// cheap test every reading takes first (a length and a few bytes for
    /// most), before its device is looked at.
    #[inline]
    pub fn may_report(&self, metric: &str) -> bool {
        self.change_metrics.iter().any(|(m, pattern)| {
            if *pattern {
                glob(m, metric)
            } else {
                m == metric
            }
        })
    }

    /// How `metric` of `device` goes upstream.
    pub fn mode(&self, device: &str, metric: &str) -> ReportMode {
        if let Some(mode) = self.exact.get(&(device.to_string(), metric.to_string())) {
            return *mode;
        }
        self.patterns
            .iter()
            .find(|(d, m, _)| glob(d, device) && glob(m, metric))
            .map_or(ReportMode::Window, |p| p.2)
    }
}

/// `text` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, ReportMode)]) -> ReportRules {
        ReportRules::new(&pairs.iter().map(|(k, m)| ((*k).to_string(), *m)).collect())
    }

    #[test]
    fn patterns_match_and_the_most_specific_key_wins() {
        use ReportMode::{Change, Window};
        let r = rules(&[
            ("*/setpoint", Change),
            ("ahu-*/mode", Change),
            ("ahu-3/mode", Window),
            ("fridge-2/door", Change),
            ("*/*_state", Change),
        ]);
        assert!(r.may_report("mode") && r.may_report("run_state") && r.may_report("door"));
        assert!(!r.may_report("temperature"));
        assert!(!r.is_empty());
        assert_eq!(r.mode("ahu-1", "mode"), Change);
        assert_eq!(r.mode("ahu-3", "mode"), Window);
        assert_eq!(r.mode("vav-9", "setpoint"), Change);
        assert_eq!(r.mode("vav-9", "setpoint_2"), Window);
        assert_eq!(r.mode("fridge-2", "door"), Change);
        assert_eq!(r.mode("fridge-2", "temperature"), Window);
        assert_eq!(r.mode("pump", "run_state"), Change);
        assert_eq!(r.mode("pump", "_state"), Change);
        assert!(rules(&[("*/*", Window)]).is_empty());
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "ac", true),
            ("a*b*c", "axbyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }

    #[test]
    fn keys_are_device_slash_metric() {
        assert!(check_key("ahu-1/fan").is_ok());
        assert!(check_key("*/fan").is_ok());
        for bad in ["fan", "/fan", "ahu/", "a/b/c", "ahu/+", "#/fan"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
