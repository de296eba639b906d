//! `edge-gateway history export` and `edge-gateway passwd`.
//!
//! Export reads the history directory itself, whether the gateway is
//! stopped or running: its files are only appended to or replaced by
//! rename, so a reader needs no lock and sees every committed batch.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use dashboard::api::{alerts_csv, commands_csv, csv, parse_time};
use dashboard::history::History;
use dashboard::{auth, history_path};
use gateway_settings as settings;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HistoryCommand {
    /// Write one series of window aggregates as CSV on stdout, or with
    /// --alerts the alert transitions (time, rule, device, metric, state,
    /// value, limit, reason), or with --commands the commands from the
    /// cloud and their results (time, id, device, metric, value, status,
    /// reason, detail), oldest first.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    #[arg(short, long, default_value = "/etc/edge-gateway/gateway.toml")]
    config: PathBuf,
    /// Write the alert transitions (raised, cleared, and raises suppressed
    /// by a rule's cooldown) instead of windows; --device and --metric
    /// then only narrow them down.
    #[arg(long, conflicts_with = "commands")]
    alerts: bool,
    /// Write the commands from the cloud and their results (done,
    /// refused, failed, expired) instead of windows; --device and
    /// --metric then only narrow them down.
    #[arg(long)]
    commands: bool,
    /// Device id, or its name from a [[device]] section ("House meter").
    #[arg(long, required_unless_present_any = ["alerts", "commands"])]
    device: Option<String>,
    #[arg(long, required_unless_present_any = ["alerts", "commands"])]
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

/// EX_CONFIG (sysexits.h): the configuration cannot be read, as for
/// `validate` and `replay`.
const EX_CONFIG: u8 = 78;

pub fn main(args: &HistoryArgs) -> ExitCode {
    let HistoryCommand::Export(a) = &args.command;
    let cfg = match settings::load(&a.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("edge-gateway history export: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match export(a, &cfg) {
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

fn export(a: &ExportArgs, cfg: &settings::GatewayConfig) -> anyhow::Result<String> {
    let now = gateway_core::Timestamp::now().as_millis();
    let from = parse_time(&a.from, now).context("--from: expected now, -24h, ms or RFC 3339")?;
    let to = parse_time(&a.to, now).context("--to: expected now, -24h, ms or RFC 3339")?;
    // A range given backwards would export an empty CSV, read as "no data".
    if from > to {
        anyhow::bail!(
            "--from ({}) is after --to ({}): nothing lies between them; swap the two",
            a.from,
            a.to
        );
    }
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
        let keep = narrowing(a, &cfg.devices, &h, rows.iter().map(|r| r.device.as_str()))?;
        return Ok(alerts_csv(
            rows.iter().filter(|r| keep(&r.device, &r.metric)),
        ));
    }
    if a.commands {
        let rows = h.command_log(from, to)?;
        let keep = narrowing(a, &cfg.devices, &h, rows.iter().map(|r| r.device.as_str()))?;
        return Ok(commands_csv(
            rows.iter().filter(|r| keep(&r.device, &r.metric)),
        ));
    }
    let (Some(device), Some(metric)) = (&a.device, &a.metric) else {
        anyhow::bail!("--device and --metric are required without --alerts or --commands");
    };
    let known = h.devices()?;
    let ids: Vec<String> = known.iter().map(|k| k.id.clone()).collect();
    let device = resolve_device(device, &cfg.devices, &ids)?;
    let metrics = known
        .iter()
        .find(|k| k.id == device)
        .map(|k| k.metrics.clone())
        .unwrap_or_default();
    if !metrics.iter().any(|m| m == metric) {
        anyhow::bail!(
            "device {device} has no metric \"{metric}\" in history; it has {}",
            metrics.join(", ")
        );
    }
    let points = h.series(&device, metric, from, to, step)?;
    Ok(csv(&device, metric, &points))
}

/// What `--device` (an id or a name, among the devices history holds and
/// `more`) and `--metric` keep of a log's rows, by their device and metric.
fn narrowing<'a, 'b>(
    a: &'a ExportArgs,
    configured: &[gateway_core::config::DeviceConfig],
    h: &History,
    more: impl Iterator<Item = &'b str>,
) -> anyhow::Result<impl Fn(&str, &str) -> bool + 'a> {
    let device = match &a.device {
        Some(d) => {
            let mut ids: Vec<String> = h.devices()?.into_iter().map(|k| k.id).collect();
            ids.extend(more.map(str::to_string));
            Some(resolve_device(d, configured, &ids)?)
        }
        None => None,
    };
    Ok(move |d: &str, m: &str| {
        device.as_deref().is_none_or(|w| w == d) && a.metric.as_deref().is_none_or(|w| w == m)
    })
}

/// The device id `--device` means among the ids history holds: an id as
/// the gateway stores it (a MAC or EUI in any case), else a `[[device]]`
/// name (exactly, then in any case). A name typed where an id was
/// expected must not give an empty export that reads as "no data".
fn resolve_device(
    given: &str,
    configured: &[gateway_core::config::DeviceConfig],
    held: &[String],
) -> anyhow::Result<String> {
    if let Ok(id) = gateway_core::DeviceId::new(given) {
        if held.iter().any(|h| h == id.as_str()) {
            return Ok(id.to_string());
        }
    }
    let named = |same: &dyn Fn(&str) -> bool| -> Vec<String> {
        configured
            .iter()
            .filter(|d| same(&d.name))
            .map(|d| d.id.to_string())
            .collect()
    };
    let mut ids = named(&|n| n == given);
    if ids.is_empty() {
        ids = named(&|n| n.to_lowercase() == given.to_lowercase());
    }
    match ids.as_slice() {
        [id] if held.contains(id) => Ok(id.clone()),
        [id] => anyhow::bail!("device \"{given}\" ({id}) has nothing in history yet"),
        [] => {
            let mut list: Vec<String> = held
                .iter()
                .map(|h| match configured.iter().find(|d| d.id.as_str() == h) {
                    Some(d) => format!("{h} ({})", d.name),
                    None => h.clone(),
                })
                .collect();
            list.sort();
            list.dedup();
            anyhow::bail!(
                "no such device \"{given}\": expected a device id or a [[device]] name; history holds {}",
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            )
        }
        many => anyhow::bail!(
            "\"{given}\" is the name of {} devices ({}): give the id",
            many.len(),
            many.join(", ")
        ),
    }
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
            gateway_core::outln!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway passwd: {e}");
            ExitCode::FAILURE
        }
    }
}
