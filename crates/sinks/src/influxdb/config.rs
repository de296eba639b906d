//! `[[sink]] type = "influxdb"`: its keys, their defaults, their checks and
//! their part of the `configfile` template.

use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config::load::{self, join};
use gateway_core::config::values::{byte_size, duration};
use gateway_core::config::{FullPolicy, OutboxConfig, Problems};
use serde::Deserialize;

/// What a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Series {
    Readings,
    Aggregates,
    Alerts,
    /// The gateway's own health every 10 s (readings, outbox depths,
    /// upstream state), for the dashboard beside the data.
    Health,
}

/// One InfluxDB output. Secrets are never held here, only the names of
/// the variables that hold them, so `Debug` gives nothing away.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// Unique name; the output's metrics carry it as `output`.
    pub name: String,
    /// `http://host:8086`, or `https://host:8086` (TLS, verified).
    pub url: String,
    /// `https://` only: the PEM CA certificate(s) to trust instead of the
    /// system's roots (a private CA, a self-signed server).
    pub ca_file: Option<PathBuf>,
    /// `1` (`/write`, InfluxQL) or `2` (`/api/v2/write`).
    pub version: u8,
    /// v1: the database.
    pub database: String,
    /// v1: the retention policy; empty for the database's default.
    pub retention_policy: String,
    /// v1: user for basic auth; empty for none.
    pub username: String,
    /// v1: the environment variable holding the password.
    pub password_env: String,
    /// v1: `CREATE DATABASE` when it is missing.
    pub create_database: bool,
    /// v2: the organisation.
    pub org: String,
    /// v2: the bucket.
    pub bucket: String,
    /// v2: `"env:VAR"`, the variable holding the API token.
    pub token: String,
    /// Which series are written: any of "readings", "aggregates",
    /// "alerts", "health".
    pub write: Vec<Series>,
    /// Measurement of raw readings (one point per device and time, a field per metric).
    pub measurement: String,
    pub aggregates_measurement: String,
    pub alerts_measurement: String,
    pub health_measurement: String,
    /// Tag every point with its metric's `unit` (as the pages show it:
    /// `[units]`, `[[adapter]] units`, `[[device]] units`). Each metric is
    /// then its own point (a tag holds one unit), so it is off by default:
    /// series written before stay as they are.
    pub unit_tag: bool,
    /// Metrics whose raw readings are written as integers (rounded:
    /// `gas=12000i`): a database an earlier bridge filled holds them so,
    /// and InfluxDB refuses a float for a field that has integers, with
    /// every other field of the point.
    pub integer_fields: Vec<String>,
    /// Compress request bodies.
    pub gzip: bool,
    /// Most outbox records (one per event) in one request.
    pub batch_size: usize,
    /// Longest wait before a batch smaller than `batch_size` is sent.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Per request.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Requests at once, each on its own connection: the next batch goes
    /// out while earlier ones are being written and the following one is
    /// being stored.
    pub max_in_flight: usize,
    /// Cap of the retry backoff.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// The sink's own outbox bound, as `[outbox] max_bytes`.
    #[serde(deserialize_with = "byte_size::deserialize")]
    pub max_bytes: u64,
    /// What gives when it is full, as `[outbox] policy`.
    pub policy: FullPolicy,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: "http://127.0.0.1:8086".into(),
            ca_file: None,
            version: 1,
            database: String::new(),
            retention_policy: String::new(),
            username: String::new(),
            password_env: String::new(),
            create_database: true,
            org: String::new(),
            bucket: String::new(),
            token: String::new(),
            write: vec![
                Series::Readings,
                Series::Aggregates,
                Series::Alerts,
                Series::Health,
            ],
            measurement: "readings".into(),
            aggregates_measurement: "aggregates".into(),
            alerts_measurement: "alerts".into(),
            health_measurement: "gateway".into(),
            unit_tag: false,
            integer_fields: Vec::new(),
            gzip: false,
            batch_size: 1000,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_in_flight: 2,
            max_backoff: Duration::from_secs(30),
            max_bytes: OutboxConfig::default().max_bytes,
            policy: FullPolicy::DropOldest,
        }
    }
}

/// `http(s)://host:port` split for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, to connect to and for the `Host` header.
    pub authority: String,
    /// The host alone (no brackets): the name the certificate must carry.
    pub host: String,
    /// `https://`.
    pub tls: bool,
    /// Path prefix of the server (usually empty), without a trailing `/`.
    pub base_path: String,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            authority: "127.0.0.1:8086".into(),
            host: "127.0.0.1".into(),
            tls: false,
            base_path: String::new(),
        }
    }
}

impl InfluxConfig {
    /// The server's address, or why the url cannot be used.
    ///
    /// # Errors
    /// Not an `http://` or `https://` url with a host.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("not a url: {e}"))?;
        // InfluxDB 1.x also reads `?u=…&p=…`: a password there is printed
        // by `validate --print` and sits in every log line of the url.
        let in_query = url
            .query_pairs()
            .any(|(k, _)| matches!(k.as_ref(), "u" | "p" | "token"));
        if !url.username().is_empty() || url.password().is_some() || in_query {
            return Err(
                "credentials in the url are not used: set `username` and `password_env` (version 1) or `token` (version 2), and write the url without them"
                    .into(),
            );
        }
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "expected http://host:port or https://host:port, got scheme {other}"
                ))
            }
        };
        let host = url.host_str().ok_or("expected a host")?;
        let port = url.port_or_known_default().unwrap_or(8086);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let authority = if bare.contains(':') {
            format!("[{bare}]:{port}")
        } else {
            format!("{bare}:{port}")
        };
        Ok(Endpoint {
            authority,
            host: bare.to_string(),
            tls,
            base_path: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// The token's variable name, from `token = "env:VAR"`.
    pub fn token_var(&self) -> Option<&str> {
        self.token.strip_prefix("env:")
    }

    pub fn writes(&self, s: Series) -> bool {
        self.write.contains(&s)
    }

    /// Every problem under `path`; `is_set` says whether a variable is set.
    pub fn validate(&self, path: &str, is_set: &dyn Fn(&str) -> bool, problems: &mut Problems) {
        let key = |k: &str| join(path, k);
        if self.name.is_empty() {
            problems.push(key("name"), "missing required key");
        }
        match (self.endpoint(), &self.ca_file) {
            (Err(e), _) => problems.push(key("url"), e),
            (Ok(e), Some(_)) if !e.tls => {
                problems.push(key("ca_file"), "only used with an https:// url");
            }
            (Ok(_), Some(file)) => {
                if let Err(e) = std::fs::metadata(file) {
                    problems.push(
                        key("ca_file"),
                        format!("cannot read \"{}\": {e}", file.display()),
                    );
                }
            }
            (Ok(_), None) => {}
        }
        let required = |k: &str, v: &str, problems: &mut Problems| {
            if v.is_empty() {
                problems.push(key(k), format!("required with version = {}", self.version));
            }
        };
        match self.version {
            1 => {
                required("database", &self.database, problems);
                for k in ["org", "bucket", "token"] {
                    let set = match k {
                        "org" => &self.org,
                        "bucket" => &self.bucket,
                        _ => &self.token,
                    };
                    if !set.is_empty() {
                        problems.push(key(k), "only used with version = 2");
                    }
                }
                if !self.password_env.is_empty() && !is_set(&self.password_env) {
                    problems.push(
                        key("password_env"),
                        format!("environment variable {} is not set or is empty (for the packaged service: /etc/default/edge-gateway)", self.password_env),
                    );
                }
            }
            2 => {
                required("org", &self.org, problems);
                required("bucket", &self.bucket, problems);
                required("token", &self.token, problems);
                for (k, v) in [
                    ("database", &self.database),
                    ("retention_policy", &self.retention_policy),
                    ("username", &self.username),
                    ("password_env", &self.password_env),
                ] {
                    if !v.is_empty() {
                        problems.push(key(k), "only used with version = 1");
                    }
                }
                if !self.token.is_empty() {
                    match self.token_var() {
                        None => problems.push(
                            key("token"),
                            "expected \"env:VAR\" naming the variable that holds the token (never the token itself)",
                        ),
                        Some(var) if !is_set(var) => problems.push(
                            key("token"),
                            format!("environment variable {var} is not set or is empty (for the packaged service: /etc/default/edge-gateway)"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            v => problems.push(key("version"), format!("expected 1 or 2, got {v}")),
        }
        for (k, v) in [
            ("measurement", &self.measurement),
            ("aggregates_measurement", &self.aggregates_measurement),
            ("alerts_measurement", &self.alerts_measurement),
            ("health_measurement", &self.health_measurement),
        ] {
            if v.is_empty() {
                problems.push(key(k), "expected a measurement name");
            } else if v.starts_with('#') {
                // A line starting with `#` is a comment to InfluxDB: every
                // point would be answered 204 and never stored.
                problems.push(
                    key(k),
                    format!(
                        "{v:?}: a measurement name cannot start with '#' (line protocol's comment)"
                    ),
                );
            } else if v.contains('\\') || v.chars().any(char::is_control) {
                // InfluxDB reads a measurement's backslashes differently in
                // its parser and its index (a name written `a\\,b` comes
                // back as `a,b`): a name that cannot be written as it is.
                problems.push(
                    key(k),
                    format!("{v:?}: a measurement name without backslashes or control characters"),
                );
            }
        }
        if self.write.is_empty() {
            problems.push(
                key("write"),
                "expected at least one of \"readings\", \"aggregates\", \"alerts\", \"health\"",
            );
        }
        if self.batch_size == 0 {
            problems.push(key("batch_size"), "expected at least 1");
        }
        if self.flush_interval.is_zero() {
            problems.push(key("flush_interval"), "expected more than 0s");
        }
        if self.max_in_flight == 0 {
            problems.push(key("max_in_flight"), "expected at least 1");
        }
        if self.timeout < Duration::from_millis(100) {
            problems.push(key("timeout"), "expected at least 100ms");
        }
        if self.max_backoff < Duration::from_millis(100) {
            problems.push(key("max_backoff"), "expected at least 100ms");
        }
        if self.max_bytes < 64 * 1024 {
            problems.push(key("max_bytes"), "expected at least 64KiB");
        }
    }

    /// Parses and validates one `[[sink]]` table against this process's
    /// environment.
    pub fn parse(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let config = load::section::<Self>(table, path, problems)?;
        let before = problems.len();
        config.validate(path, &gateway_core::config::broker::env_is_set, problems);
        (problems.len() == before).then_some(config)
    }
}

/// The commented `[[sink]]` example of the `configfile` template: this
/// folder's `template.toml` with the defaults filled in.
pub fn template() -> String {
    let d = InfluxConfig::default();
    let q = |s: &str| format!("\"{s}\"");
    gateway_core::config::template::fill(
        include_str!("template.toml"),
        &[
            ("url", q(&d.url)),
            ("version", d.version.to_string()),
            ("create_database", d.create_database.to_string()),
            ("measurement", q(&d.measurement)),
            ("aggregates_measurement", q(&d.aggregates_measurement)),
            ("alerts_measurement", q(&d.alerts_measurement)),
            ("health_measurement", q(&d.health_measurement)),
            ("unit_tag", d.unit_tag.to_string()),
            ("gzip", d.gzip.to_string()),
            ("batch_size", d.batch_size.to_string()),
            ("flush_interval", q(&duration::render(d.flush_interval))),
            ("timeout", q(&duration::render(d.timeout))),
            ("max_in_flight", d.max_in_flight.to_string()),
            ("max_backoff", q(&duration::render(d.max_backoff))),
            ("max_bytes", q(&byte_size::render(d.max_bytes))),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str, set: &[&str]) -> Vec<String> {
        let mut p = Problems::default();
        let table: toml::Value = toml::from_str(text).unwrap();
        if let Some(c) = load::section::<InfluxConfig>(table, "sink[0]", &mut p) {
            c.validate("sink[0]", &|v| set.contains(&v), &mut p);
        }
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_problem_names_its_key_and_no_secret_is_repeated() {
        assert_eq!(
            problems("name = \"a\"\ndatabase = \"db\"\n", &[]),
            Vec::<String>::new()
        );
        let p = problems("name = \"a\"\ndatabase = \"db\"\nbogus = 1\n", &[]);
        assert!(p[0].starts_with("sink[0].bogus: unknown key"), "{p:?}");
        let p = problems(
            "name = \"a\"\nversion = 2\norg = \"o\"\nbucket = \"b\"\ntoken = \"t0k3n-value\"\n",
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sink[0].token: expected \"env:VAR\""));
        assert!(!p[0].contains("t0k3n-value"));
        let p = problems(
            "name = \"a\"\nversion = 2\norg = \"o\"\nbucket = \"b\"\ntoken = \"env:TOK\"\n",
            &[],
        );
        assert_eq!(p, ["sink[0].token: environment variable TOK is not set or is empty (for the packaged service: /etc/default/edge-gateway)"]);
        assert!(problems(
            "name = \"a\"\nversion = 2\norg = \"o\"\nbucket = \"b\"\ntoken = \"env:TOK\"\n",
            &["TOK"]
        )
        .is_empty());
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\npassword_env = \"PW\"\nurl = \"https://x\"\n",
            &[],
        );
        assert!(
            p.iter().any(|p| p.starts_with("sink[0].password_env:")),
            "{p:?}"
        );
        assert!(
            !p.iter().any(|p| p.starts_with("sink[0].url:")),
            "https is taken: {p:?}"
        );
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\nurl = \"http://u:MARKER@h:8086\"\n",
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("sink[0].url: credentials in the url are not used: set `username` and `password_env`"),
            "{p:?}"
        );
        assert!(!p[0].contains("MARKER"), "{p:?}");
        // InfluxDB 1.x's query-string form too.
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\nurl = \"http://h:8086/?u=admin&p=MARKER\"\n",
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("sink[0].url: credentials in the url"),
            "{p:?}"
        );
        assert!(!p[0].contains("MARKER"), "{p:?}");
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\nurl = \"ftp://x\"\nca_file = \"/ca.pem\"\n",
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sink[0].url: expected http://"), "{p:?}");
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\nca_file = \"/ca.pem\"\n",
            &[],
        );
        assert_eq!(p, ["sink[0].ca_file: only used with an https:// url"]);
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\nurl = \"https://x\"\nca_file = \"/nonexistent/ca.pem\"\n",
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("sink[0].ca_file: cannot read \"/nonexistent/ca.pem\""),
            "{p:?}"
        );
        let p = problems("name = \"a\"\n", &[]);
        assert_eq!(p, ["sink[0].database: required with version = 1"]);
        // Every line would be a comment to InfluxDB, answered 204.
        let p = problems(
            "name = \"a\"\ndatabase = \"db\"\nmeasurement = \"#raw\"\n",
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sink[0].measurement: \"#raw\""), "{p:?}");
    }

    #[test]
    fn the_template_parses_once_uncommented() {
        let text: String = template()
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .skip_while(|l| !l.starts_with("[[sink]]"))
            .map(|l| format!("{l}\n"))
            .collect();
        let root: toml::Table = toml::from_str(&text).unwrap();
        let mut t = root["sink"].as_array().unwrap()[0]
            .as_table()
            .unwrap()
            .clone();
        t.remove("type");
        let p = problems(&toml::to_string(&t).unwrap(), &[]);
        assert!(p.is_empty(), "{p:?}");
    }
}
