//! The whole `gateway.toml` for this build, and the `configfile` template.
//!
//! A crate of its own so that the binary (`run`, `validate`, a reload)
//! and the tools (`replay`, `history`, the demo) read one config type
//! without any crate depending on the binary. The binary re-exports it as
//! `edge_gateway::settings`.

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
/// An empty config is accepted here: `replay` reads only the rules, and
/// says itself that there are none.
///
/// # Errors
/// An unreadable file, or every problem in the merged config.
pub fn load(path: &Path) -> Result<GatewayConfig, LoadError> {
    read(path, None, std::env::vars_os(), true).map(|(config, _)| config)
}

/// Like [`load`] with the environment given, also returning the merged
/// layers (for `validate --print` and the log of what was read), for the
/// commands that run a gateway (`validate`, `run`, a reload): for them an
/// empty config is a problem.
///
/// # Errors
/// An unreadable file, or every problem in the merged config.
pub fn load_layers(
    path: &Path,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(GatewayConfig, Layers), LoadError> {
    read(path, None, env, false)
}

/// Like [`load_layers`], with the layer pushed from the cloud merged after
/// the drop-ins (`[remote_config]`; the gateway's `remote_config` module
/// finds it in `state_dir`).
///
/// # Errors
/// An unreadable file, or every problem in the merged config.
pub fn load_layers_pushed(
    path: &Path,
    pushed: Option<layers::PushedLayer<'_>>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(GatewayConfig, Layers), LoadError> {
    read(path, pushed, env, false)
}

fn read(
    path: &Path,
    pushed: Option<layers::PushedLayer<'_>>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    allow_empty: bool,
) -> Result<(GatewayConfig, Layers), LoadError> {
    let layers = layers::read_with_pushed(path, pushed, env)?;
    // An empty merged config would run on every default with no input,
    // forwarding nothing as "gw-01": never a working gateway, and most
    // likely a file that was truncated or never filled in.
    // A file that is not TOML merges as nothing: its syntax error is the
    // problem to report, not "empty" (a `max_series` too large for TOML's
    // integers was reported as an empty config).
    if layers.root().is_empty() && layers.problems().is_empty() && !allow_empty {
        let mut problems = Problems::default();
        problems.push(
            "",
            "the config is empty (no section in the file, its drop-ins or the environment): start from `edge-gateway configfile`",
        );
        return Err(LoadError::Invalid {
            path: path.display().to_string(),
            problems,
        });
    }
    // Files the config names (`js:` codecs) are relative to its directory.
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let parsed = gateway_core::config::base_dir::with(dir, || GatewayConfig::from_layers(&layers));
    match parsed {
        Ok(config) if !allow_empty && !has_output(&config) => {
            let mut problems = Problems::default();
            problems.push(
                "upstream",
                "no output: the readings would go nowhere; configure [upstream] (a cloud MQTT broker), a [[sink]] (InfluxDB), the [dashboard] or [home_assistant]",
            );
            Err(LoadError::Invalid {
                path: path.display().to_string(),
                problems,
            })
        }
        Ok(config) => match key_problems(&config, &layers) {
            None => Ok((config, layers)),
            Some(problems) => Err(LoadError::Invalid {
                path: path.display().to_string(),
                problems,
            }),
        },
        Err(problems) => Err(LoadError::Invalid {
            path: path.display().to_string(),
            problems,
        }),
    }
}

/// `[remote_config] public_keys` that are not Ed25519 public keys: a
/// typo there would refuse every push, or (all keys dropped) accept
/// unsigned ones.
fn key_problems(config: &GatewayConfig, layers: &Layers) -> Option<Problems> {
    let mut problems = Problems::default();
    for (i, key) in config.remote_config.public_keys.iter().enumerate() {
        if let Err(e) = remote_config::message::parse_public_key(key) {
            problems.push(format!("remote_config.public_keys[{i}]"), e);
        }
    }
    problems.attribute(|path| layers.source_of(path));
    (!problems.is_empty()).then_some(problems)
}

/// Whether anything takes the gateway's data: the cloud broker, a sink or
/// the dashboard.
fn has_output(config: &GatewayConfig) -> bool {
    config.upstream.enabled
        || !config.sinks.is_empty()
        || config.dashboard.enabled
        || config.home_assistant.enabled
}

/// What a valid config leaves to defaults that an operator should know
/// about: one line each, printed by `validate` and logged by `run`. Not
/// problems, since existing configs rely on them.
pub fn notes(config: &GatewayConfig, layers: &Layers) -> Vec<String> {
    let mut notes = Vec::new();
    if !layers.root().contains_key("gateway") {
        let g = &config.gateway;
        notes.push(format!(
            "no [gateway] section: running as id \"{}\", site \"{}\", state in \"{}\"; set gateway.id, since two gateways with the same id overwrite each other's data upstream",
            g.id,
            g.site,
            g.state_dir.display()
        ));
    }
    if !config.upstream.enabled {
        let how = if layers.root().contains_key("upstream") {
            "[upstream] enabled = false"
        } else {
            "no [upstream] section"
        };
        notes.push(format!(
            "{how}: nothing goes to a cloud broker (the data goes only to the [[sink]] outputs and the dashboard)"
        ));
    }
    if config.remote_config.enabled && config.remote_config.public_keys.is_empty() {
        notes.push("[remote_config] has no public_keys: any client that can publish on the cloud broker's config topic can reconfigure this gateway; set public_keys (`edge-gateway config keygen`)".into());
    }
    if config.adapters.is_empty() {
        notes.push("no [[adapter]]: the gateway reads no sensor".into());
    }
    for (i, d) in config.devices.iter().enumerate() {
        if let Some(problem) = gateway_core::hardware_address::registry_id_problem(d.id.as_str()) {
            notes.push(format!(
                "device[{i}].id: {problem}; this entry can never name a device"
            ));
        }
    }
    if let Some(note) = home_assistant_id_note(config) {
        notes.push(note);
    }
    notes.extend(config.sections.notes());
    notes
}

/// Home Assistant's discovery topics and unique ids carry the gateway's
/// id lower-cased, with every character but `[a-z0-9_-]` as `_`. Kept as
/// it is (another mapping would rename every user's entities), so an id
/// it changes is named: another gateway whose id differs only there
/// (`GW-01` and `gw-01`, `gw.01` and `gw_01`) takes the same entities on
/// a shared broker. The output hears no other gateway's discovery, so
/// this is the only place to say it.
fn home_assistant_id_note(config: &GatewayConfig) -> Option<String> {
    if !config.home_assistant.enabled {
        return None;
    }
    let id = &config.gateway.id;
    let written = sinks::home_assistant::discovery::slug(id);
    (written != *id).then(|| {
        format!(
            "gateway.id: Home Assistant's topics and unique ids write \"{id}\" as \"{written}\", as they write every id that differs from it only in case or in characters other than letters, digits, '-' and '_' (\"GW-01\" and \"gw-01\", \"gw.01\" and \"gw_01\"): two such gateways on one Home Assistant broker take the same entities; give each gateway an id that differs in \"{written}\""
        )
    })
}

/// The devices the gateway knows of: `[[device]]`, and those of the
/// protocol sections (`[[modbus.device]]`, `[[bacnet.device]]`, …) that
/// `[[device]]` does not describe, for `validate`'s summary and the start
/// log.
pub fn device_count(config: &GatewayConfig) -> usize {
    let mut ids: std::collections::HashSet<&str> =
        config.devices.iter().map(|d| d.id.as_str()).collect();
    let named = config.sections.registry_devices();
    for d in &named {
        ids.insert(d.id.as_str());
    }
    ids.len()
}

/// The fully commented template of every key with its default: the output
/// of `edge-gateway configfile` and the shipped `gateway.toml`.
pub fn template() -> String {
    let mut out = template::head_sections();
    out.push_str(&sinks::mqtt_upstream::template());
    out.push_str(&template::pipeline_sections());
    out.push_str(&gateway_core::config::metrics::template());
    out.push_str(&dashboard::history::template());
    out.push_str(&sinks::home_assistant::template());
    out.push_str(&gateway_core::config::commands::template());
    out.push_str(&gateway_core::config::remote::template());
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notes_of(toml: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml).unwrap();
        let (config, layers) = load_layers(&path, Vec::new()).unwrap();
        notes(&config, &layers)
    }

    fn config(id: &str, home_assistant: bool) -> String {
        format!(
            "[gateway]\nid = \"{id}\"\n[home_assistant]\nenabled = {home_assistant}\n[dashboard]\nenabled = true\n"
        )
    }

    /// `GW-01` and `gw-01`, `gw.01` and `gw_01`: one object id and one
    /// set of unique ids on Home Assistant's broker.
    #[test]
    fn a_gateway_id_home_assistant_writes_another_way_is_noted() {
        for id in ["GW-01", "gw.01", "gw 01"] {
            let notes = notes_of(&config(id, true));
            let shared: Vec<&String> = notes
                .iter()
                .filter(|n| n.starts_with("gateway.id") && n.contains("Home Assistant"))
                .collect();
            assert_eq!(shared.len(), 1, "{id}: {notes:?}");
            assert!(shared[0].contains(&format!("\"{id}\"")), "{}", shared[0]);
        }
        for (id, home_assistant) in [("gw-01", true), ("gw_01", true), ("GW.01", false)] {
            let notes = notes_of(&config(id, home_assistant));
            assert!(
                !notes.iter().any(|n| n.starts_with("gateway.id")),
                "{id}: {notes:?}"
            );
        }
    }
}
