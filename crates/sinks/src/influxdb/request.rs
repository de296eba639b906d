//! The write request's path and credentials, from the config and the
//! environment (secrets are read here, once, and never logged).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::registry::StartError;

use super::config::{Endpoint, InfluxConfig};
use super::http::Tls;
use super::line;

/// Reads a secret's variable; the value is never logged.
pub fn secret(sink: &str, key: &'static str, var: &str) -> Result<String, StartError> {
    std::env::var(var).map_err(|_| StartError::MissingSecret {
        sink: sink.to_string(),
        key,
        var: var.to_string(),
    })
}

/// TLS for an `https://` url: `ca_file` or the system's roots, loaded as
/// for MQTT; `None` for `http://`.
///
/// # Errors
/// An unreadable or empty `ca_file`, no system roots, or a host that
/// cannot be a certificate name.
pub fn tls(config: &InfluxConfig, endpoint: &Endpoint) -> Result<Option<Tls>, StartError> {
    if !endpoint.tls {
        return Ok(None);
    }
    let rustls =
        mqtt_connect::tls_client_config(config.ca_file.as_deref(), None).map_err(|source| {
            StartError::Tls {
                sink: config.name.clone(),
                source,
            }
        })?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|_| StartError::ServerName {
            sink: config.name.clone(),
            host: endpoint.host.clone(),
        })?;
    Ok(Some(Tls::new(rustls, name)))
}

/// `(path and query of a write, Authorization header)`.
///
/// # Errors
/// A secret's variable that is not set.
pub fn write_target(
    config: &InfluxConfig,
    endpoint: &Endpoint,
) -> Result<(String, Option<String>), StartError> {
    let name = &config.name;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let (path, auth) = if config.version == 2 {
        query
            .append_pair("org", &config.org)
            .append_pair("bucket", &config.bucket);
        let token = match config.token_var() {
            Some(var) => secret(name, "token", var)?,
            None => String::new(),
        };
        ("/api/v2/write", Some(format!("Token {token}")))
    } else {
        query.append_pair("db", &config.database);
        if !config.retention_policy.is_empty() {
            query.append_pair("rp", &config.retention_policy);
        }
        let auth = if config.username.is_empty() {
            None
        } else {
            let password = if config.password_env.is_empty() {
                String::new()
            } else {
                secret(name, "password_env", &config.password_env)?
            };
            Some(format!(
                "Basic {}",
                BASE64.encode(format!("{}:{password}", config.username))
            ))
        };
        ("/write", auth)
    };
    query.append_pair("precision", line::PRECISION);
    Ok((
        format!("{}{path}?{}", endpoint.base_path, query.finish()),
        auth,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn v1_writes_name_database_retention_policy_and_basic_auth() {
        std::env::set_var("REQUEST_TEST_INFLUX_PW", "pa ss");
        let config = super::InfluxConfig {
            name: "a".into(),
            database: "bme680 db".into(),
            retention_policy: "autogen".into(),
            username: "user".into(),
            password_env: "REQUEST_TEST_INFLUX_PW".into(),
            ..super::InfluxConfig::default()
        };
        let endpoint = super::Endpoint {
            authority: "h:1".into(),
            host: "h".into(),
            tls: false,
            base_path: "/influx".into(),
        };
        let (path, auth) = super::write_target(&config, &endpoint).unwrap();
        assert_eq!(path, "/influx/write?db=bme680+db&rp=autogen&precision=ns");
        assert_eq!(auth.as_deref(), Some("Basic dXNlcjpwYSBzcw=="));
        let missing = super::InfluxConfig {
            password_env: "REQUEST_TEST_UNSET_VARIABLE".into(),
            ..config
        };
        let e = super::write_target(&missing, &endpoint)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "sink a: password_env names environment variable REQUEST_TEST_UNSET_VARIABLE, which is not set");
    }
}
