//! The connection fields every broker section shares (`[upstream]`, an
//! `[[adapter]]` of type `mqtt`), validated in one place: they had drifted
//! (the adapter never checked that its TLS files were readable, nor that a
//! client certificate came with its key).

use std::path::Path;
use std::time::Duration;

use super::load::Problems;
use super::values::{BrokerScheme, BrokerUrl};

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
}
