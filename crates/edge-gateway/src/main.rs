//! `edge-gateway`: parse the command line, load the config, run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_gateway::runtime::Gateway;
use edge_gateway::settings::{self, LoadError};
use edge_gateway::{logging, metrics, status};
use gateway_core::SystemClock;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

mod decode;
mod replay;
mod simulate;

/// EX_CONFIG from sysexits.h: systemd and scripts can tell a bad config
/// from a crash.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "edge-gateway",
    version,
    about = "Edge gateway for smart buildings: sensors in, window statistics and alerts out to a cloud MQTT broker."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
        config: PathBuf,
    },
    /// Check a config file with its conf.d/ drop-ins and EDGE_GATEWAY__
    /// variables: one line per problem, exit 78 if any.
    Validate {
        #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
        config: PathBuf,
        /// Print the merged configuration as TOML, secrets redacted.
        #[arg(long)]
        print: bool,
    },
    /// Print a commented template of every key with its default.
    Configfile,
    /// Decode a LoRaWAN payload with a codec, or verify and decrypt a PHYPayload.
    Decode(decode::DecodeArgs),
    /// Run the config's alert rules over a CSV of past readings (event
    /// time): alerts as JSON lines on stdout, a summary on stderr.
    Replay(replay::ReplayArgs),
    /// Play a fleet of sensors against a running gateway (MQTT, CoAP or LoRaWAN).
    Simulate(simulate::SimulateArgs),
    /// Run a self-contained demo: embedded broker, simulated building, live output.
    #[cfg(feature = "demo")]
    Demo {
        /// Window length of the demo's aggregates.
        #[arg(long, default_value = "10s")]
        window: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Simulate(args) => {
            match runtime().and_then(|rt| rt.block_on(simulate::run(args))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edge-gateway simulate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Configfile => {
            print!("{}", settings::template());
            ExitCode::SUCCESS
        }
        Command::Validate { config, print } => {
            match settings::load_layers(&config, std::env::vars_os()) {
                Ok((c, layers)) => {
                    let summary = format!(
                        "{}: ok ({} adapter(s), {} device(s), {} rule(s))",
                        config.display(),
                        c.adapters.len(),
                        c.devices.len(),
                        c.rules.len()
                    );
                    if !print {
                        println!("{summary}");
                        return ExitCode::SUCCESS;
                    }
                    // stdout carries only the TOML, so it can be piped or saved.
                    match layers.to_redacted_toml() {
                        Ok(text) => {
                            print!("{text}");
                            eprintln!("{summary}");
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("edge-gateway validate: cannot print the config: {e}");
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(e) => report_load_error(&e),
            }
        }
        Command::Run { config } => {
            let (cfg, layers) = match settings::load_layers(&config, std::env::vars_os()) {
                Ok(loaded) => loaded,
                Err(e) => return report_load_error(&e),
            };
            logging::init(&cfg.log);
            // Names only (files and variables), never values: which drop-ins
            // took part is the first question when a key "does not work".
            info!(sources = ?layers.sources(), "Config read.");
            match runtime().and_then(|rt| rt.block_on(run(cfg, &config))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = format!("{e:#}"), "Gateway failed.");
                    eprintln!("edge-gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "demo")]
        Command::Demo { window } => {
            match runtime().and_then(|rt| rt.block_on(edge_gateway::demo::run(&window))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edge-gateway demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn report_load_error(e: &LoadError) -> ExitCode {
    match e {
        LoadError::Invalid { path, problems } => {
            for p in problems.iter() {
                println!("{p}");
            }
            eprintln!("{path}: {} problem(s)", problems.len());
        }
        LoadError::Read(_) => eprintln!("{e}"),
    }
    ExitCode::from(EX_CONFIG)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn run(cfg: settings::GatewayConfig, path: &Path) -> anyhow::Result<()> {
    info!(gateway = %cfg.gateway.id, upstream = %cfg.upstream.url, adapters = cfg.adapters.len(), devices = cfg.devices.len(), "Starting edge-gateway {}.", env!("CARGO_PKG_VERSION"));
    // Before anything starts: a signal that arrived while the adapters
    // were coming up (a test's SIGTERM right after "Subscribed", systemd's
    // reload) took the default action and killed the process outright.
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut gateway = Gateway::start(&cfg, Arc::new(SystemClock))?;
    let metrics = metrics::serve(&cfg.metrics, gateway.telemetry.clone()).await;
    let mut status_tick = tokio::time::interval(Duration::from_secs(60));
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = int.recv() => { info!("SIGINT: stopping."); break; }
            _ = term.recv() => { info!("SIGTERM: stopping."); break; }
            _ = hup.recv() => reload(&mut gateway, path).await,
            _ = status_tick.tick() => status::log_line(&gateway.telemetry),
        }
    }
    let telemetry = gateway.telemetry.clone();
    // Bounded: the forwarder gives up delivering after its drain timeout.
    match tokio::time::timeout(Duration::from_secs(20), gateway.stop()).await {
        Ok(result) => result?,
        Err(_) => error!("Stop took too long; exiting anyway."),
    }
    status::log_line(&telemetry);
    if let Some(m) = metrics {
        m.stop().await;
    }
    info!("Stopped.");
    Ok(())
}

/// SIGHUP: re-reads the config file, its drop-ins and the environment (as
/// the process started with it). An invalid result changes nothing.
async fn reload(gateway: &mut Gateway, path: &Path) {
    info!(config = %path.display(), "SIGHUP: reloading the config.");
    let new = match settings::load_layers(path, std::env::vars_os()) {
        Ok((c, layers)) => {
            info!(sources = ?layers.sources(), "Config read.");
            c
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
