//! `[dashboard]`: local web pages, a JSON/CSV API and live events, over
//! an on-device history.
//!
//! ```text
//! pipeline ──SinkEvent──▶ writer ──▶ live (latest values, active alerts) ──▶ /events (SSE)
//!                            └─batches─▶ history/ ◀── /api/*, pages, `history export`
//! ```
//!
//! - [`history`]: the store of windows, alert transitions and command results (logs of our own);
//! - [`live`]: the in-memory present and the SSE broadcast;
//! - [`open`]: readings of windows not closed yet, for the charts;
//! - [`writer`]: the output task (batches, flush handshake, pruning);
//! - [`server`]: the hyper accept loop, TLS and Basic auth;
//! - [`api`]: `/api/devices`, `/api/series`, `/api/alerts`, `/events`;
//! - [`commands`]: the last command results per device (`/api/commands`,
//!   the device page), from the command runner's results;
//! - [`pages`] and [`svg`]: server-rendered HTML and charts.
//!
//! The dashboard is an output like a `[[sink]]`: it gets the pipeline's
//! typed events and answers the checkpoint's flush, so what a checkpoint
//! calls emitted is in history.

pub mod actions_held;
pub mod api;
pub mod auth;
pub mod commands;
pub mod device_page;
pub mod history;
mod host_check;
pub mod latest_file;
pub mod live;
pub mod open;
pub mod pages;
pub use gateway_core::state_file::provenance;
pub mod server;
pub mod shed;
pub mod svg;
pub mod view;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gateway_core::config::{DashboardConfig, RuleConfig};
use gateway_core::event::OutputLink;
use gateway_core::event::SinkEvent;
use gateway_core::{Clock, DeviceRegistry, Telemetry};
use tracing::{error, info, warn};

use history::{History, HistoryError};
use live::Live;

/// The history directory below `state_dir`.
pub fn history_path(state_dir: &Path) -> PathBuf {
    state_dir.join(gateway_core::state_file::inventory::HISTORY)
}

/// What the handlers share.
pub struct AppState {
    pub live: Live,
    pub store: Option<Arc<History>>,
    pub registry: DeviceRegistry,
    pub rules: Vec<RuleConfig>,
    pub telemetry: Telemetry,
    pub clock: Arc<dyn Clock>,
    pub started: Instant,
    /// The aggregation window: a device silent for two of them is "silent".
    pub window_ms: i64,
    /// The `[[sink]]` outputs' names, for the gateway page.
    pub outputs: Vec<String>,
    pub auth: auth::Auth,
    /// Adapters, units and metric order the pages describe data with.
    pub view: view::View,
    pub health: HealthCheck,
    /// `[dashboard] allowed_hosts` (see `host_check`).
    pub allowed_hosts: Vec<String>,
}

/// The gateway's health as `/health` judges it, for the gateway page: the
/// binary owns the verdict (it knows every component), the page only shows
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthView {
    /// `/health`'s JSON body: `status`, and `adapters` by name.
    pub body: serde_json::Value,
    /// False when the gateway has no cloud broker to be connected to.
    pub upstream_configured: bool,
}

/// Judges the gateway from its telemetry; see [`HealthView`].
pub type HealthCheck = Arc<dyn Fn(&Telemetry) -> HealthView + Send + Sync>;

/// The running dashboard's pages.
pub struct Dashboard {
    server: Option<server::Server>,
}

/// The dashboard's output: the writer of its live view and history,
/// started like every other output (it answers the checkpoint's flush, so
/// what a checkpoint calls emitted is in history).
pub struct HistoryWriter {
    store: Option<Arc<History>>,
    live: Live,
    settings: writer::WriterSettings,
    clock: Arc<dyn Clock>,
    telemetry: Telemetry,
    queue: usize,
}

impl gateway_core::output::StartOutput for HistoryWriter {
    fn lanes(&self) -> gateway_core::output::Lanes {
        gateway_core::output::Lanes {
            urgent: false,
            flush: true,
            readings: true,
        }
    }

    fn queue(&self) -> Option<usize> {
        Some(self.queue)
    }

    fn start(
        self,
        link: OutputLink<SinkEvent>,
        _ctx: &gateway_core::output::OutputContext,
    ) -> Result<gateway_core::output::StartedOutput, gateway_core::output::OutputError> {
        let writer = tokio::spawn(writer::run(
            self.store,
            self.live,
            link,
            self.settings,
            self.clock,
            self.telemetry,
        ));
        Ok(gateway_core::output::StartedOutput {
            task: Box::pin(async move { Ok(writer.await?) }),
        })
    }
}

impl Dashboard {
    /// The address the pages are served on (`None`: the port could not be
    /// bound and only history is kept).
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// Closes the pages (once the runtime has waited for the writer, which
    /// ends when the pipeline is done and its last batch is written).
    pub async fn stop(self) {
        if let Some(s) = self.server {
            s.stop().await;
        }
    }
}

/// Opens the history; `None` runs the pages on live data only. Damage
/// inside its files does not stop it from opening (the damaged frames are
/// skipped and logged), so what fails here is the directory itself.
fn open_history(path: &Path) -> Option<History> {
    // The first dashboard kept its history in one redb file; its windows
    // are not carried over.
    let old = path.with_extension("redb");
    if old.exists() {
        warn!(file = %old.display(), "A history.redb from an earlier version is no longer read; delete it to free its space.");
    }
    match History::open(path) {
        Ok(h) => Some(h),
        Err(HistoryError::Busy(p)) => {
            error!(path = %p.display(), "The dashboard history is held by another gateway process; running without history.");
            None
        }
        Err(e) => {
            error!(error = %e, "Cannot open the dashboard history; running without history.");
            None
        }
    }
}

/// Everything the dashboard needs from the gateway.
pub struct DashboardSetup<'a> {
    pub config: &'a DashboardConfig,
    pub state_dir: &'a Path,
    pub registry: DeviceRegistry,
    pub rules: Vec<RuleConfig>,
    pub window_ms: i64,
    pub outputs: Vec<String>,
    pub telemetry: Telemetry,
    pub clock: Arc<dyn Clock>,
    /// The adapters' table the readings' `SourceId`s index.
    pub sources: gateway_core::Sources,
    /// `[units]` and `[[adapter]] units`.
    pub units: gateway_core::units::Units,
    pub health: HealthCheck,
    /// Events waiting for the writer, as for every output.
    pub queue: usize,
}

/// Gauge `{bind, error}`: 1 while the pages are served on `bind`, 0 (with
/// the reason in `error`) when its port could not be bound. `/health`
/// reports the latter.
pub const DASHBOARD_LISTENING: &str = "edge_gateway_dashboard_listening";

/// What usually holds a port a dashboard was pointed at on a Pi.
fn known_holder(port: u16) -> Option<&'static str> {
    Some(match port {
        8086 => "InfluxDB's HTTP API",
        8088 => "InfluxDB 1.x's RPC (backup/restore) service",
        8089 => "InfluxDB 1.x's UDP listener",
        3000 => "Grafana",
        1880 => "Node-RED",
        8123 => "Home Assistant",
        8080 => "Zigbee2MQTT, ChirpStack or a Mosquitto websocket listener",
        9001 => "Mosquitto's websocket listener",
        8888 => "Chronograf",
        6052 => "ESPHome",
        _ => return None,
    })
}

/// Binds the pages' port. A config naming the old default, taken (by
/// InfluxDB 1.x on the same Pi), falls back to the new default; any other
/// failure is logged with what to change and shown by `/health`.
fn listen(
    bind: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: &Arc<AppState>,
    telemetry: &Telemetry,
) -> Option<server::Server> {
    use gateway_core::config::dashboard::{DEFAULT_PORT, OLD_DEFAULT_BIND};
    let mut result = server::serve(bind, tls.clone(), state.clone()).map_err(|e| (bind, e));
    if let Err((_, e)) = &result {
        if bind == OLD_DEFAULT_BIND && e.kind() == std::io::ErrorKind::AddrInUse {
            let moved = std::net::SocketAddr::new(bind.ip(), DEFAULT_PORT);
            warn!(%bind, now = %moved, "The dashboard's old default port 8088 is InfluxDB 1.x's RPC port and is taken; serving the pages on the new default instead. Set [dashboard] bind to choose.");
            result = server::serve(moved, tls, state.clone()).map_err(|e| (moved, e));
        }
    }
    match result {
        Ok(s) => {
            telemetry
                .gauge(DASHBOARD_LISTENING, &[("bind", &s.addr.to_string())])
                .set(1.0);
            Some(s)
        }
        Err((bind, e)) => {
            let reason = e.to_string();
            if e.kind() == std::io::ErrorKind::AddrInUse {
                let holder = known_holder(bind.port())
                    .map_or(String::new(), |h| format!(" (on a Pi often {h})"));
                error!(%bind, error = %e, "Cannot open the dashboard port: another process listens on port {}{holder}. Set [dashboard] bind to a free port, or stop that process (`ss -ltnp 'sport = :{}'` names it). Running without the pages; /health says so.", bind.port(), bind.port());
            } else {
                error!(%bind, error = %e, "Cannot open the dashboard port: check [dashboard] bind. Running without the pages; /health says so.");
            }
            telemetry
                .gauge(
                    DASHBOARD_LISTENING,
                    &[("bind", &bind.to_string()), ("error", &reason)],
                )
                .set(0.0);
            None
        }
    }
}

/// The running dashboard's pages, and its writer to start as an output.
pub type Started = (Dashboard, HistoryWriter);

/// Starts the server, and returns the writer to start as an output.
///
/// # Errors
/// TLS files that cannot be read.
pub fn start(setup: DashboardSetup<'_>) -> Result<Started, server::TlsError> {
    let store = match std::fs::create_dir_all(setup.state_dir) {
        Ok(()) => open_history(&history_path(setup.state_dir)).map(Arc::new),
        Err(e) => {
            error!(state_dir = %setup.state_dir.display(), error = %e, "Cannot use the state directory; the dashboard keeps no history.");
            None
        }
    };
    let view = view::View {
        sources: setup.sources.clone(),
        units: setup.units,
        metric_order: setup.config.metric_order.clone(),
    };
    let live = Live::new(setup.window_ms);
    let provenance = store
        .is_some()
        .then(|| provenance::ProvenanceFile::in_dir(setup.state_dir));
    if let Some(s) = &store {
        let since = setup.clock.now().as_millis()
            - i64::try_from(setup.config.retention.as_millis()).unwrap_or(i64::MAX / 2);
        let devices = s.devices().unwrap_or_default();
        let alerts = s.alerts(since, i64::MAX).unwrap_or_default();
        live.restore(&devices, &alerts);
    }
    let latest = store
        .is_some()
        .then(|| latest_file::LatestFile::in_dir(setup.state_dir));
    if let Some(l) = &latest {
        let kept = latest_file::within_retention(l.load(), setup.config.retention);
        live.restore_latest(kept);
    }
    // After the kept latest values: a device known only by them (no
    // window of it closed yet) gets its adapter, and its adapter's units.
    if let Some(p) = &provenance {
        live.restore_sources(&p.load(&setup.sources));
    }
    let tls = server::tls_acceptor(setup.config)?;
    let telemetry = setup.telemetry.clone();
    let writer = HistoryWriter {
        store: store.clone(),
        live: live.clone(),
        settings: writer::WriterSettings {
            provenance: provenance.map(|p| (p, setup.sources.clone())),
            latest,
            describe: Some((view.clone(), setup.registry.clone(), setup.rules.clone())),
            write_interval: setup.config.write_interval,
            retention: setup.config.retention,
            max_bytes: setup.config.max_bytes,
        },
        clock: setup.clock.clone(),
        telemetry: setup.telemetry.clone(),
        queue: setup.queue,
    };
    let auth = auth::Auth::new(&setup.config.user, &setup.telemetry);
    let state = Arc::new(AppState {
        live,
        store,
        registry: setup.registry,
        rules: setup.rules,
        telemetry: telemetry.clone(),
        clock: setup.clock,
        started: Instant::now(),
        window_ms: setup.window_ms,
        outputs: setup.outputs,
        auth,
        view,
        health: setup.health,
        allowed_hosts: setup.config.allowed_hosts.clone(),
    });
    let server = listen(setup.config.bind, tls, &state, &telemetry);
    if let Some(s) = &server {
        info!(url = %s.url(), "Dashboard listening.");
        if !s.is_tls() && !state.auth.is_open() && !setup.config.bind.ip().is_loopback() {
            // Basic authentication sends the password with every request:
            // off loopback and without TLS, anyone on the network reads it.
            tracing::warn!(bind = %setup.config.bind, "Dashboard: users log in with passwords over plain HTTP on a network address; set cert_file and key_file (HTTPS), or bind to 127.0.0.1 behind a TLS proxy.");
        }
    }
    Ok((Dashboard { server }, writer))
}
