//! Wiring: adapters → pipeline → outputs (the upstream, `[[sink]]`s, the
//! dashboard, Home Assistant), and an orderly stop.
//!
//! Stop order matters for "no accepted reading is lost": adapters stop
//! first; when the last one is gone the ingress channel closes and the
//! pipeline forwards its open windows; when the pipeline is done the
//! outputs' channels close and each delivers or stores what is queued (the
//! forwarder then publishes `offline` and disconnects).

use std::sync::Arc;
use std::time::Duration;

use adapters::{AdapterConfig, BuildContext};
use aggregator::{Aggregator, WindowSpec};
use anyhow::Context as _;
use gateway_core::command::{CommandTargets, WritablePoint};
use gateway_core::component::{
    Ingress, IngressSender, Sources, ADAPTER_CONNECTED, ADAPTER_LISTENING,
};
use gateway_core::config::action::action_points;
use gateway_core::config::AdapterSpec;
use gateway_core::output::OutputTask;
use gateway_core::{AdapterContext, Clock, Telemetry};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use dashboard::Dashboard;
use pipeline::durability::Durability;
use pipeline::fanout::{flush_all, SinkFanout};
use pipeline::Pipeline;
use rules::alerts::Alerts;

/// `1` while an adapter's task runs, `0` once it has stopped.
pub const ADAPTER_UP: &str = "edge_gateway_adapter_up";
/// `1` when `[upstream]` is on, `0` when the gateway has no cloud broker
/// (then `/health` does not wait for one).
pub const UPSTREAM_CONFIGURED: &str = "edge_gateway_upstream_configured";
use crate::command_runner;
use crate::settings::GatewayConfig;
use outputs::{start_outputs, upstream_settings, Outputs, OutputsSetup};

mod outputs;
mod reload;

pub use reload::ReloadSummary;

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
    /// The writers of the actuators rule actions name by topic or URI:
    /// stopped once the command runner is.
    actuators: (CancellationToken, Vec<JoinHandle<()>>),
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
    /// The upstream's urgent lane (`[remote_config]` reports through it).
    upstream_urgent: Option<mpsc::Sender<gateway_core::event::SinkEvent>>,
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

impl Gateway {
    /// Starts every component of `config`.
    ///
    /// # Errors
    /// A component that cannot be configured (e.g. a missing password
    /// variable); network faults are retried, not errors.
    pub fn start(config: &GatewayConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let telemetry = Telemetry::default();
        // Readings flow adapters → pipeline → outputs; each part starts
        // once what it feeds runs: outputs, then the pipeline, then the
        // adapters.
        let upstream = upstream_settings(config, &telemetry)?;
        let upstream_connection = upstream.as_ref().map(|s| s.connection.clone());
        let (aggregator, durability) = aggregation(config, &telemetry)?;
        // Before the outputs: they find a reading's adapter (its `units`) in it.
        let sources = Sources::with_kinds(adapters::KINDS);
        let command_targets = CommandTargets::default();
        let (writable, writable_rx) = watch::channel(None);
        let (requests, requests_rx) = command_runner::requests(config);
        let declared: Vec<_> = config.devices.iter().map(|d| d.id.clone()).collect();
        let points = action_points(&config.rules, &declared);
        let outputs = start_outputs(
            config,
            upstream,
            &OutputsSetup {
                sources: &sources,
                telemetry: &telemetry,
                clock: &clock,
            },
            command_runner::Makers {
                home_assistant: requests
                    .clone()
                    .filter(|_| config.home_assistant_commands())
                    .map(|requests| sinks::home_assistant::HaCommands {
                        writable: writable_rx,
                        requests,
                    }),
                actions: requests.filter(|_| config.rule_actions()).map(|requests| {
                    rules::actions::ActionsOutput {
                        rules: config.rules.clone(),
                        points: points.clone(),
                        requests,
                    }
                }),
            },
        )?;
        let Outputs {
            feeds,
            flushes,
            running,
            results,
            dashboard,
            actions,
            upstream_urgent,
            results_stored,
        } = outputs;
        let pipeline = start_pipeline(
            config,
            aggregator,
            durability,
            SinkFanout::new(feeds),
            flushes,
            actions,
            &clock,
            &telemetry,
        );
        let actuators_stop = CancellationToken::new();
        let actuators = if requests_rx.is_some() {
            adapters::actuators::Actuators::start(
                &points.implicit,
                &config.gateway.id,
                &actuators_stop,
            )
        } else {
            adapters::actuators::Actuators::default()
        };
        let commands = command_runner::start(
            config,
            command_runner::Ways {
                upstream: upstream_connection,
                requests: requests_rx,
                targets: command_targets.clone(),
                actuators: actuators.targets,
                results,
                results_stored,
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
            ingress: Some(pipeline.ingress),
            sources,
            clock,
            config: config.clone(),
            pipeline: pipeline.task,
            actuators: (actuators_stop, actuators.tasks),
            outputs: running,
            dashboard,
            upstream_urgent,
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

    /// Where messages for the upstream's outbox go ahead of the windows
    /// (the configuration's reported state); `None` without an upstream.
    pub fn upstream_urgent(&self) -> Option<mpsc::Sender<gateway_core::event::SinkEvent>> {
        self.upstream_urgent.clone()
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
        let up = mark_starting(
            &self.telemetry,
            &name,
            adapter.serves_a_port(),
            adapter.holds_a_link(),
        );
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
        let (actuators_stop, actuators) = self.actuators;
        actuators_stop.cancel();
        for writer in actuators {
            if let Err(e) = writer.await {
                error!(error = %e, "An actuator's writer failed.");
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
        let mut failed = Ok(());
        for output in self.outputs {
            let name = output.name.clone();
            let done = output
                .task
                .await
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| format!("{name} task"));
            match done {
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

/// Marks adapter `name` running for `/health`, with what it must still do
/// before it counts: bind its port, or bring up its link. Set before its
/// task starts: set by the task, `/health` said 200 in between, and an
/// orchestrator (or a test) that sent a reading then lost it to a broker
/// subscription not yet made.
fn mark_starting(
    telemetry: &Telemetry,
    name: &str,
    serves_a_port: bool,
    holds_a_link: bool,
) -> gateway_core::telemetry::Gauge {
    let adapter = &[("adapter", name)];
    // `/health` reads this: an adapter whose task ended is down.
    let up = telemetry.gauge(ADAPTER_UP, adapter);
    if serves_a_port {
        telemetry.gauge(ADAPTER_LISTENING, adapter).set(0.0);
    } else {
        telemetry.remove_gauge(ADAPTER_LISTENING, adapter);
    }
    if holds_a_link {
        telemetry.gauge(ADAPTER_CONNECTED, adapter).set(0.0);
    }
    up.set(1.0);
    up
}

/// Forgets the gauges `/health` reads of a removed adapter: left behind,
/// they kept `/health` at 503 and `/metrics` said what its link was.
fn forget_adapter_state(telemetry: &Telemetry, name: &str) {
    let adapter = &[("adapter", name)];
    telemetry.remove_gauge(ADAPTER_UP, adapter);
    telemetry.remove_gauge(ADAPTER_CONNECTED, adapter);
    telemetry.remove_gauge(ADAPTER_LISTENING, adapter);
    let link = gateway_core::component::ADAPTER_LINK;
    for (labels, _) in telemetry.gauges(link) {
        if labels.iter().any(|(k, v)| k == "adapter" && v == name) {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            telemetry.remove_gauge(link, &labels);
        }
    }
}

/// Stops adapters and waits for them (a socket or broker session must be
/// released before a successor takes the same port or client id). All are
/// told at once: an MQTT adapter waits up to its close bound for the
/// broker to read its last acknowledgements, and one after the other a
/// reload of eight such adapters took eight times that.
async fn stop_adapters(leaving: Vec<RunningAdapter>) {
    for running in &leaving {
        running.stop.cancel();
    }
    for running in leaving {
        if let Err(e) = running.task.await {
            error!(adapter = %running.config.name(), error = %e, "Adapter task failed.");
        }
    }
}

// The pipeline: windows, alerts, the ingress journal and checkpoints.

/// The running pipeline and the ingress the adapters send to.
struct StartedPipeline {
    task: JoinHandle<()>,
    ingress: mpsc::Sender<Ingress>,
}

/// The aggregator, restored from the last checkpoint when there is one.
fn aggregation(
    config: &GatewayConfig,
    telemetry: &Telemetry,
) -> anyhow::Result<(Aggregator, Durability)> {
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
        telemetry,
    );
    Ok((aggregator, durability))
}

/// Starts the pipeline feeding `outputs`, and the alerts whose actions
/// are to run to `actions` (the actions output's link).
#[allow(clippy::too_many_arguments)]
fn start_pipeline(
    config: &GatewayConfig,
    aggregator: Aggregator,
    durability: Durability,
    outputs: SinkFanout,
    flushes: Vec<mpsc::Sender<oneshot::Sender<bool>>>,
    actions: Option<mpsc::Sender<gateway_core::event::SinkEvent>>,
    clock: &Arc<dyn Clock>,
    telemetry: &Telemetry,
) -> StartedPipeline {
    // The pipeline asks once; every durable output must answer yes.
    let (pipeline_flush, pipeline_flush_rx) = mpsc::channel(1);
    tokio::spawn(flush_all(pipeline_flush_rx, flushes));
    let alerts = start_alerts(config, actions, telemetry);
    let (in_tx, in_rx) = mpsc::channel(INGRESS_CAPACITY);
    let pipeline = Pipeline {
        aggregator,
        clock: clock.clone(),
        telemetry: telemetry.clone(),
        durability,
        outbox_flush: Some(pipeline_flush),
        alerts,
        outputs,
    };
    let task = tokio::spawn(pipeline.run(in_rx));
    StartedPipeline {
        task,
        ingress: in_tx,
    }
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

/// The alert rules, handing the alerts whose actions are to run to
/// `actions`. Their learned state lives in `state_dir`; without a usable
/// one they still run, starting afresh at each start.
fn start_alerts(
    config: &GatewayConfig,
    actions: Option<mpsc::Sender<gateway_core::event::SinkEvent>>,
    telemetry: &Telemetry,
) -> Option<Alerts> {
    if config.rules.is_empty() {
        return None;
    }
    let dir = &config.gateway.state_dir;
    let state_dir = match std::fs::create_dir_all(dir) {
        Ok(()) => Some(dir.as_path()),
        Err(e) => {
            error!(state_dir = %dir.display(), error = %e, "Cannot use the state directory: the anomaly detectors will relearn after a restart.");
            None
        }
    };
    // `validate` refused an unknown zone before the gateway started.
    let zone = config.gateway.zone().unwrap_or_else(|e| {
        warn!(error = %e, "Alert rules follow UTC's clocks.");
        gateway_core::clock::Zone::utc()
    });
    info!(
        rules = config.rules.len(),
        timezone = zone.name(),
        "Alert rules loaded."
    );
    let alerts = Alerts::new(
        &config.rules,
        &config.devices,
        zone,
        state_dir,
        actions,
        telemetry,
    );
    Some(alerts)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_that_holds_a_link_is_connecting_from_before_its_task_starts() {
        let t = Telemetry::default();
        mark_starting(&t, "rooms", false, true);
        mark_starting(&t, "lines", true, false);
        mark_starting(&t, "coap-ish", false, false);
        let h = crate::health::check(&t);
        assert!(!h.healthy, "{}", h.body);
        assert_eq!(h.body["adapters"]["rooms"], "connecting", "{}", h.body);
        assert_eq!(h.body["adapters"]["coap-ish"], "running", "{}", h.body);
        // The tasks then say their link is up and their port bound.
        t.gauge(ADAPTER_CONNECTED, &[("adapter", "rooms")]).set(1.0);
        t.gauge(ADAPTER_LISTENING, &[("adapter", "lines")]).set(1.0);
        let h = crate::health::check(&t);
        assert_eq!(h.body["adapters"]["rooms"], "running", "{}", h.body);
        assert_eq!(h.body["adapters"]["lines"], "running", "{}", h.body);
    }

    /// Each adapter whose task reports its link to `/health` holds it from
    /// before the task runs: otherwise `/health` says 200 while its
    /// subscription, bus, tunnel or scan is not up yet, and what a device
    /// sends then is lost. Those that take nothing over a link do not.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn every_adapter_that_reports_a_link_holds_it_from_before_its_task_runs() {
        let text = r#"
[gateway]
id = "gw"
state_dir = "/nonexistent/edge-gateway-test"

[[adapter]]
type = "mqtt"
name = "rooms"
url = "mqtt://127.0.0.1:1"
topics = ["rooms/{device}"]

[[adapter]]
type = "serial_line"
name = "relay"
path = "/dev/ttyUSB0"
format = "csv"
columns = ["mac", "temperature"]

[[adapter]]
type = "modbus"
name = "meters"
url = "tcp://127.0.0.1:1"

[[adapter]]
type = "modbus"
name = "rs485"
path = "/dev/ttyUSB1"

[[adapter]]
type = "knx"
name = "bus"
url = "udp://127.0.0.1:1"

[[adapter]]
type = "ble"
name = "radio"

[[adapter]]
type = "ble"
name = "capture"
source = "replay"
replay_file = "c.jsonl"

[[adapter]]
type = "coap"
name = "coap"
bind = "127.0.0.1:0"

[[adapter]]
type = "tcp_line"
name = "lines"
bind = "127.0.0.1:0"
format = "csv"
columns = ["device", "temperature"]
"#;
        let config = crate::settings::parse(text).unwrap();
        let context = BuildContext {
            gateway_id: config.gateway.id.clone(),
            state_dir: config.gateway.state_dir.clone(),
            sections: config.sections.clone(),
            registered: Vec::new(),
            writable: Vec::new(),
        };
        let holding: Vec<(&str, bool)> = config
            .adapters
            .iter()
            .map(|a| (a.name(), a.build(&context).holds_a_link()))
            .collect();
        assert_eq!(
            holding,
            [
                ("rooms", true),
                ("relay", true),
                ("meters", true),
                ("rs485", true),
                ("bus", true),
                ("radio", true),
                ("capture", false),
                ("coap", false),
                ("lines", false),
            ]
        );
    }
}
