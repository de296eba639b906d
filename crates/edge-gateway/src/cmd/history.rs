//! `edge-gateway history export` and `edge-gateway passwd`.
//!
//! Export reads the history directory itself, whether the gateway is
//! stopped or running: its files are only appended to or replaced by
//! rename, so a reader needs no lock and sees every committed batch.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use dashboard::api::{alerts_csv, csv, parse_time};
use dashboard::history::History;
use dashboard::{auth, history_path};
use edge_gateway::settings;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HistoryCommand {
    /// Write one series of window aggregates as CSV on stdout, or with
    /// --alerts the alert transitions (time, rule, device, metric, state,
    /// value, limit, reason), oldest first.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
    config: PathBuf,
    /// Write the alert transitions (raised, cleared, and raises suppressed
    /// by a rule's cooldown) instead of windows; --device and --metric
    /// then only narrow them down.
    #[arg(long)]
    alerts: bool,
    /// Device id.
    #[arg(long, required_unless_present = "alerts")]
    device: Option<String>,
    #[arg(long, required_unless_present = "alerts")]
    metric: Option<String>,
    /// `-24h`, `now`, milliseconds since the epoch or RFC 3339.
    #[arg(long, default_value = "-30d", allow_hyphen_values = true)]
    from: String,
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// Merge windows into buckets of this length (`1h`); as stored without.
    #[arg(long)]
    step: Option<String>,
}

pub fn main(args: &HistoryArgs) -> ExitCode {
    let HistoryCommand::Export(a) = &args.command;
    match export(a) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(text.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway history export: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn export(a: &ExportArgs) -> anyhow::Result<String> {
    let cfg = settings::load(&a.config)?;
    let now = gateway_core::Timestamp::now().as_millis();
    let from = parse_time(&a.from, now).context("--from: expected now, -24h, ms or RFC 3339")?;
    let to = parse_time(&a.to, now).context("--to: expected now, -24h, ms or RFC 3339")?;
    let step = match &a.step {
        Some(s) => i64::try_from(humantime::parse_duration(s).context("--step")?.as_millis())
            .unwrap_or(i64::MAX),
        None => 0,
    };
    let path = history_path(&cfg.gateway.state_dir);
    let h = History::open_read_only(&path).with_context(|| {
        format!(
            "no history at {}: has the gateway run with [dashboard] enabled?",
            path.display()
        )
    })?;
    if a.alerts {
        let rows = h.alert_log(from, to)?;
        // A MAC or EUI in any case, as the gateway stored it.
        let device = match &a.device {
            Some(d) => Some(gateway_core::DeviceId::new(d.as_str()).context("--device")?),
            None => None,
        };
        let wanted = |want: Option<&str>, have: &str| want.is_none_or(|w| w == have);
        return Ok(alerts_csv(rows.iter().filter(|r| {
            wanted(device.as_ref().map(|d| d.as_str()), &r.device)
                && wanted(a.metric.as_deref(), &r.metric)
        })));
    }
    let (Some(device), Some(metric)) = (&a.device, &a.metric) else {
        anyhow::bail!("--device and --metric are required without --alerts");
    };
    let device = gateway_core::DeviceId::new(device.as_str()).context("--device")?;
    let points = h.series(device.as_str(), metric, from, to, step)?;
    Ok(csv(device.as_str(), metric, &points))
}

/// Reads a password (first line of stdin) and prints its argon2id hash.
pub fn passwd() -> ExitCode {
    eprint!("Password: ");
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("edge-gateway passwd: cannot read the password");
        return ExitCode::FAILURE;
    }
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        eprintln!("edge-gateway passwd: empty password");
        return ExitCode::FAILURE;
    }
    match auth::hash(pw) {
        Ok(h) => {
            eprintln!();
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway passwd: {e}");
            ExitCode::FAILURE
        }
    }
}
