//! Wiring: adapters → pipeline → outputs (the upstream, `[[sink]]`s, the
//! dashboard, Home Assistant), and an orderly stop.
//!
//! Stop order matters for "no accepted reading is lost": adapters stop
//! first; when the last one is gone the ingress channel closes and the
//! pipeline forwards its open windows; when the pipeline is done the
//! outputs' channels close and each delivers or stores what is queued (the
//! forwarder then publishes `offline` and disconnects).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use adapters::{AdapterConfig, BuildContext};
use aggregator::{Aggregator, WindowSpec};
use anyhow::Context as _;
use gateway_core::command::{CommandTargets, WritablePoint};
use gateway_core::component::{Ingress, IngressSender, Sources};
use gateway_core::config::AdapterSpec;
use gateway_core::event::SinkEvent;
use gateway_core::{AdapterContext, Clock, DeviceRegistry, Telemetry};
use sinks::mqtt_upstream::{self, UpstreamSettings};
use sinks::registry::SinkContext;
use sinks::OutputLink;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use dashboard::{Dashboard, DashboardSetup};
use pipeline::durability::Durability;
use pipeline::fanout::{flush_all, Output, SinkFanout, SINK_QUEUE};
use pipeline::Pipeline;
use rules::actions::{run_actions, ACTION_QUEUE};
use rules::alerts::Alerts;

/// `1` while an adapter's task runs, `0` once it has stopped.
pub const ADAPTER_UP: &str = "edge_gateway_adapter_up";
/// `1` when `[upstream]` is on, `0` when the gateway has no cloud broker
/// (then `/health` does not wait for one).
pub const UPSTREAM_CONFIGURED: &str = "edge_gateway_upstream_configured";
use crate::command_runner;
use crate::settings::GatewayConfig;

/// Messages waiting for the pipeline: enough to ride out a window close
/// (milliseconds) at full rate. Not more: whatever waits here is held in
/// allocator arenas that glibc keeps after the burst, and with 4096 the RSS
/// of 10 000 devices x 5 metrics ended over 15 MB in 4 runs of 12 (1 of 12
/// with 1024, median 14.7 -> 13.3 MB). Sources that can wait (MQTT brokers,
/// socket buffers) hold the rest.
const INGRESS_CAPACITY: usize = 1024;

/// A running gateway.
pub struct Gateway {
    pub telemetry: Telemetry,
    adapters_stop: CancellationToken,
    adapters: Vec<RunningAdapter>,
    /// Kept for adapters started by a reload; dropped at stop so the
    /// pipeline sees the ingress close once the last adapter is gone.
    ingress: Option<mpsc::Sender<Ingress>>,
    /// Which adapter each reading came from, by the id its sender stamps.
    sources: Sources,
    clock: Arc<dyn Clock>,
    /// The config running now: adapters as reloaded, other sections as started.
    config: GatewayConfig,
    pipeline: JoinHandle<()>,
    actions: Option<JoinHandle<()>>,
    /// The outputs' tasks (the upstream first): they end once the pipeline
    /// is done and they have written (or stored) what it gave them.
    outputs: Vec<RunningOutput>,
    /// `[dashboard]`, when enabled (its writer is one of the outputs).
    dashboard: Option<Dashboard>,
    /// The adapters' write sides, by adapter name.
    command_targets: CommandTargets,
    /// Their writable points, told to Home Assistant's controls once the
    /// adapters are started and after each reload.
    writable: watch::Sender<Option<Vec<WritablePoint>>>,
    /// `[commands]`' listener, when enabled: stopped before the adapters.
    commands: Option<(CancellationToken, JoinHandle<()>)>,
}

/// An output's task, whatever it returns.
type OutputTask = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One output the pipeline feeds, as started.
struct StartedOutput {
    /// How the pipeline's fanout reaches it.
    output: Output,
    /// Its side of the flush handshake; `None` for one that keeps nothing
    /// a checkpoint relies on (Home Assistant).
    flush: Option<mpsc::Sender<oneshot::Sender<bool>>>,
    /// `None` for the dashboard's writer, stopped with its server.
    task: Option<OutputTask>,
}

struct RunningOutput {
    name: String,
    /// Its failure is the gateway's (the upstream's).
    required: bool,
    task: OutputTask,
}

/// One adapter task and what it was started from.
struct RunningAdapter {
    config: AdapterConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    /// Sections whose changes need a restart (they own open windows, the
    /// outbox or a listening socket); the running values are kept.
    pub need_restart: Vec<&'static str>,
}

/// `[[device]]`, then devices named by protocol sections (`[[lorawan.device]]
/// name`) that `[[device]]` does not describe.
fn registry_devices(config: &GatewayConfig) -> Vec<gateway_core::config::DeviceConfig> {
    let mut out = config.devices.clone();
    for d in config.sections.registry_devices() {
        if !out.iter().any(|o| o.id == d.id) {
            out.push(d);
        }
    }
    out
}

/// The alert rules and, when a rule has an action, the action runner.
/// Their learned state lives in `state_dir`; without a usable one they
/// still run, starting afresh at each start.
fn start_alerts(
    config: &GatewayConfig,
    telemetry: &Telemetry,
) -> (Option<Alerts>, Option<JoinHandle<()>>) {
    if config.rules.is_empty() {
        return (None, None);
    }
    let dir = &config.gateway.state_dir;
    let state_dir = match std::fs::create_dir_all(dir) {
        Ok(()) => Some(dir.as_path()),
        Err(e) => {
            error!(state_dir = %dir.display(), error = %e, "Cannot use the state directory: the anomaly detectors will relearn after a restart.");
            None
        }
    };
    let (tx, task) = if config.rules.iter().any(|r| r.action.is_some()) {
        let (tx, rx) = mpsc::channel(ACTION_QUEUE);
        let task = tokio::spawn(run_actions(
            config.gateway.id.clone(),
            rx,
            telemetry.clone(),
        ));
        (Some(tx), Some(task))
    } else {
        (None, None)
    };
    info!(rules = config.rules.len(), "Alert rules loaded.");
    let alerts = Alerts::new(&config.rules, &config.devices, state_dir, tx, telemetry);
    (Some(alerts), task)
}

/// An output's channels: its side (`link`) and the pipeline's senders.
struct OutputChannels {
    link: OutputLink<SinkEvent>,
    events: mpsc::Sender<SinkEvent>,
    /// With an urgent lane: its sender.
    urgent: Option<mpsc::Sender<SinkEvent>>,
    flush: mpsc::Sender<oneshot::Sender<bool>>,
}

fn output_channels(urgent: bool) -> OutputChannels {
    let (events, rx) = mpsc::channel(SINK_QUEUE);
    let (urgent, urgent_rx) = if urgent {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (flush, flush_rx) = mpsc::channel(1);
    OutputChannels {
        link: OutputLink {
            messages: rx,
            urgent: urgent_rx,
            flush: Some(flush_rx),
        },
        events,
        urgent,
        flush,
    }
}

/// The upstream (`[upstream]`): its feed renders the events for the
/// forwarder, whose outbox is in `state_dir/outbox`.
/// Also returns its urgent lane's sender, for the command results.
fn start_upstream(
    settings: UpstreamSettings,
    ctx: &SinkContext,
) -> (StartedOutput, Option<mpsc::Sender<SinkEvent>>) {
    let channels = output_channels(true);
    let results = channels.urgent.clone();
    let task = mqtt_upstream::start(settings, ctx, channels.link);
    let started = StartedOutput {
        output: Output::upstream(channels.events, channels.urgent),
        flush: Some(channels.flush),
        task: Some(Box::pin(async move {
            task.await
                .context("upstream task")?
                .context("upstream forwarder")
        })),
    };
    (started, results)
}

/// Starts every `[[sink]]`, each with its own outbox below `state_dir`.
fn start_sinks(config: &GatewayConfig, ctx: &SinkContext) -> anyhow::Result<Vec<StartedOutput>> {
    let mut started = Vec::new();
    for sink in &config.sinks {
        let name = gateway_core::config::SinkSpec::name(sink).to_string();
        let channels = output_channels(false);
        info!(output = %name, kind = sink.kind(), "Starting sink.");
        let task = sink.start(ctx, channels.link)?;
        started.push(StartedOutput {
            output: Output::sink(name, channels.events),
            flush: Some(channels.flush),
            task: Some(Box::pin(async move { task.await.context("sink task") })),
        });
    }
    Ok(started)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Gateway {
    /// Starts every component of `config`.
    ///
    /// # Errors
    /// A component that cannot be configured (e.g. a missing password
    /// variable); network faults are retried, not errors.
    pub fn start(config: &GatewayConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let telemetry = Telemetry::default();
        // Without an upstream nothing of it is built: no connection, no
        // outbox under state_dir.
        let settings = if config.upstream.enabled {
            let settings = UpstreamSettings::from_config(
                &config.upstream,
                &config.outbox,
                &config.gateway.id,
                &config.gateway.state_dir,
                config.topic_prefix(),
            );
            // Fail at start, not in a background task, on a setup mistake.
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
        let upstream_connection = settings.as_ref().map(|s| s.connection.clone());

        let agg = &config.aggregation;
        let aggregator = Aggregator::new(WindowSpec {
            window_ms: ms(agg.window),
            grace_ms: ms(agg.grace),
            max_future_ms: ms(agg.max_future),
        })
        .context("aggregation settings")?;
        let mut aggregator = aggregator.with_max_series(agg.max_series);
        let durability = Durability::open(
            &config.gateway.state_dir,
            config.aggregation.checkpoint_interval,
            &mut aggregator,
            &telemetry,
        );

        // Before the outputs: they find a reading's adapter (its `units`) in it.
        let sources = Sources::with_kinds(adapters::KINDS);
        let ctx = SinkContext {
            gateway_id: config.gateway.id.clone(),
            state_dir: config.gateway.state_dir.clone(),
            registry: DeviceRegistry::from_config(&registry_devices(config)),
            units: config.units(sources.clone()),
            telemetry: telemetry.clone(),
        };
        // The upstream first: the flush handshake asks it before the rest.
        let mut outputs: Vec<StartedOutput> = Vec::new();
        // Where command results go: the upstream's urgent lane, the dashboard.
        let mut results: Vec<mpsc::Sender<SinkEvent>> = Vec::new();
        if let Some(settings) = settings {
            let (started, urgent) = start_upstream(settings, &ctx);
            outputs.push(started);
            results.extend(urgent);
        }
        outputs.extend(start_sinks(config, &ctx)?);
        let dashboard = if config.dashboard.enabled {
            let (d, events, flush) = dashboard::start(DashboardSetup {
                sources: sources.clone(),
                units: config.units(sources.clone()),
                config: &config.dashboard,
                state_dir: &config.gateway.state_dir,
                registry: ctx.registry.clone(),
                rules: config.rules.clone(),
                window_ms: ms(agg.window),
                outputs: config
                    .sinks
                    .iter()
                    .map(|s| gateway_core::config::SinkSpec::name(s).to_string())
                    .collect(),
                telemetry: telemetry.clone(),
                clock: clock.clone(),
                health: crate::health::for_dashboard(),
                queue: SINK_QUEUE,
            })
            .context("dashboard")?;
            // Command results are shown on the device pages.
            results.extend(config.commands_run().then(|| events.clone()));
            outputs.push(StartedOutput {
                output: Output::sink("dashboard", events),
                flush: Some(flush),
                task: None,
            });
            Some(d)
        } else {
            None
        };
        let command_targets = CommandTargets::default();
        let (writable, writable_rx) = watch::channel(None);
        let (requests, requests_rx) = command_runner::requests(config);
        if config.home_assistant.enabled {
            let (task, events) = sinks::home_assistant::start(sinks::home_assistant::HaSetup {
                config: config.home_assistant.clone(),
                gateway_id: config.gateway.id.clone(),
                state_dir: config.gateway.state_dir.clone(),
                registry: ctx.registry.clone(),
                units: config.units(sources.clone()),
                sources: sources.clone(),
                telemetry: telemetry.clone(),
                sw_version: env!("CARGO_PKG_VERSION").to_string(),
                clock: clock.clone(),
                commands: requests.map(|requests| sinks::home_assistant::HaCommands {
                    writable: writable_rx,
                    requests,
                }),
            })
            .context("home_assistant")?;
            outputs.push(StartedOutput {
                output: Output::sink("home_assistant", events),
                flush: None,
                task: Some(Box::pin(async move { task.await.context("sink task") })),
            });
        }
        // The pipeline asks once; every durable output must answer yes.
        let (pipeline_flush, pipeline_flush_rx) = mpsc::channel(1);
        let mut feeds = Vec::with_capacity(outputs.len());
        let mut flushes = Vec::new();
        let mut running = Vec::new();
        for started in outputs {
            if let Some(task) = started.task {
                running.push(RunningOutput {
                    name: started.output.name.clone(),
                    required: started.output.required,
                    task,
                });
            }
            flushes.extend(started.flush);
            feeds.push(started.output);
        }
        tokio::spawn(flush_all(pipeline_flush_rx, flushes));

        let (alerts, actions) = start_alerts(config, &telemetry);
        let (in_tx, in_rx) = mpsc::channel(INGRESS_CAPACITY);
        let pipeline = Pipeline {
            aggregator,
            clock: clock.clone(),
            telemetry: telemetry.clone(),
            durability,
            outbox_flush: Some(pipeline_flush),
            alerts,
            outputs: SinkFanout::new(feeds),
        };
        let pipeline = tokio::spawn(pipeline.run(in_rx));

        let commands = command_runner::start(
            config,
            command_runner::Ways {
                upstream: upstream_connection,
                requests: requests_rx,
                targets: command_targets.clone(),
                results,
            },
            clock.clone(),
            telemetry.clone(),
        )?;
        let mut gateway = Self {
            command_targets,
            writable,
            commands,
            telemetry,
            adapters_stop: CancellationToken::new(),
            adapters: Vec::new(),
            ingress: Some(in_tx),
            sources,
            clock,
            config: config.clone(),
            pipeline,
            actions,
            outputs: running,
            dashboard,
        };
        for a in &config.adapters {
            let running = gateway.spawn_adapter(a);
            gateway.adapters.push(running);
        }
        gateway.tell_writable();
        Ok(gateway)
    }

    /// Tells Home Assistant's controls what the running adapters write.
    fn tell_writable(&self) {
        if self.commands.is_some() {
            self.writable
                .send_replace(Some(self.command_targets.writable()));
        }
    }

    /// Where the dashboard serves its pages, when it does.
    pub fn dashboard_addr(&self) -> Option<std::net::SocketAddr> {
        self.dashboard.as_ref().and_then(Dashboard::addr)
    }

    fn spawn_adapter(&self, config: &AdapterConfig) -> RunningAdapter {
        let stop = self.adapters_stop.child_token();
        let name = config.name().to_string();
        let ingress = match &self.ingress {
            Some(tx) => tx.clone(),
            // Only reachable after stop(), which consumes self.
            None => mpsc::channel(1).0,
        };
        let ingress = IngressSender::new(ingress, self.sources.register(&name, config.kind()))
            .with_models(self.sources.clone());
        let ctx = AdapterContext {
            name: name.clone(),
            ingress,
            shutdown: stop.clone(),
            telemetry: self.telemetry.clone(),
            clock: self.clock.clone(),
        };
        let mut adapter = config.build(&BuildContext {
            gateway_id: self.config.gateway.id.clone(),
            state_dir: self.config.gateway.state_dir.clone(),
            sections: self.config.sections.clone(),
            registered: self
                .config
                .devices
                .iter()
                .map(|d| d.id.to_string())
                .collect(),
            writable: self
                .config
                .devices
                .iter()
                .filter(|d| !d.writable.is_empty())
                .map(|d| {
                    let metrics = d.writable.iter().map(|m| m.as_str().to_string());
                    (d.id.to_string(), metrics.collect())
                })
                .collect(),
        });
        // Only when commands are on: otherwise no adapter opens a write side.
        if self.commands.is_some() {
            match adapter.command_target() {
                Some(target) => self.command_targets.register(&name, target),
                None => self.command_targets.remove(&name),
            }
        }
        info!(adapter = %name, kind = config.kind(), "Starting adapter.");
        // `/health` reads this: an adapter whose task ended is down.
        let up = self.telemetry.gauge(ADAPTER_UP, &[("adapter", &name)]);
        up.set(1.0);
        let task = tokio::spawn(async move {
            if let Err(e) = adapter.run(ctx).await {
                error!(adapter = %name, error = %e, "Adapter stopped with an error.");
            }
            up.set(0.0);
        });
        RunningAdapter {
            config: config.clone(),
            stop,
            task,
        }
    }

    /// Applies a new, already validated config: adapters that were added,
    /// removed or changed are started, stopped or restarted; the others,
    /// the open windows and the outbox are untouched.
    pub async fn reload(&mut self, new: GatewayConfig) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let old = &self.config;
        for (section, changed) in [
            ("gateway", old.gateway != new.gateway),
            ("upstream", old.upstream != new.upstream),
            ("aggregation", old.aggregation != new.aggregation),
            ("outbox", old.outbox != new.outbox),
            ("log", old.log != new.log),
            ("metrics", old.metrics != new.metrics),
            ("device", old.devices != new.devices),
            ("rule", old.rules != new.rules),
            ("lorawan", old.sections != new.sections),
            ("sink", old.sinks != new.sinks),
            ("dashboard", old.dashboard != new.dashboard),
            // The pages, sinks and alerts were given their units at start.
            (
                "units",
                old.units != new.units || old.adapter_units != new.adapter_units,
            ),
            ("home_assistant", old.home_assistant != new.home_assistant),
            ("commands", old.commands != new.commands),
        ] {
            if changed {
                summary.need_restart.push(section);
            }
        }
        let mut keep = Vec::new();
        for running in std::mem::take(&mut self.adapters) {
            let name = running.config.name().to_string();
            match new.adapters.iter().find(|a| a.name() == name) {
                Some(a) if *a == running.config => keep.push(running),
                Some(_) => {
                    stop_adapter(running).await;
                    summary.restarted.push(name);
                }
                None => {
                    stop_adapter(running).await;
                    self.command_targets.remove(&name);
                    // A removed adapter must not keep `/health` at 503.
                    self.telemetry
                        .remove_gauge(ADAPTER_UP, &[("adapter", &name)]);
                    self.telemetry.remove_gauge(
                        gateway_core::component::ADAPTER_CONNECTED,
                        &[("adapter", &name)],
                    );
                    summary.stopped.push(name);
                }
            }
        }
        self.adapters = keep;
        for a in &new.adapters {
            if self.adapters.iter().any(|r| r.config.name() == a.name()) {
                continue;
            }
            if !summary.restarted.iter().any(|n| n == a.name()) {
                summary.started.push(a.name().to_string());
            }
            let running = self.spawn_adapter(a);
            self.adapters.push(running);
        }
        // Keep the config order, so logs and stop order stay predictable.
        self.adapters.sort_by_key(|r| {
            new.adapters
                .iter()
                .position(|a| a.name() == r.config.name())
        });
        self.config.adapters = new.adapters;
        self.tell_writable();
        summary
    }

    /// Stops in order and waits until everything accepted was forwarded or
    /// the forwarder gave up after its drain timeout.
    ///
    /// # Errors
    /// A component that failed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // No command may start a write once the adapters are stopping; the
        // one running ends first.
        if let Some((stop, task)) = self.commands.take() {
            stop.cancel();
            if let Err(e) = task.await {
                error!(error = %e, "Command listener failed.");
            }
        }
        self.adapters_stop.cancel();
        drop(self.ingress.take());
        for running in self.adapters {
            let name = running.config.name().to_string();
            if let Err(e) = running.task.await {
                error!(adapter = %name, error = %e, "Adapter task failed.");
            }
        }
        self.pipeline.await.context("pipeline task")?;
        // The pipeline held the only sender: the runner finishes what is
        // queued and ends.
        if let Some(actions) = self.actions {
            actions.await.context("actions task")?;
        }
        let mut failed = Ok(());
        for output in self.outputs {
            match output.task.await {
                Ok(()) => {}
                Err(e) if output.required => failed = failed.and(Err(e)),
                Err(e) => {
                    error!(output = %output.name, error = %format!("{e:#}"), "Sink task failed.")
                }
            }
        }
        if let Some(d) = self.dashboard {
            d.stop().await;
        }
        failed
    }
}

/// Stops one adapter and waits for it (its socket or broker session must be
/// released before a successor takes the same port or client id).
async fn stop_adapter(running: RunningAdapter) {
    let name = running.config.name().to_string();
    running.stop.cancel();
    if let Err(e) = running.task.await {
        error!(adapter = %name, error = %e, "Adapter task failed.");
    }
}
