//! The whole `gateway.toml` for this build, and the `configfile` template.

use std::ffi::OsString;
use std::path::Path;

use adapters::AdapterConfig;
use anyhow::Context as _;
use gateway_core::config::{layers, template, Config, Layers, Problems};
use sinks::SinkConfig;

/// `gateway.toml` with the adapter and sink kinds this build was compiled with.
pub type GatewayConfig = Config<AdapterConfig, SinkConfig>;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file, the drop-in directory or a drop-in exists but cannot be read.
    #[error(transparent)]
    Read(#[from] layers::ReadError),
    #[error("{path} has {} problem(s):\n{problems}", problems.len())]
    Invalid { path: String, problems: Problems },
}

/// Reads and checks a config file, the `conf.d/*.toml` drop-ins beside it
/// and the `EDGE_GATEWAY__SECTION__KEY` variables of this process.
///
/// # Errors
/// An unreadable file, or every problem in the merged config.
pub fn load(path: &Path) -> Result<GatewayConfig, LoadError> {
    load_layers(path, std::env::vars_os()).map(|(config, _)| config)
}

/// Like [`load`] with the environment given, also returning the merged
/// layers (for `validate --print` and the log of what was read).
///
/// # Errors
/// An unreadable file, or every problem in the merged config.
pub fn load_layers(
    path: &Path,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(GatewayConfig, Layers), LoadError> {
    let layers = layers::read(path, env)?;
    match GatewayConfig::from_layers(&layers) {
        Ok(config) => Ok((config, layers)),
        Err(problems) => Err(LoadError::Invalid {
            path: path.display().to_string(),
            problems,
        }),
    }
}

/// The fully commented template of every key with its default: the output
/// of `edge-gateway configfile` and the shipped `gateway.toml`.
pub fn template() -> String {
    let mut out = template::core_sections();
    out.push_str(&gateway_core::config::metrics::template());
    out.push_str(&adapters::template());
    out.push_str(&sinks::template());
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
