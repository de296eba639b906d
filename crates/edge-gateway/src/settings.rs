//! The whole `gateway.toml` for this build, and the `configfile` template.

use std::path::Path;

use adapters::AdapterConfig;
use anyhow::Context as _;
use gateway_core::config::{template, Config, Problems};

/// `gateway.toml` with the adapter kinds this build was compiled with.
pub type GatewayConfig = Config<AdapterConfig>;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has {} problem(s):\n{problems}", problems.len())]
    Invalid { path: String, problems: Problems },
}

/// Reads and checks a config file.
///
/// # Errors
/// Unreadable file, or every problem in it.
pub fn load(path: &Path) -> Result<GatewayConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    GatewayConfig::parse(&text).map_err(|problems| LoadError::Invalid {
        path: path.display().to_string(),
        problems,
    })
}

/// The fully commented template of every key with its default: the output
/// of `edge-gateway configfile` and the shipped `gateway.toml`.
pub fn template() -> String {
    let mut out = template::core_sections();
    out.push_str(&gateway_core::config::metrics::template());
    out.push_str(&adapters::template());
    out.push_str(&template::device_section());
    out.push_str(&template::rule_section());
    out
}

/// Parses a config given as text, for the demo and tests.
///
/// # Errors
/// Every problem, as one message.
pub fn parse(text: &str) -> anyhow::Result<GatewayConfig> {
    GatewayConfig::parse(text)
        .map_err(|p| anyhow::anyhow!("{p}"))
        .context("built-in config")
}
