//! Wiring: adapters → pipeline → upstream, and an orderly stop.
//!
//! Stop order matters for "no accepted reading is lost": adapters stop
//! first; when the last one is gone the ingress channel closes and the
//! pipeline forwards its open windows; when the pipeline is done the
//! upstream channel closes and the forwarder delivers what is queued, then
//! publishes `offline` and disconnects.

use std::sync::Arc;
use std::time::Duration;

use adapters::mqtt::connect::ConnectionSettings;
use adapters::mqtt::upstream::{run_upstream, UpstreamSettings};
use adapters::BuildContext;
use aggregator::{Aggregator, WindowSpec};
use anyhow::Context as _;
use gateway_core::config::AdapterSpec;
use gateway_core::outbox::OutboxSettings;
use gateway_core::{AdapterContext, Clock, DeviceRegistry, Telemetry};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::checkpoint::Checkpoint;
use crate::messages::Renderer;
use crate::pipeline::Pipeline;
use crate::settings::GatewayConfig;

/// Readings waiting for the pipeline. Large enough to absorb a burst of a
/// few thousand sensors, small enough to bound memory.
const INGRESS_CAPACITY: usize = 4096;
/// Rendered messages waiting for the forwarder's queue.
const UPSTREAM_CAPACITY: usize = 1024;

/// A running gateway.
pub struct Gateway {
    pub telemetry: Telemetry,
    adapters_stop: CancellationToken,
    adapters: Vec<(String, JoinHandle<()>)>,
    pipeline: JoinHandle<()>,
    upstream: JoinHandle<anyhow::Result<()>>,
}

/// Restores the open windows of the last run; `None` when checkpoints are
/// off or the state directory cannot be used (then windows are forwarded
/// early at shutdown, as without checkpoints).
fn open_checkpoint(
    config: &GatewayConfig,
    aggregator: &mut Aggregator,
    telemetry: &Telemetry,
) -> Option<(Checkpoint, Duration)> {
    let every = config.aggregation.checkpoint_interval;
    if every.is_zero() {
        return None;
    }
    let dir = &config.gateway.state_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        error!(state_dir = %dir.display(), error = %e, "Cannot use the state directory: open windows will not survive a restart.");
        return None;
    }
    let checkpoint = Checkpoint::in_dir(dir);
    match checkpoint.load() {
        Ok(Some(snapshot)) => {
            aggregator.restore(&snapshot);
            info!(
                open = snapshot.open.len(),
                "Restored the open windows of the last run."
            );
        }
        Ok(None) => {}
        Err(e) => {
            telemetry
                .counter("edge_gateway_checkpoint_failures_total", &[])
                .inc();
            error!(error = %e, "Open windows of the last run are lost: their checkpoint is unreadable; it is kept aside.");
            checkpoint.quarantine();
        }
    }
    Some((checkpoint, every))
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
        let renderer = Renderer {
            gateway_id: config.gateway.id.clone(),
            prefix: config.topic_prefix(),
            registry: DeviceRegistry::from_config(&config.devices),
        };
        let up = &config.upstream;
        let client_id = if up.client_id.is_empty() {
            format!("edge-gateway-{}", config.gateway.id)
        } else {
            up.client_id.clone()
        };
        let settings = UpstreamSettings {
            connection: ConnectionSettings {
                url: up.url.clone(),
                client_id,
                username: up.username.clone(),
                password_env: up.password_env.clone(),
                ca_file: up.ca_file.clone(),
                client_cert: up.client_cert.clone(),
                client_key: up.client_key.clone(),
                keep_alive: up.keep_alive,
                max_packet_bytes: 1024 * 1024,
                // Every message is resent from the outbox on each connection;
                // a broker-side session would only add stale duplicates.
                persistent_session: false,
            },
            qos: up.qos,
            status_topic: renderer.status_topic(),
            outbox_dir: Some(config.gateway.state_dir.join("outbox")),
            outbox: OutboxSettings {
                max_bytes: config.outbox.max_bytes,
                policy: config.outbox.policy,
                max_age: (!config.outbox.max_age.is_zero()).then_some(config.outbox.max_age),
            },
            drain_rate: config.outbox.drain_rate,
            max_queued: up.max_queued,
            max_inflight: up.max_inflight,
            max_backoff: up.max_backoff,
            drain_timeout: Duration::from_secs(5),
        };
        // Fail at start, not in a background task, on a setup mistake.
        settings
            .connection
            .mqtt_options(None)
            .context("upstream connection")?;

        let agg = &config.aggregation;
        let aggregator = Aggregator::new(WindowSpec {
            window_ms: ms(agg.window),
            grace_ms: ms(agg.grace),
            max_future_ms: ms(agg.max_future),
        })
        .context("aggregation settings")?;
        let mut aggregator = aggregator;
        let checkpoint = open_checkpoint(config, &mut aggregator, &telemetry);

        let (out_tx, out_rx) = mpsc::channel(UPSTREAM_CAPACITY);
        let upstream = {
            let telemetry = telemetry.clone();
            tokio::spawn(async move {
                run_upstream(settings, out_rx, telemetry)
                    .await
                    .context("upstream forwarder")
            })
        };

        let (in_tx, in_rx) = mpsc::channel(INGRESS_CAPACITY);
        let pipeline = Pipeline {
            aggregator,
            renderer,
            clock: clock.clone(),
            telemetry: telemetry.clone(),
            checkpoint,
        };
        let pipeline = tokio::spawn(pipeline.run(in_rx, out_tx));

        let adapters_stop = CancellationToken::new();
        let build = BuildContext {
            gateway_id: config.gateway.id.clone(),
        };
        let mut adapters = Vec::new();
        for a in &config.adapters {
            let ctx = AdapterContext {
                name: a.name().to_string(),
                ingress: in_tx.clone(),
                shutdown: adapters_stop.clone(),
                telemetry: telemetry.clone(),
                clock: clock.clone(),
            };
            let adapter = a.build(&build);
            let name = a.name().to_string();
            let kind = a.kind();
            info!(adapter = %name, kind, "Starting adapter.");
            let task_name = name.clone();
            // `/health` reads this: an adapter whose task ended is down.
            let up = telemetry.gauge(crate::health::ADAPTER_UP, &[("adapter", &name)]);
            up.set(1.0);
            adapters.push((
                name,
                tokio::spawn(async move {
                    if let Err(e) = adapter.run(ctx).await {
                        error!(adapter = %task_name, error = %e, "Adapter stopped with an error.");
                    }
                    up.set(0.0);
                }),
            ));
        }
        drop(in_tx);
        Ok(Self {
            telemetry,
            adapters_stop,
            adapters,
            pipeline,
            upstream,
        })
    }

    /// Stops in order and waits until everything accepted was forwarded or
    /// the forwarder gave up after its drain timeout.
    ///
    /// # Errors
    /// A component that failed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.adapters_stop.cancel();
        for (name, task) in self.adapters {
            if let Err(e) = task.await {
                error!(adapter = %name, error = %e, "Adapter task failed.");
            }
        }
        self.pipeline.await.context("pipeline task")?;
        self.upstream.await.context("upstream task")?
    }
}
