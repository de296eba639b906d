//! Starting the command runner (the `commands` crate): which ways in are
//! open (the cloud broker with `[commands] enabled`, Home Assistant's with
//! `[home_assistant] commands`, the rules' local actions) and where
//! results go. Without any it is not started, and no adapter opens a
//! write side. A rule's action needs neither the cloud nor `[commands]`:
//! its results go to the log, the metrics and the dashboard (and
//! upstream, when there is one).

use std::sync::Arc;

use anyhow::Context as _;
use gateway_core::command::{CommandRequest, CommandTargets};
use gateway_core::event::SinkEvent;
use gateway_core::{Clock, Telemetry};
use mqtt_connect::ConnectionSettings;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::settings::GatewayConfig;

/// The running command runner and its stop.
pub type Runner = (CancellationToken, JoinHandle<()>);

/// The channel the components that make commands (Home Assistant's
/// controls, the rules' actions) hand them to, when any does.
pub fn requests(
    config: &GatewayConfig,
) -> (
    Option<mpsc::Sender<CommandRequest>>,
    Option<mpsc::Receiver<CommandRequest>>,
) {
    if config.home_assistant_commands() || config.rule_actions() {
        let (tx, rx) = mpsc::channel(commands::REQUEST_QUEUE);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

/// The outputs that make commands, each with its end of [`requests`].
pub struct Makers {
    /// Home Assistant's controls, when `[home_assistant] commands` is on.
    pub home_assistant: Option<sinks::home_assistant::HaCommands>,
    /// The rules' actions, when a rule has one.
    pub actions: Option<rules::actions::ActionsOutput>,
}

/// What the runner is started with.
pub struct Ways {
    /// The upstream's connection, when there is one.
    pub upstream: Option<ConnectionSettings>,
    /// The requests of Home Assistant's controls and the rules' actions.
    pub requests: Option<mpsc::Receiver<CommandRequest>>,
    pub targets: CommandTargets,
    /// The actuators only rule actions write to.
    pub actuators: CommandTargets,
    /// The upstream's urgent lane and the dashboard's events.
    pub results: Vec<mpsc::Sender<SinkEvent>>,
    /// The upstream's flush handshake (see `commands::ResultsStored`).
    pub results_stored: Option<commands::ResultsStored>,
}

/// Starts the runner when a way in is open.
///
/// # Errors
/// The upstream connection cannot be configured.
pub fn start(
    config: &GatewayConfig,
    ways: Ways,
    clock: Arc<dyn Clock>,
    telemetry: Telemetry,
) -> anyhow::Result<Option<Runner>> {
    // The cloud's commands need the upstream (validation says so).
    let cloud = ways.upstream.filter(|_| config.commands.enabled);
    if cloud.is_none() && ways.requests.is_none() {
        return Ok(None);
    }
    let from_cloud = cloud.is_some();
    let stop = CancellationToken::new();
    let task = commands::start(
        commands::CommandsSetup {
            config: config.commands.clone(),
            upstream: cloud,
            requests: ways.requests,
            max_backoff: config.upstream.broker.max_backoff,
            topic_prefix: config.topic_prefix(),
            state_dir: config.gateway.state_dir.clone(),
            targets: ways.targets,
            clock,
            telemetry,
            results: ways.results,
            results_stored: ways.results_stored,
            actuators: ways.actuators,
        },
        stop.clone(),
    )
    .context("commands: upstream connection")?;
    if from_cloud {
        info!("Taking commands from the upstream broker.");
    }
    if config.home_assistant_commands() {
        info!("Taking commands from Home Assistant's broker.");
    }
    if config.rule_actions() {
        info!("The rules' local actions run as commands (journal, rate, results).");
    }
    Ok(Some((stop, task)))
}
