//! Topic patterns with placeholders: `sensors/data/{device}/{metric}`.
//!
//! A pattern is both the subscription filter (placeholders become `+`) and
//! the rule that pulls the device and metric out of a received topic.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Device,
    Metric,
    /// `+`: any one level, ignored.
    AnyOne,
    /// `#`: any remaining levels, ignored.
    AnyRest,
}

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    raw: String,
    levels: Vec<Level>,
}

/// What a topic matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captures<'t> {
    pub device: Option<&'t str>,
    pub metric: Option<&'t str>,
}

impl TopicPattern {
    /// # Errors
    /// A message saying what is wrong with the pattern.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err(
                "expected a topic pattern like \"sensors/{device}\", got an empty string".into(),
            );
        }
        if let Some(e) = gateway_core::config::values::topic_control_char(raw) {
            return Err(format!("{raw:?}: {e}"));
        }
        let parts: Vec<&str> = raw.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "{device}" => Level::Device,
                "{metric}" => Level::Metric,
                "+" => Level::AnyOne,
                "#" if i + 1 == parts.len() => Level::AnyRest,
                "#" => return Err(format!("\"#\" must be the last level in \"{raw}\"")),
                p if p.contains(['{', '}', '+', '#']) => {
                    return Err(format!(
                        "level \"{p}\" of \"{raw}\": placeholders {{device}} and {{metric}} and the wildcards + and # must fill a whole level"
                    ))
                }
                p => Level::Literal(p.to_string()),
            };
            levels.push(level);
        }
        for (ph, what) in [(Level::Device, "{device}"), (Level::Metric, "{metric}")] {
            if levels.iter().filter(|l| **l == ph).count() > 1 {
                return Err(format!("{what} appears more than once in \"{raw}\""));
            }
        }
        Ok(Self {
            raw: raw.to_string(),
            levels,
        })
    }

    /// The MQTT subscription filter.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Device | Level::Metric | Level::AnyOne => "+",
                Level::AnyRest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn has_device(&self) -> bool {
        self.levels.contains(&Level::Device)
    }

    pub fn has_metric(&self) -> bool {
        self.levels.contains(&Level::Metric)
    }

    /// Matches a received topic, returning the placeholders' values.
    pub fn matches<'t>(&self, topic: &'t str) -> Option<Captures<'t>> {
        let mut caps = Captures {
            device: None,
            metric: None,
        };
        let mut parts = topic.split('/');
        for level in &self.levels {
            if *level == Level::AnyRest {
                return Some(caps);
            }
            let part = parts.next()?;
            match level {
                Level::Literal(s) if s != part => return None,
                Level::Device => caps.device = Some(part),
                Level::Metric => caps.metric = Some(part),
                _ => {}
            }
        }
        parts.next().is_none().then_some(caps)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (device, metric) captured, or `None` for no match.
    type Expected = Option<(Option<&'static str>, Option<&'static str>)>;

    #[test]
    fn filters_and_captures() {
        let cases: &[(&str, &str, &str, Expected)] = &[
            (
                "sensors/data/{device}/{metric}",
                "sensors/data/+/+",
                "sensors/data/esp32-1/temperature",
                Some((Some("esp32-1"), Some("temperature"))),
            ),
            (
                "sensors/data/{device}/{metric}",
                "sensors/data/+/+",
                "sensors/data/esp32-1",
                None,
            ),
            (
                "sensors/data/{device}/{metric}",
                "sensors/data/+/+",
                "sensors/data/a/b/c",
                None,
            ),
            (
                "sensors/{device}",
                "sensors/+",
                "sensors/a2:b2:c2:d2:e2:f2",
                Some((Some("a2:b2:c2:d2:e2:f2"), None)),
            ),
            ("sensors/{device}", "sensors/+", "other/x", None),
            (
                "zigbee2mqtt/{device}",
                "zigbee2mqtt/+",
                "zigbee2mqtt/bridge/state",
                None,
            ),
            (
                "site/+/{device}/#",
                "site/+/+/#",
                "site/b1/dev/x/y",
                Some((Some("dev"), None)),
            ),
            (
                "site/+/{device}/#",
                "site/+/+/#",
                "site/b1/dev",
                Some((Some("dev"), None)),
            ),
        ];
        for (pattern, filter, topic, expected) in cases {
            let p = TopicPattern::parse(pattern).unwrap();
            assert_eq!(p.filter(), *filter);
            let got = p.matches(topic).map(|c| (c.device, c.metric));
            assert_eq!(got, *expected, "{pattern} vs {topic}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in [
            "",
            "a/#/b",
            "dev-{device}",
            "{device}/{device}",
            "a/{devic}",
        ] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
