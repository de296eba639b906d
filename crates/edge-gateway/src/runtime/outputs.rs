//! The outputs: the upstream, `[[sink]]`s, the dashboard's writer, Home
//! Assistant and the rules' actions, each started through
//! `gateway_core::output::StartOutput` on a link built the same way, and
//! added to the pipeline's fan-out (the actions take only the alerts the
//! rules hand them).

use std::sync::Arc;

use anyhow::Context as _;
use dashboard::{Dashboard, DashboardSetup};
use gateway_core::component::Sources;
use gateway_core::event::SinkEvent;
use gateway_core::output::{OutputContext, StartOutput};
use gateway_core::{Clock, DeviceRegistry, Telemetry};
use pipeline::fanout::{Output, SINK_QUEUE};
use sinks::mqtt_upstream::UpstreamSettings;
use sinks::OutputLink;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{ms, registry_devices, RunningOutput, UPSTREAM_CONFIGURED};
use crate::command_runner;
use crate::settings::GatewayConfig;

/// What the dashboard and Home Assistant are built from, besides config.
pub(super) struct OutputsSetup<'a> {
    pub sources: &'a Sources,
    pub telemetry: &'a Telemetry,
    pub clock: &'a Arc<dyn Clock>,
}

/// The outputs as started, and the pipeline's side of each.
#[derive(Default)]
pub(super) struct Outputs {
    pub feeds: Vec<Output>,
    pub flushes: Vec<mpsc::Sender<oneshot::Sender<bool>>>,
    pub running: Vec<RunningOutput>,
    /// Where command results go: the upstream's urgent lane, the dashboard.
    pub results: Vec<mpsc::Sender<SinkEvent>>,
    /// `[dashboard]`'s pages, when enabled (its writer is one of the outputs).
    pub dashboard: Option<Dashboard>,
    /// The actions output's link, for the rules (not in the fan-out).
    pub actions: Option<mpsc::Sender<SinkEvent>>,
    /// The upstream's urgent lane, for the configuration's reported state.
    pub upstream_urgent: Option<mpsc::Sender<SinkEvent>>,
    /// The upstream's flush handshake, for the command listener: a cloud
    /// command is acknowledged once its result is in the outbox.
    pub results_stored: Option<mpsc::Sender<oneshot::Sender<bool>>>,
}

/// How the pipeline's fanout treats an output.
enum Feed {
    /// Windows, statuses and alerts; the gateway stops if it fails.
    Upstream,
    /// Every event, in order, under this name.
    Sink(String),
    /// The alerts whose actions are to run, from the rules: not in the
    /// fan-out.
    Actions,
}

/// The pipeline's senders to one started output.
struct Senders {
    events: mpsc::Sender<SinkEvent>,
    urgent: Option<mpsc::Sender<SinkEvent>>,
    flush: Option<mpsc::Sender<oneshot::Sender<bool>>>,
}

impl Outputs {
    /// Starts one output on a link with the lanes it asks for.
    fn start(
        &mut self,
        feed: Feed,
        output: impl StartOutput,
        ctx: &OutputContext,
    ) -> anyhow::Result<Senders> {
        let lanes = output.lanes();
        let (events, messages) = mpsc::channel(output.queue().unwrap_or(SINK_QUEUE));
        let (urgent, urgent_rx) = if lanes.urgent {
            let (tx, rx) = mpsc::channel(SINK_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (flush, flush_rx) = if lanes.flush {
            let (tx, rx) = mpsc::channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let name = match &feed {
            Feed::Upstream => "upstream".to_string(),
            Feed::Sink(name) => name.clone(),
            Feed::Actions => "actions".to_string(),
        };
        let link = OutputLink {
            messages,
            urgent: urgent_rx,
            flush: flush_rx,
        };
        let started = output
            .start(link, ctx)
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| name.clone())?;
        let output = match feed {
            Feed::Upstream => {
                Output::upstream(events.clone(), urgent.clone()).with_readings(lanes.readings)
            }
            Feed::Sink(name) => Output::sink(name, events.clone()),
            Feed::Actions => {
                self.running.push(RunningOutput {
                    name,
                    required: false,
                    task: started.task,
                });
                return Ok(Senders {
                    events,
                    urgent,
                    flush,
                });
            }
        };
        self.running.push(RunningOutput {
            name: output.name.clone(),
            required: output.required,
            task: started.task,
        });
        self.feeds.push(output);
        self.flushes.extend(flush.clone());
        Ok(Senders {
            events,
            urgent,
            flush,
        })
    }
}

/// `[upstream]`'s settings, checked now (a setup mistake fails the start,
/// not a background task); `None` without a cloud broker.
pub(super) fn upstream_settings(
    config: &GatewayConfig,
    telemetry: &Telemetry,
) -> anyhow::Result<Option<UpstreamSettings>> {
    // Without an upstream nothing of it is built: no connection, no
    // outbox under state_dir.
    let settings = if config.upstream.enabled {
        let settings = UpstreamSettings::from_config(
            &config.upstream,
            &config.outbox,
            &config.gateway.id,
            &config.gateway.state_dir,
            config.topic_prefix(),
        )
        .with_adapter_units(!config.adapter_units.is_empty());
        settings
            .connection
            .mqtt_options(None)
            .context("upstream connection")?;
        Some(settings)
    } else {
        info!("No [upstream]: nothing is forwarded to a cloud broker.");
        None
    };
    telemetry
        .gauge(UPSTREAM_CONFIGURED, &[])
        .set(if settings.is_some() { 1.0 } else { 0.0 });
    Ok(settings)
}

/// Starts every output: the upstream first (the flush handshake asks it
/// before the rest), each `[[sink]]` with its own outbox below
/// `state_dir`, the dashboard's writer, Home Assistant, the rules'
/// actions.
pub(super) fn start_outputs(
    config: &GatewayConfig,
    upstream: Option<UpstreamSettings>,
    setup: &OutputsSetup<'_>,
    makers: command_runner::Makers,
) -> anyhow::Result<Outputs> {
    let ctx = OutputContext {
        gateway_id: config.gateway.id.clone(),
        state_dir: config.gateway.state_dir.clone(),
        registry: DeviceRegistry::from_config(&registry_devices(config)),
        units: config.units(setup.sources.clone()),
        telemetry: setup.telemetry.clone(),
    };
    let mut outputs = Outputs::default();
    if let Some(settings) = upstream {
        let senders = outputs.start(Feed::Upstream, settings, &ctx)?;
        outputs.upstream_urgent.clone_from(&senders.urgent);
        outputs.results.extend(senders.urgent);
        outputs.results_stored = senders.flush;
    }
    for sink in &config.sinks {
        let name = gateway_core::config::SinkSpec::name(sink).to_string();
        info!(output = %name, kind = sink.kind(), "Starting sink.");
        outputs.start(Feed::Sink(name), sink, &ctx)?;
    }
    if config.dashboard.enabled {
        let (pages, writer) = dashboard::start(DashboardSetup {
            sources: setup.sources.clone(),
            units: config.units(setup.sources.clone()),
            config: &config.dashboard,
            state_dir: &config.gateway.state_dir,
            registry: ctx.registry.clone(),
            rules: config.rules.clone(),
            window_ms: ms(config.aggregation.window),
            outputs: config
                .sinks
                .iter()
                .map(|s| gateway_core::config::SinkSpec::name(s).to_string())
                .collect(),
            telemetry: setup.telemetry.clone(),
            clock: setup.clock.clone(),
            health: crate::health::for_dashboard(),
            queue: SINK_QUEUE,
        })
        .context("dashboard")?;
        let senders = outputs.start(Feed::Sink("dashboard".into()), writer, &ctx)?;
        // Command results are shown on the device pages.
        outputs
            .results
            .extend(config.commands_run().then_some(senders.events));
        outputs.dashboard = Some(pages);
    }
    if config.home_assistant.enabled {
        let ha = sinks::home_assistant::HaSetup {
            config: config.home_assistant.clone(),
            gateway_id: config.gateway.id.clone(),
            state_dir: config.gateway.state_dir.clone(),
            registry: ctx.registry.clone(),
            units: config.units(setup.sources.clone()),
            sources: setup.sources.clone(),
            telemetry: setup.telemetry.clone(),
            sw_version: env!("CARGO_PKG_VERSION").to_string(),
            clock: setup.clock.clone(),
            commands: makers.home_assistant,
        };
        outputs.start(Feed::Sink("home_assistant".into()), ha, &ctx)?;
    }
    if let Some(actions) = makers.actions {
        let senders = outputs.start(Feed::Actions, actions, &ctx)?;
        outputs.actions = Some(senders.events);
    }
    Ok(outputs)
}
