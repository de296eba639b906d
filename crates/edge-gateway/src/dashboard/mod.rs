//! `[dashboard]`: local web pages, a JSON/CSV API and live events, over
//! an on-device history.
//!
//! ```text
//! pipeline ──SinkEvent──▶ writer ──▶ live (latest values, active alerts) ──▶ /events (SSE)
//!                            └─batches─▶ history/ ◀── /api/*, pages, `history export`
//! ```
//!
//! - [`history`]: the store of windows and alert transitions (`gateway_core::history`);
//! - [`live`]: the in-memory present and the SSE broadcast;
//! - [`writer`]: the output task (batches, flush handshake, pruning);
//! - [`server`]: the hyper accept loop, TLS and Basic auth;
//! - [`api`]: `/api/devices`, `/api/series`, `/api/alerts`, `/events`;
//! - [`pages`] and [`svg`]: server-rendered HTML and charts.
//!
//! The dashboard is an output like a `[[sink]]`: it gets the pipeline's
//! typed events and answers the checkpoint's flush, so what a checkpoint
//! calls emitted is in history.

pub mod api;
pub mod auth;
pub mod history;
pub mod live;
pub mod pages;
pub mod server;
pub mod svg;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gateway_core::config::{DashboardConfig, RuleConfig};
use gateway_core::{Clock, DeviceRegistry, Telemetry};
use sinks::event::SinkEvent;
use sinks::OutputLink;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use history::{History, HistoryError};
use live::Live;

/// The history directory below `state_dir`.
pub fn history_path(state_dir: &Path) -> PathBuf {
    state_dir.join("history")
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
}

/// The running dashboard.
pub struct Dashboard {
    writer: JoinHandle<()>,
    server: Option<server::Server>,
}

impl Dashboard {
    /// The address the pages are served on (`None`: the port could not be
    /// bound and only history is kept).
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// Waits for the writer (it ends once the pipeline is done and its last
    /// batch is written), then closes the pages.
    pub async fn stop(self) {
        if let Err(e) = self.writer.await {
            error!(error = %e, "Dashboard writer failed.");
        }
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
}

/// Starts the writer and the server; returns the pipeline's sender of
/// events and flush requests to it.
///
/// # Errors
/// TLS files that cannot be read.
pub fn start(
    setup: DashboardSetup<'_>,
) -> anyhow::Result<(
    Dashboard,
    mpsc::Sender<SinkEvent>,
    mpsc::Sender<oneshot::Sender<bool>>,
)> {
    let store = match std::fs::create_dir_all(setup.state_dir) {
        Ok(()) => open_history(&history_path(setup.state_dir)).map(Arc::new),
        Err(e) => {
            error!(state_dir = %setup.state_dir.display(), error = %e, "Cannot use the state directory; the dashboard keeps no history.");
            None
        }
    };
    let live = Live::default();
    if let Some(s) = &store {
        let since = setup.clock.now().as_millis()
            - i64::try_from(setup.config.retention.as_millis()).unwrap_or(i64::MAX / 2);
        let devices = s.devices().unwrap_or_default();
        let alerts = s.alerts(since, i64::MAX).unwrap_or_default();
        live.restore(&devices, &alerts);
    }
    let tls = server::tls_acceptor(setup.config)?;
    let (tx, rx) = mpsc::channel(crate::fanout::SINK_QUEUE);
    let (flush_tx, flush_rx) = mpsc::channel(1);
    let writer = tokio::spawn(writer::run(
        store.clone(),
        live.clone(),
        OutputLink {
            messages: rx,
            urgent: None,
            flush: Some(flush_rx),
        },
        writer::WriterSettings {
            write_interval: setup.config.write_interval,
            retention: setup.config.retention,
            max_bytes: setup.config.max_bytes,
        },
        setup.clock.clone(),
        setup.telemetry.clone(),
    ));
    let state = Arc::new(AppState {
        live,
        store,
        registry: setup.registry,
        rules: setup.rules,
        telemetry: setup.telemetry,
        clock: setup.clock,
        started: Instant::now(),
        window_ms: setup.window_ms,
        outputs: setup.outputs,
        auth: auth::Auth::new(&setup.config.user),
    });
    let server = server::serve(setup.config.bind, tls, state);
    if let Some(s) = &server {
        info!(url = %s.url(), "Dashboard listening.");
    }
    Ok((Dashboard { writer, server }, tx, flush_tx))
}
