//! `edge-gateway run`: the gateway until SIGTERM/SIGINT, reloading the
//! config at SIGHUP, and the periodic status line.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use edge_gateway::remote_config::{self, Booted, Controller};
use edge_gateway::runtime::Gateway;
use edge_gateway::settings::{self, LoadError};
use edge_gateway::{logging, metrics, status};
use gateway_core::state_file::dir_lock::{DirLock, DirLockError};
use gateway_core::state_file::usable::Space;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, error, info, warn};

use super::validate::{report_load_error, state_dir_problem, EX_CANTCREAT};

/// EX_TEMPFAIL from sysexits.h: another gateway holds the state
/// directory, which is temporary (a restart overlapping its predecessor),
/// so systemd's `Restart=` tries again.
const EX_TEMPFAIL: u8 = 75;

/// Loads `config` (with its drop-ins and overrides) and runs the gateway.
pub fn main(config: &Path) -> ExitCode {
    // First, while the process is still only the executable and the
    // libraries linked into it: see `memory_release::code`.
    let startup_code = memory_release::code::StartupCode::record();
    // Before anything else (it is a start after a restart in place too):
    // a SIGHUP before the reload handler is installed waits for it
    // instead of killing the gateway.
    edge_gateway::hangup::hold();
    // Before any thread has allocated, or it would keep an arena of its own.
    let tuned = memory_release::heap::tune_for_bursts(edge_gateway::memory::HOLD_DURING_BURSTS);
    // With the pushed layer the journal names ([remote_config]), decided
    // now and journaled once the state directory is locked.
    let env: remote_config::Env = std::env::vars_os().collect();
    let start = match remote_config::Start::prepare(config, &env) {
        Ok(start) => start,
        Err(e) => return report_load_error(&e),
    };
    let (cfg, layers) = (&start.loaded.config, &start.loaded.layers);
    logging::init(&cfg.log);
    if !tuned {
        debug!("The allocator is not glibc's or refused the burst settings: running with its defaults.");
    }
    // Names only (files and variables), never values: which drop-ins
    // took part is the first question when a key "does not work".
    info!(sources = ?layers.sources(), "Config read.");
    if let Some(why) = &start.loaded.dropped {
        warn!(%why, "The pushed configuration is left out: running the local files.");
    }
    for note in settings::notes(cfg, layers) {
        warn!("{note}");
    }
    warn_deprecated_names();
    // Before anything is accepted: without the directory the journal and
    // the outboxes would be memory only, and every reading acknowledged
    // would be lost at the next restart.
    match gateway_core::state_file::usable::ensure(&cfg.gateway.state_dir) {
        Ok(Space::Free) => {}
        // The journal holds acknowledgements back until there is room.
        Ok(Space::Full) => {
            warn!(state_dir = %cfg.gateway.state_dir.display(), "The disk holding the state directory is full: readings wait unacknowledged until there is room.");
        }
        Err(e) if cfg.gateway.durability == gateway_core::config::Durability::Disk => {
            error!(state_dir = %cfg.gateway.state_dir.display(), error = %e, "Not starting: the state directory cannot be used.");
            eprintln!("edge-gateway: not starting: {}", state_dir_problem(&e));
            return ExitCode::from(EX_CANTCREAT);
        }
        Err(e) => {
            warn!(state_dir = %cfg.gateway.state_dir.display(), error = %e, "durability = \"none\": running without the state directory; readings are lost on every restart.");
        }
    }
    // Before anything starts: a second process on the same directory used
    // to run its adapters, then stall on the outbox lock and linger.
    let _state_lock = match DirLock::acquire(&cfg.gateway.state_dir) {
        Ok(lock) => Some(lock),
        Err(e @ DirLockError::Held { .. }) => {
            eprintln!(
                "edge-gateway: {e}; exiting with {EX_TEMPFAIL} so that the service manager retries"
            );
            return ExitCode::from(EX_TEMPFAIL);
        }
        // The components that need the directory report it themselves
        // (the alert rules and dashboard run without it).
        Err(e) => {
            warn!(error = %e, "Running without the state directory lock.");
            None
        }
    };
    let (start, booted) = match start.settle(config, &env) {
        Ok(settled) => settled,
        Err(e) => return report_load_error(&e),
    };
    let cfg = start.loaded.config;
    match runtime().and_then(|rt| serve(&rt, run(cfg, config, booted, startup_code))) {
        Ok(Exit::Stopped) => ExitCode::SUCCESS,
        Ok(Exit::Restart) => {
            drop(_state_lock);
            remote_config::restart()
        }
        Err(e) => {
            error!(error = format!("{e:#}"), "Gateway failed.");
            eprintln!("edge-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The run loop's thread, parked between its ticks. Not inlined: inlined,
/// the runtime's wake-and-poll loop sat in the middle of `main` (70 KB,
/// nearly all of it start-up), so every 2-second tick faulted back the 64 KB
/// blocks around it after start-up's code was released. Named here, it is
/// laid out with the rest of the code a running gateway executes
/// (`packaging/hot-code.txt`).
#[inline(never)]
fn serve<F: std::future::Future>(rt: &tokio::runtime::Runtime, run: F) -> F::Output {
    rt.block_on(run)
}

/// The gateway `edge-gateway demo` runs: this runtime on the demo's
/// config, on the system clock.
#[cfg(feature = "demo")]
pub fn demo_gateway(
    cfg: &settings::GatewayConfig,
) -> anyhow::Result<edge_gateway_tools::demo::StopGateway> {
    let gateway = Gateway::start(cfg, std::sync::Arc::new(gateway_core::SystemClock))?;
    Ok(Box::new(move || Box::pin(gateway.stop())))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How `run` ended.
enum Exit {
    Stopped,
    /// On the configuration the remote-config journal names now.
    Restart,
}

async fn run(
    cfg: settings::GatewayConfig,
    path: &Path,
    booted: Option<Booted>,
    startup_code: memory_release::code::StartupCode,
) -> anyhow::Result<Exit> {
    let upstream = if cfg.upstream.enabled {
        cfg.upstream.broker.url.to_string()
    } else {
        "none".into()
    };
    info!(gateway = %cfg.gateway.id, upstream = %upstream, adapters = cfg.adapters.len(), devices = settings::device_count(&cfg), "Starting edge-gateway {}.", env!("CARGO_PKG_VERSION"));
    // Before anything starts: a signal that arrived while the adapters
    // were coming up (a test's SIGTERM right after "Subscribed", systemd's
    // reload) took the default action and killed the process outright.
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // On the main thread, the one the run loop runs on: a SIGHUP held
    // since the start (or across the restart in place) is a reload now.
    edge_gateway::hangup::release();
    let metrics_port = metrics::bind(&cfg.metrics).await;
    let clock = edge_gateway::fault_clock::wall_clock();
    let mut gateway = match Gateway::start(&cfg, clock.clone()) {
        Ok(gateway) => gateway,
        // A pushed configuration that cannot even start is rolled back.
        Err(e) => match booted.filter(|b| b.checking.is_some()) {
            Some(b) => {
                error!(
                    error = format!("{e:#}"),
                    "The pushed configuration cannot start: rolling back."
                );
                b.roll_back_unstarted(&e);
                return Ok(Exit::Restart);
            }
            None => return Err(e),
        },
    };
    metrics::report_listening(&gateway.telemetry, &cfg.metrics, &metrics_port);
    let metrics = metrics_port
        .ok()
        .flatten()
        .map(|port| port.serve(gateway.telemetry.clone()));
    let mut remote = match booted {
        Some(b) => Some(Controller::start(
            b,
            remote_config::Context {
                config: &cfg,
                config_path: path,
                env: std::env::vars_os().collect(),
                telemetry: gateway.telemetry.clone(),
                reports: gateway.upstream_urgent(),
                clock,
            },
        )?),
        None => None,
    };
    let mut exit = Exit::Stopped;
    // Released by this loop itself: see `memory::release_startup_code`.
    // The same mappings are released again after each burst, once start-up's
    // release has been made (`memory::release_burst_code`).
    let code_mappings = startup_code.clone();
    let mut startup_code = Some(startup_code);
    let settled = tokio::time::sleep(edge_gateway::memory::STARTUP_SETTLES);
    tokio::pin!(settled);
    let mut status_tick = tokio::time::interval(Duration::from_secs(60));
    status_tick.tick().await;
    let heap = edge_gateway::memory::HeapTrimmer::new(&gateway.telemetry);
    let mut heap_tick = tokio::time::interval(edge_gateway::memory::CHECK_EVERY);
    heap_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = int.recv() => { info!("SIGINT: stopping."); break; }
            _ = term.recv() => { info!("SIGTERM: stopping."); break; }
            _ = hup.recv() => reload(&mut gateway, path, remote.as_ref()).await,
            _ = status_tick.tick() => status::log_line(&gateway.telemetry),
            _ = heap_tick.tick() => {
                if heap.check().await && startup_code.is_none() {
                    edge_gateway::memory::release_burst_code(&code_mappings);
                }
            }
            () = &mut settled, if startup_code.is_some() => {
                if let Some(code) = startup_code.take() {
                    edge_gateway::memory::release_startup_code(&code);
                }
            }
            () = restart_requested(&mut remote) => {
                info!("Restarting on the configuration the remote-config journal names.");
                exit = Exit::Restart;
                break;
            }
        }
    }
    if let Some(r) = remote.take() {
        r.stop().await;
    }
    let telemetry = gateway.telemetry.clone();
    // Bounded: the forwarder gives up delivering after its drain timeout.
    // A restart in place waits less (see `RESTART_STOP`).
    let budget = match exit {
        Exit::Stopped => Duration::from_secs(20),
        Exit::Restart => remote_config::RESTART_STOP,
    };
    match tokio::time::timeout(budget, gateway.stop()).await {
        // The start after a restart in place sets its components up anew.
        Ok(Err(e)) if matches!(exit, Exit::Restart) => {
            error!(
                error = format!("{e:#}"),
                "A component failed while stopping; restarting anyway."
            );
        }
        Ok(result) => result?,
        Err(_) if matches!(exit, Exit::Restart) => {
            warn!("Stop took too long; restarting anyway (what is not in the outbox yet is in the journals).");
        }
        Err(_) => error!("Stop took too long; exiting anyway."),
    }
    status::log_line(&telemetry);
    if let Some(m) = metrics {
        m.stop().await;
    }
    info!("Stopped.");
    if matches!(exit, Exit::Restart) {
        remote_config::hold("stopped").await;
    }
    Ok(exit)
}

/// Resolves when the remote-config controller asks for a restart.
async fn restart_requested(remote: &mut Option<Controller>) {
    match remote {
        Some(r) => r.restart_requested().await,
        None => std::future::pending().await,
    }
}

/// SIGHUP: re-reads the config file, its drop-ins and the environment (as
/// the process started with it). An invalid result changes nothing.
/// Names the config still accepts but that have changed, once each.
fn warn_deprecated_names() {
    for note in adapters::deprecated_names_in_use() {
        warn!("{note}");
    }
}

async fn reload(gateway: &mut Gateway, path: &Path, remote: Option<&Controller>) {
    info!(config = %path.display(), "SIGHUP: reloading the config.");
    let env: remote_config::Env = std::env::vars_os().collect();
    let new = match remote_config::load(path, &env) {
        Ok(loaded) => {
            info!(sources = ?loaded.layers.sources(), "Config read.");
            if let Some(why) = &loaded.dropped {
                warn!(%why, "The pushed configuration is left out.");
                if let Some(r) = remote {
                    r.layer_dropped(why.clone());
                }
            }
            warn_deprecated_names();
            loaded.config
        }
        Err(LoadError::Invalid { problems, .. }) => {
            for p in problems.iter() {
                error!(problem = %p, "Config problem.");
            }
            error!(config = %path.display(), problems = problems.len(), "Reload rejected; the running config stays.");
            return;
        }
        Err(e) => {
            error!(error = %e, "Reload rejected; the running config stays.");
            return;
        }
    };
    let summary = gateway.reload(new).await;
    if !summary.need_restart.is_empty() {
        warn!(sections = ?summary.need_restart, "These sections changed but only take effect at a restart; their running values are kept.");
    }
    info!(started = ?summary.started, restarted = ?summary.restarted, stopped = ?summary.stopped, "Reloaded.");
}
