//! The `tcp_line` listener: accepts clients up to `max_connections` and
//! runs each in its own task (`connection`).

use std::sync::Arc;
use std::time::Duration;

use gateway_core::component::AdapterFuture;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::connection::{serve, Shared};
use super::seats::Seats;
use super::tcp_config::TcpLineConfig;
use super::unanswered::{Unanswered, LINE_UNANSWERED};

/// Connections of this adapter open now.
pub const LINE_CONNECTIONS: &str = "edge_gateway_line_connections";
/// Connections closed, while silent, to give their slot to a new one.
pub const LINE_EVICTED: &str = "edge_gateway_line_connections_evicted_total";

/// Resent copies not taken again, the pipeline's counter of the same name.
const INGRESS_DUPLICATES: &str = "edge_gateway_ingress_duplicates_total";
/// How long a newcomer waits for the evicted connection to close.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// A runnable `tcp_line` adapter.
pub struct TcpLineSource {
    config: TcpLineConfig,
}

impl TcpLineSource {
    pub fn new(config: TcpLineConfig) -> Self {
        Self { config }
    }
}

impl Adapter for TcpLineSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(self.config, ctx))
    }

    fn serves_a_port(&self) -> bool {
        true
    }
}

async fn run(config: TcpLineConfig, ctx: AdapterContext) -> Result<(), AdapterError> {
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| AdapterError::Bind {
            addr: config.bind.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_or(config.bind, |a| a);
    ctx.listening();
    info!(adapter = %ctx.name, bind = %local, ack = config.ack, "Listening for lines.");
    let open = ctx
        .telemetry
        .gauge(LINE_CONNECTIONS, &[("adapter", &ctx.name)]);
    let shared = Arc::new(Shared {
        stats: ctx.stats(),
        throttle: LogThrottle::default(),
        decoder: config.decoder.clone(),
        source: Arc::from(ctx.name.as_str()),
        max_line_bytes: config.max_line_bytes,
        idle_timeout: config.idle_timeout,
        ack: config.ack,
        unanswered: std::sync::Mutex::new(Unanswered::new(
            ctx.telemetry
                .gauge(LINE_UNANSWERED, &[("adapter", &ctx.name)]),
        )),
        duplicates: ctx.telemetry.counter(INGRESS_DUPLICATES, &[]),
        ctx: ctx.clone(),
    });
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let seats = Seats::default();
    let evicted = ctx
        .telemetry
        .counter(LINE_EVICTED, &[("adapter", &ctx.name)]);
    let mut tasks = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Ok(()),
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(Err(e)) = joined {
                    break Err(e);
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a
                        // little instead of spinning (mini-redis does too).
                        if let Some(suppressed) = shared.throttle.allow("accept") {
                            warn!(adapter = %ctx.name, error = %e, suppressed, "Cannot accept a connection.");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let permit = match slots.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    // Full: the connection silent longest gives up its
                    // slot, and closes within moments.
                    Err(_) if seats.make_room(peer.ip(), config.max_connections) => {
                        evicted.inc();
                        debug!(adapter = %ctx.name, %peer, "Every connection slot taken: closing a silent one for this one.");
                        match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                            Ok(Ok(permit)) => permit,
                            _ => {
                                drop(stream);
                                continue;
                            }
                        }
                    }
                    Err(_) => {
                        gateway_core::refuse!(shared.stats, shared.throttle, "too_many_connections";
                            adapter = %ctx.name, %peer, max_connections = config.max_connections, "Refusing a connection: every slot is taken by a connection that sent within the last 2 s, or opened within the last half second.");
                        drop(stream);
                        continue;
                    }
                };
                // Lines are small and answers must not wait for more.
                let _ = stream.set_nodelay(true);
                // Interned: every reading of the connection may carry it.
                let fallback = config.fallback_device(peer.ip()).map(|d| d.interned());
                let shared = shared.clone();
                let open = open.clone();
                let slots = slots.clone();
                let max = config.max_connections;
                open.set(max.saturating_sub(slots.available_permits()) as f64);
                let seat = seats.take(peer.ip());
                tasks.spawn(async move {
                    debug!(adapter = %shared.ctx.name, %peer, "Line client connected.");
                    let closed = serve(stream, peer, fallback, shared.clone(), Some(&seat)).await;
                    drop(seat);
                    drop(permit);
                    open.set(max.saturating_sub(slots.available_permits()) as f64);
                    debug!(adapter = %shared.ctx.name, %peer, ?closed, "Line client gone.");
                    closed.map(|_| ())
                });
            }
        }
    };
    // Each connection sees the same cancellation and ends promptly.
    while tasks.join_next().await.is_some() {}
    open.set(0.0);
    info!(adapter = %ctx.name, "Stopped.");
    outcome
}
