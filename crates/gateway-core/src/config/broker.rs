//! The connection every broker section shares (`[upstream]`, an
//! `[[adapter]]` of type `mqtt`, a rule action's `broker`): one type, one
//! set of defaults, one validation. They had drifted (the adapter never
//! checked that its TLS files were readable, nor that a client certificate
//! came with its key; actions had no TLS, credentials or backoff).
//!
//! `[upstream]` and the MQTT adapter write these keys flat among their own.
//! serde cannot deny unknown keys through a flattened struct, and the
//! config must name every misspelt key, so [`split`] takes the
//! [`BROKER_KEYS`] out of such a table first and each part is parsed
//! strictly. A rule action's `broker` is a URL or a table of the same keys.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::load::Problems;
use super::values::{duration, BrokerScheme, BrokerUrl};

/// A broker to connect to.
/// The longest keep-alive MQTT's CONNECT can say: 65535 seconds.
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(u16::MAX as u64);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: BrokerUrl,
    /// MQTT client id; empty lets the user of the section choose one.
    pub client_id: String,
    /// Username for the broker; empty for none.
    pub username: String,
    /// Name of the environment variable holding the password (never the
    /// password itself).
    pub password_env: String,
    /// PEM file of the CA(s) that sign the broker's certificate (mqtts
    /// only); none uses the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// MQTT keep-alive interval.
    #[serde(with = "duration")]
    pub keep_alive: Duration,
    /// Cap of the exponential reconnect backoff.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
}

/// The keys of [`BrokerSection`], as written in a section that keeps them
/// flat among its own.
pub const BROKER_KEYS: [&str; 9] = [
    "url",
    "client_id",
    "username",
    "password_env",
    "ca_file",
    "client_cert",
    "client_key",
    "keep_alive",
    "max_backoff",
];

impl Default for BrokerSection {
    /// The local broker, `mqtt://127.0.0.1:1883`.
    fn default() -> Self {
        Self::from_url(BrokerUrl {
            scheme: BrokerScheme::Mqtt,
            host: "127.0.0.1".into(),
            port: 1883,
        })
    }
}

impl BrokerSection {
    /// A plain connection to `url`, with the default timings.
    pub fn from_url(url: BrokerUrl) -> Self {
        Self {
            url,
            client_id: String::new(),
            username: String::new(),
            password_env: String::new(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Every problem, under `prefix` (`upstream`, `adapter[0]`). `is_set`
    /// says whether an environment variable is set (the process's own in
    /// production): a password variable that is missing is a config
    /// problem found by `validate`, not a failure of the running service.
    pub fn validate(&self, prefix: &str, is_set: &dyn Fn(&str) -> bool, problems: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        let tls = self.url.scheme == BrokerScheme::Mqtts;
        for (name, file) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            let Some(file) = file else { continue };
            if !tls {
                problems.push(key(name), "only used with an mqtts:// url");
            } else if let Err(e) = std::fs::metadata(file) {
                problems.push(
                    key(name),
                    format!("cannot read \"{}\": {e}", file.display()),
                );
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            problems.push(key("client_key"), "client_cert and client_key go together");
        }
        if self.keep_alive < Duration::from_secs(1) {
            problems.push(key("keep_alive"), "expected at least 1s");
        }
        // CONNECT carries it in 16 bits and the MQTT client truncates: "1day"
        // told the broker 5h47m while the client pinged daily, so the broker
        // cut the connection every 8.7 hours.
        if self.keep_alive > MAX_KEEP_ALIVE {
            problems.push(
                key("keep_alive"),
                "expected at most 18h 12m 15s (65535s, MQTT's limit)",
            );
        }
        if self.max_backoff < Duration::from_millis(100) {
            problems.push(key("max_backoff"), "expected at least 100ms");
        }
        if !self.password_env.is_empty() && !is_set(&self.password_env) {
            problems.push(
                key("password_env"),
                format!(
                    "environment variable {} is not set or is empty (for the packaged service: /etc/default/edge-gateway)",
                    self.password_env
                ),
            );
        }
    }
}

/// Splits a section's table into its broker keys and the rest, for a
/// section that writes them flat; anything but a table is left in the rest
/// (whose parser reports it).
pub fn split(table: toml::Value) -> (toml::Value, toml::Value) {
    match table {
        toml::Value::Table(mut rest) => {
            let mut broker = toml::Table::new();
            for key in BROKER_KEYS {
                if let Some(v) = rest.remove(key) {
                    broker.insert(key.to_string(), v);
                }
            }
            (toml::Value::Table(broker), toml::Value::Table(rest))
        }
        other => (toml::Value::Table(toml::Table::new()), other),
    }
}

/// `broker = "mqtt://host:1883"` or `broker = { url = ..., username = ... }`.
///
/// # Errors
/// A bad URL, an unknown key, or a value of the wrong type.
pub fn url_or_table<'de, D: Deserializer<'de>>(d: D) -> Result<BrokerSection, D::Error> {
    struct UrlOrTable;
    impl<'de> Visitor<'de> for UrlOrTable {
        type Value = BrokerSection;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a broker URL (\"mqtt://host:1883\") or a table with url")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<BrokerSection, E> {
            BrokerUrl::parse(v)
                .map(BrokerSection::from_url)
                .map_err(E::custom)
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<BrokerSection, M::Error> {
            BrokerSection::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(UrlOrTable)
}

/// The process environment, for [`BrokerSection::validate`].
///
/// Set to nothing counts as not set: an empty password is a line of
/// `/etc/default/edge-gateway` left unfilled, never a password.
pub fn env_is_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn url(text: &str) -> BrokerUrl {
        BrokerUrl::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(c: &BrokerSection, set: &[&str]) -> Vec<String> {
        let mut p = Problems::default();
        c.validate("upstream", &|v| set.contains(&v), &mut p);
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_problem_of_a_connection_is_named_with_its_key() {
        let c = BrokerSection {
            password_env: "GW_PASSWORD".into(),
            ca_file: Some("/ca.pem".into()),
            client_cert: Some("/c.pem".into()),
            client_key: None,
            keep_alive: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            ..BrokerSection::from_url(url("mqtt://h"))
        };
        let day = BrokerSection {
            keep_alive: Duration::from_secs(86_400),
            ..BrokerSection::from_url(url("mqtt://h"))
        };
        assert_eq!(
            problems(&day, &[]),
            ["upstream.keep_alive: expected at most 18h 12m 15s (65535s, MQTT's limit)"]
        );
        let longest = BrokerSection {
            keep_alive: MAX_KEEP_ALIVE,
            ..BrokerSection::from_url(url("mqtt://h"))
        };
        assert!(problems(&longest, &[]).is_empty());
        let got = problems(&c, &[]);
        for want in [
            "upstream.ca_file: only used with an mqtts:// url",
            "upstream.client_cert: only used with an mqtts:// url",
            "upstream.client_key: client_cert and client_key go together",
            "upstream.keep_alive: expected at least 1s",
            "upstream.max_backoff: expected at least 100ms",
            "upstream.password_env: environment variable GW_PASSWORD is not set or is empty",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "no {want:?} in {got:#?}"
            );
        }
        assert_eq!(problems(&c, &["GW_PASSWORD"]).len(), got.len() - 1);
    }

    #[test]
    fn tls_files_must_be_readable_and_a_good_connection_has_no_problem() {
        let c = BrokerSection {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..BrokerSection::from_url(url("mqtts://h"))
        };
        let got = problems(&c, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("upstream.ca_file: cannot read \"/nonexistent/ca.pem\""));
        let ok = BrokerSection { ca_file: None, ..c };
        assert!(problems(&ok, &[]).is_empty());
    }

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "url_or_table")]
        broker: BrokerSection,
    }

    fn section(text: &str) -> Result<BrokerSection, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.broker)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_broker_is_a_url_or_a_table_of_the_upstream_keys() {
        let plain = section(r#"broker = "mqtt://10.0.0.2:1884""#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain, BrokerSection::from_url(url("mqtt://10.0.0.2:1884")));

        let full = section(
            r#"
[broker]
url = "mqtts://hvac:8883"
username = "gw"
password_env = "HVAC_PW"
ca_file = "/ca.pem"
client_id = "gw-act"
keep_alive = "10s"
max_backoff = "5s"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(full.url, url("mqtts://hvac:8883"));
        assert_eq!(full.username, "gw");
        assert_eq!(full.password_env, "HVAC_PW");
        assert_eq!(full.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(full.client_id, "gw-act");
        assert_eq!(full.keep_alive, Duration::from_secs(10));
        assert_eq!(full.max_backoff, Duration::from_secs(5));

        let err = section(r#"broker = { url = "mqtt://h", pasword_env = "X" }"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("pasword_env"), "{err}");
        assert!(section(r#"broker = "http://h""#).is_err());
        assert_eq!(
            section(r#"broker = { username = "gw" }"#).map(|b| b.url),
            Ok(BrokerSection::default().url),
            "the local broker by default"
        );
    }

    #[test]
    fn a_table_broker_is_validated_like_upstream() {
        let s = section(
            r#"broker = { url = "mqtt://h", password_env = "ACTION_PW", ca_file = "/ca.pem" }"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Problems::default();
        s.validate("rule[0].action.broker", &|_| false, &mut p);
        let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            got.iter()
                .any(|g| g.starts_with("rule[0].action.broker.password_env:")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|g| g
                    .starts_with("rule[0].action.broker.ca_file: only used with an mqtts:// url")),
            "{got:?}"
        );
    }

    #[test]
    fn every_broker_key_is_split_out_and_parses() {
        let mut table = toml::Table::new();
        for (k, v) in [
            ("url", "mqtts://h:8883"),
            ("client_id", "c"),
            ("username", "u"),
            ("password_env", "P"),
            ("ca_file", "/ca"),
            ("client_cert", "/cert"),
            ("client_key", "/key"),
            ("keep_alive", "5s"),
            ("max_backoff", "7s"),
        ] {
            table.insert(k.into(), toml::Value::String(v.into()));
        }
        assert_eq!(
            table.len(),
            BROKER_KEYS.len(),
            "the list and the test agree"
        );
        table.insert("qos".into(), toml::Value::Integer(1));
        let (broker, rest) = split(toml::Value::Table(table));
        let rest = rest.as_table().cloned().unwrap_or_default();
        assert_eq!(rest.keys().collect::<Vec<_>>(), vec!["qos"]);
        let b: BrokerSection = broker.try_into().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.max_backoff, Duration::from_secs(7));
        assert_eq!(b.client_key.as_deref(), Some(Path::new("/key")));
    }
}
