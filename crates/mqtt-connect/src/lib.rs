//! Building a rumqttc connection (address, credentials, TLS) from config.
//!
//! Shared by everything that reaches a broker (the MQTT ingress adapter,
//! the LoRaWAN downlink feed, the upstream and Home Assistant outputs, rule
//! actions), so every broker is reached the same way: from its validated
//! [`BrokerSection`], carried as [`ConnectionSettings`]. TLS is configured
//! here ([`tls_client_config`], which the InfluxDB output's https uses too)
//! rather than with rumqttc's `Transport::tls_with_default_config()`, whose
//! default `TlsConfiguration` panics when the system's certificates cannot
//! be loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_core::config::{BrokerScheme, BrokerSection};
use rumqttc::{LastWill, MqttOptions, Transport};

/// Everything needed to open one MQTT connection.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// The broker, with its client id already chosen.
    pub broker: BrokerSection,
    /// Largest packet accepted from the broker.
    pub max_packet_bytes: usize,
    /// Ask the broker to keep our subscriptions and queue QoS 1/2 messages
    /// while we are away (MQTT clean session off, fixed client id).
    pub persistent_session: bool,
}

/// Why a connection could not even be configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("environment variable {0} (named by password_env) is not set")]
    MissingPassword(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what}")]
    EmptyPem { path: PathBuf, what: &'static str },
    #[error("no trusted root certificates: set ca_file, or install ca-certificates")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

impl ConnectionSettings {
    /// A clean-session connection to `broker` reading packets up to 1 MiB,
    /// as `default_client_id` when the section names no client id.
    pub fn new(broker: &BrokerSection, default_client_id: String) -> Self {
        let mut broker = broker.clone();
        if broker.client_id.is_empty() {
            broker.client_id = default_client_id;
        }
        Self {
            broker,
            max_packet_bytes: 1024 * 1024,
            persistent_session: false,
        }
    }

    /// rumqttc options for this connection with an optional Last Will.
    ///
    /// # Errors
    /// A missing password variable or unreadable TLS material.
    pub fn mqtt_options(&self, last_will: Option<LastWill>) -> Result<MqttOptions, SetupError> {
        let b = &self.broker;
        let mut opts = MqttOptions::new(&b.client_id, &b.url.host, b.url.port);
        opts.set_keep_alive(b.keep_alive);
        opts.set_clean_session(!self.persistent_session);
        opts.set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        if let Some((user, password)) = self.credentials()? {
            opts.set_credentials(user, password);
        }
        if let Some(will) = last_will {
            opts.set_last_will(will);
        }
        if let Some(tls) = self.tls()? {
            opts.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        Ok(opts)
    }

    /// The user name and password to log in with, if any (the password
    /// read from the variable `password_env` names).
    ///
    /// # Errors
    /// The variable is not set.
    pub fn credentials(&self) -> Result<Option<(String, String)>, SetupError> {
        let b = &self.broker;
        if b.username.is_empty() {
            return Ok(None);
        }
        let password = if b.password_env.is_empty() {
            String::new()
        } else {
            std::env::var(&b.password_env)
                .map_err(|_| SetupError::MissingPassword(b.password_env.clone()))?
        };
        Ok(Some((b.username.clone(), password)))
    }

    /// The TLS client config of an `mqtts://` broker; `None` for `mqtt://`.
    ///
    /// # Errors
    /// Unreadable TLS material.
    pub fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, SetupError> {
        if self.broker.url.scheme != BrokerScheme::Mqtts {
            return Ok(None);
        }
        Ok(Some(Arc::new(self.tls_config()?)))
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, SetupError> {
        let b = &self.broker;
        let client = match (&b.client_cert, &b.client_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        tls_client_config(b.ca_file.as_deref(), client)
    }
}

/// A rustls client config trusting `ca_file` (PEM) or, without one, the
/// system's roots, with an optional client certificate and key. Shared by
/// every TLS client of the gateway (MQTT brokers, the InfluxDB output), so
/// certificates are loaded and refused the same way everywhere.
///
/// # Errors
/// Unreadable or empty PEM files, no trusted roots at all, or a key that
/// does not fit.
pub fn tls_client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => {
            // Unparsable system certificates are skipped, as browsers do;
            // an empty store is an error rather than a silent failure later.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(SetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn read(path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, SetupError> {
    let bytes = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(SetupError::EmptyPem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, SetupError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| SetupError::EmptyPem {
            path: path.to_path_buf(),
            what: "private key",
        })
}
