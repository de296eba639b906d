//! Value types of `gateway.toml` whose parse errors must say what was expected.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// MQTT quality of service. Deserialised from the integers 0, 1, 2 so the
/// config reads like every broker's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    AtMostOnce,
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

impl Qos {
    pub fn as_u8(self) -> u8 {
        match self {
            Self::AtMostOnce => 0,
            Self::AtLeastOnce => 1,
            Self::ExactlyOnce => 2,
        }
    }
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = toml::Value::deserialize(d)?;
        match raw.as_integer() {
            Some(0) => Ok(Self::AtMostOnce),
            Some(1) => Ok(Self::AtLeastOnce),
            Some(2) => Ok(Self::ExactlyOnce),
            _ => Err(serde::de::Error::custom(format!(
                "expected 0, 1 or 2, got {raw}"
            ))),
        }
    }
}

/// `humantime` durations (`30s`, `5m`, `1h 30m`, `250ms`).
/// Why `topic` cannot be an MQTT topic because of a control character
/// (`None` when it has none). MQTT forbids U+0000 in a topic and the
/// specification advises against the other control characters; a broker
/// refuses the connection or the publish, and the gateway could only log
/// "cannot reach the broker", so the config is refused instead.
pub fn topic_control_char(topic: &str) -> Option<String> {
    let (at, c) = topic.char_indices().find(|(_, c)| c.is_control())?;
    Some(format!(
        "a control character (U+{:04X}) at byte {at}: MQTT topics cannot hold it",
        u32::from(c)
    ))
}

pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let raw = toml::Value::deserialize(d)?;
        let text = raw.as_str().ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a duration string like \"30s\" or \"5m\", got {raw}"
            ))
        })?;
        let d = humantime::parse_duration(text).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration like \"30s\" or \"5m\", got \"{text}\" ({e})"
            ))
        })?;
        within_longest(d, text).map_err(serde::de::Error::custom)
    }

    /// The longest duration a key takes: 100 years. Far more than any
    /// period of a building's, and far from where `Instant + Duration` and
    /// `Duration * n` overflow and panic (a BACnet `timeout` of u64::MAX
    /// seconds once aborted the gateway at its first request, at every
    /// start).
    pub const LONGEST: Duration = Duration::from_secs(3_155_760_000);

    /// # Errors
    /// A duration above [`LONGEST`], named as the user wrote it (`text`).
    pub fn within_longest(d: Duration, text: &str) -> Result<Duration, String> {
        if d > LONGEST {
            return Err(format!("expected at most 100 years, got \"{text}\""));
        }
        Ok(d)
    }

    /// Renders a duration the way a user would write it in the file.
    pub fn render(d: Duration) -> String {
        humantime::format_duration(d).to_string()
    }
}

/// The two URL schemes a broker can be reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerScheme {
    /// Plain TCP, `mqtt://` (alias `tcp://`).
    Mqtt,
    /// TLS, `mqtts://` (alias `ssl://`).
    Mqtts,
}

/// Where an MQTT broker listens: `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: BrokerScheme,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// # Errors
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "expected mqtt://host[:port] or mqtts://host[:port], got \"{}\"",
                super::secret::redact_url(text)
            )
        };
        let url = url::Url::parse(text).map_err(|_| expected())?;
        // Credentials in the URL were once accepted and silently never sent
        // to the broker; the section has keys for them.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "credentials in the url are not used: write the user in `username` and the password in the environment variable named by `password_env`, and the url as {}://host[:port]",
                url.scheme()
            ));
        }
        let scheme = match url.scheme() {
            "mqtt" | "tcp" => BrokerScheme::Mqtt,
            "mqtts" | "ssl" => BrokerScheme::Mqtts,
            _ => return Err(expected()),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(h) => h.to_string(),
            None => return Err(expected()),
        };
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err(expected());
        }
        let port = url.port().unwrap_or(match scheme {
            BrokerScheme::Mqtt => 1883,
            BrokerScheme::Mqtts => 8883,
        });
        Ok(Self { scheme, host, port })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            BrokerScheme::Mqtt => "mqtt",
            BrokerScheme::Mqtts => "mqtts",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = toml::Value::deserialize(d)?;
        let text = raw.as_str().ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a string like \"mqtt://127.0.0.1:1883\", got {raw}"
            ))
        })?;
        Self::parse(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_broker_url_are_refused_and_never_echoed() {
        for text in [
            "mqtt://gw:MARKER-pw@127.0.0.1:1883",
            "mqtts://gw@broker.example",
            "mqtt://:MARKER-pw@h",
            "mqtt://gw:MARKER-pw@h/not-a-path",
        ] {
            let e = BrokerUrl::parse(text).unwrap_err();
            assert!(!e.contains("MARKER"), "{e}");
            assert!(
                e.contains("username") || e.contains("<redacted>"),
                "names the key to use: {e}"
            );
        }
        let e = BrokerUrl::parse("mqtt://gw:pw@127.0.0.1").unwrap_err();
        assert!(
            e.contains("`username`") && e.contains("`password_env`"),
            "{e}"
        );
    }

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (BrokerScheme::Mqtt, "127.0.0.1", 1884)
        );
        assert_eq!(
            BrokerUrl::parse("mqtts://cloud.example").unwrap().port,
            8883
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1]").unwrap().to_string(),
            "mqtt://[::1]:1883"
        );
        for bad in ["http://x", "mqtt://", "localhost:1883", "mqtt://h/path", ""] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }
}

/// Byte sizes: an integer, or a string with a unit (`"256MiB"`, `"64 KB"`).
pub mod byte_size {
    use super::*;

    /// Parses `"256MiB"`, `"1.5 GB"`, `"4096"`.
    pub fn parse(text: &str) -> Option<u64> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().ok()?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" | "k" => 1e3,
            "mb" | "m" => 1e6,
            "gb" | "g" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return None,
        };
        let v = n * mult;
        (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let raw = toml::Value::deserialize(d)?;
        let parsed = match &raw {
            toml::Value::Integer(i) => u64::try_from(*i).ok(),
            toml::Value::String(s) => parse(s),
            _ => None,
        };
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a size like \"256MiB\", \"64KB\" or a number of bytes, got {raw}"
            ))
        })
    }

    /// Renders the way the template writes sizes.
    pub fn render(bytes: u64) -> String {
        const MIB: u64 = 1024 * 1024;
        if bytes.is_multiple_of(MIB) {
            format!("{}MiB", bytes / MIB)
        } else {
            bytes.to_string()
        }
    }
}
