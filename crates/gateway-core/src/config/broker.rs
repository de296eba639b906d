//! The connection fields every broker section shares (`[upstream]`, an
//! `[[adapter]]` of type `mqtt`, a rule action's `broker`), validated in
//! one place: they had drifted (the adapter never checked that its TLS
//! files were readable, nor that a client certificate came with its key).
//!
//! `[upstream]` and the MQTT adapter keep these keys flat among their own
//! (serde cannot deny unknown keys through a flattened struct, and the
//! config must name every misspelt key), so they lend them to
//! [`BrokerConnection`]; a rule action's `broker` is a [`BrokerSection`],
//! a URL or a table of the same keys.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::load::Problems;
use super::values::{duration, BrokerScheme, BrokerUrl};

/// A broker to connect to: `broker = "mqtt://host:1883"`, or a table with
/// `url` and the same credentials, TLS and timing keys as `[upstream]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSection {
    pub url: BrokerUrl,
    /// MQTT client id; empty lets the user of the section choose one.
    pub client_id: String,
    pub username: String,
    /// Name of the environment variable holding the password.
    pub password_env: String,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub keep_alive: Duration,
    /// Cap of the exponential reconnect backoff.
    pub max_backoff: Duration,
}

impl BrokerSection {
    /// A plain connection to `url`, with the defaults of `[upstream]`.
    pub fn from_url(url: BrokerUrl) -> Self {
        Self {
            url,
            client_id: String::new(),
            username: String::new(),
            password_env: String::new(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: thirty_seconds(),
            max_backoff: thirty_seconds(),
        }
    }

    /// Its fields, for the shared validation.
    pub fn connection(&self) -> BrokerConnection<'_> {
        BrokerConnection {
            url: &self.url,
            password_env: &self.password_env,
            ca_file: self.ca_file.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
            keep_alive: self.keep_alive,
            max_backoff: self.max_backoff,
        }
    }
}

/// The table form, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    url: BrokerUrl,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password_env: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    client_cert: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default = "thirty_seconds", with = "duration")]
    keep_alive: Duration,
    #[serde(default = "thirty_seconds", with = "duration")]
    max_backoff: Duration,
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

impl<'de> Deserialize<'de> for BrokerSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SectionVisitor;
        impl<'de> Visitor<'de> for SectionVisitor {
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
                let raw = RawSection::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(BrokerSection {
                    url: raw.url,
                    client_id: raw.client_id,
                    username: raw.username,
                    password_env: raw.password_env,
                    ca_file: raw.ca_file,
                    client_cert: raw.client_cert,
                    client_key: raw.client_key,
                    keep_alive: raw.keep_alive,
                    max_backoff: raw.max_backoff,
                })
            }
        }
        d.deserialize_any(SectionVisitor)
    }
}

/// A section's connection fields, borrowed for validation.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConnection<'a> {
    pub url: &'a BrokerUrl,
    pub password_env: &'a str,
    pub ca_file: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
    pub keep_alive: Duration,
    pub max_backoff: Duration,
}

impl BrokerConnection<'_> {
    /// Every problem, under `prefix` (`upstream`, `adapter[0]`). `is_set`
    /// says whether an environment variable is set (the process's own in
    /// production): a password variable that is missing is a config
    /// problem found by `validate`, not a failure of the running service.
    pub fn validate(&self, prefix: &str, is_set: &dyn Fn(&str) -> bool, problems: &mut Problems) {
        let key = |k: &str| format!("{prefix}.{k}");
        let tls = self.url.scheme == BrokerScheme::Mqtts;
        for (name, file) in [
            ("ca_file", self.ca_file),
            ("client_cert", self.client_cert),
            ("client_key", self.client_key),
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
        if self.max_backoff < Duration::from_millis(100) {
            problems.push(key("max_backoff"), "expected at least 100ms");
        }
        if !self.password_env.is_empty() && !is_set(self.password_env) {
            problems.push(
                key("password_env"),
                format!(
                    "environment variable {} is not set (for the packaged service: /etc/default/edge-gateway)",
                    self.password_env
                ),
            );
        }
    }
}

/// The process environment, for [`BrokerConnection::validate`].
pub fn env_is_set(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> BrokerUrl {
        BrokerUrl::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(c: &BrokerConnection<'_>, set: &[&str]) -> Vec<String> {
        let mut p = Problems::default();
        c.validate("upstream", &|v| set.contains(&v), &mut p);
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_problem_of_a_connection_is_named_with_its_key() {
        let plain = url("mqtt://h");
        let c = BrokerConnection {
            url: &plain,
            password_env: "GW_PASSWORD",
            ca_file: Some(Path::new("/ca.pem")),
            client_cert: Some(Path::new("/c.pem")),
            client_key: None,
            keep_alive: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        };
        let got = problems(&c, &[]);
        for want in [
            "upstream.ca_file: only used with an mqtts:// url",
            "upstream.client_cert: only used with an mqtts:// url",
            "upstream.client_key: client_cert and client_key go together",
            "upstream.keep_alive: expected at least 1s",
            "upstream.max_backoff: expected at least 100ms",
            "upstream.password_env: environment variable GW_PASSWORD is not set",
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
        let tls = url("mqtts://h");
        let c = BrokerConnection {
            url: &tls,
            password_env: "",
            ca_file: Some(Path::new("/nonexistent/ca.pem")),
            client_cert: None,
            client_key: None,
            keep_alive: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        };
        let got = problems(&c, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("upstream.ca_file: cannot read \"/nonexistent/ca.pem\""));
        let ok = BrokerConnection { ca_file: None, ..c };
        assert!(problems(&ok, &[]).is_empty());
    }

    #[derive(Debug, Deserialize)]
    struct Holder {
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
        assert!(
            section(r#"broker = { username = "gw" }"#).is_err(),
            "url is required"
        );
    }

    #[test]
    fn a_table_broker_is_validated_like_upstream() {
        let s = section(
            r#"broker = { url = "mqtt://h", password_env = "ACTION_PW", ca_file = "/ca.pem" }"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Problems::default();
        s.connection()
            .validate("rule[0].action.broker", &|_| false, &mut p);
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
}
