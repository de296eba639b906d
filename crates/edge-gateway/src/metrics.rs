//! The `[metrics]` HTTP endpoint: `/metrics` (Prometheus text) and `/health`.
//!
//! hyper's HTTP/1 server is used rather than hand-parsing requests: it is
//! already in the dependency tree (rumqttd's axum brings it), well kept, and
//! handles the slow-client and malformed-request cases a scraper port on a
//! building network will see. Connections are capped and each one is
//! bounded in time, so the endpoint cannot starve the data path.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::config::MetricsConfig;
use gateway_core::Telemetry;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::{health, process};

/// Whether the metrics endpoint listens (`{bind}`, and `{error}` when it
/// cannot): 0 makes `/health`'s verdict, as the dashboard and a push's
/// health gate read it, unhealthy.
pub const METRICS_LISTENING: &str = "edge_gateway_metrics_listening";

/// Scrapers and health probes served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one (keep-alive) connection; the scraper reconnects.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Prometheus text exposition format 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running endpoint.
pub struct MetricsServer {
    /// The address actually bound (the configured port may be 0).
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Stops accepting and closes open connections.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The endpoint's port, bound but not yet served.
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

/// Binds the endpoint if `[metrics]` enables it.
///
/// Bound before anything else starts, so that once the log says an
/// adapter subscribed, `/health` answers: a probe that connects in between
/// waits in the backlog rather than being refused.
///
/// A port that cannot be bound is logged and the gateway runs on without
/// the endpoint: losing observability must not stop the data path (and a
/// crash loop under systemd would lose data as well).
pub async fn bind(config: &MetricsConfig) -> Result<Option<MetricsListener>, std::io::Error> {
    if !config.enabled {
        return Ok(None);
    }
    let listener = match TcpListener::bind(config.bind).await {
        Ok(l) => l,
        Err(e) => {
            error!(bind = %config.bind, error = %e, "Cannot open the metrics endpoint; running without /metrics and /health.");
            return Err(e);
        }
    };
    let addr = listener.local_addr().unwrap_or(config.bind);
    Ok(Some(MetricsListener { listener, addr }))
}

/// Says in `telemetry` whether the endpoint `[metrics]` asked for listens:
/// a pushed configuration that moves it to a taken port is then unhealthy
/// and rolled back, instead of applied with the fleet's probe blind.
pub fn report_listening(
    telemetry: &Telemetry,
    config: &MetricsConfig,
    bound: &Result<Option<MetricsListener>, std::io::Error>,
) {
    match bound {
        Ok(Some(l)) => telemetry
            .gauge(METRICS_LISTENING, &[("bind", &l.addr.to_string())])
            .set(1.0),
        Ok(None) => {}
        Err(e) => telemetry
            .gauge(
                METRICS_LISTENING,
                &[
                    ("bind", &config.bind.to_string()),
                    ("error", &e.to_string()),
                ],
            )
            .set(0.0),
    }
}

impl MetricsListener {
    /// Starts answering on the bound port.
    pub fn serve(self, telemetry: Telemetry) -> MetricsServer {
        info!(bind = %self.addr, "Metrics endpoint listening (/metrics, /health).");
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(self.listener, telemetry, stop.clone()));
        MetricsServer {
            addr: self.addr,
            stop,
            task,
        }
    }
}

async fn accept_loop(listener: TcpListener, telemetry: Telemetry, stop: CancellationToken) {
    let serve = move |stream, _peer, stop: CancellationToken| {
        let telemetry = telemetry.clone();
        async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &telemetry);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
            }
        }
    };
    accept_bounded(listener, MAX_CONNECTIONS, "Metrics endpoint", stop, serve).await;
}

/// Accepts connections until `stop`, each served by `serve` in its own
/// task, at most `max` at once: one more is closed at once rather than
/// queued, so a flood of clients cannot exhaust the gateway's file
/// descriptors. The dashboard, which people use, sheds per address instead
/// (`dashboard::shed`).
pub(crate) async fn accept_bounded<F, Fut>(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    stop: CancellationToken,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let Some((stream, peer)) = gateway_core::net::accept_next(&listener, &stop, what).await
        else {
            return;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "{what}: too many connections; closing this one.");
            continue;
        };
        let connection = serve(stream, peer, stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
}

fn respond(req: &Request<Incoming>, telemetry: &Telemetry) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, PROMETHEUS_TEXT, render(telemetry)),
        "/health" => {
            let h = health::check(telemetry);
            let status = if h.healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", format!("{}\n", h.body))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics or /health\n",
        ),
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The whole `/metrics` body: every gateway counter and gauge, the build,
/// and the process figures.
pub fn render(telemetry: &Telemetry) -> String {
    let mut out = telemetry.render_prometheus();
    let _ = writeln!(out, "# TYPE edge_gateway_build_info gauge");
    let _ = writeln!(
        out,
        "edge_gateway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    process::render(&mut out);
    out
}
