//! `edge-gateway replay`: run the config's alert rules over a CSV of past
//! readings, in event time and as fast as the machine allows. Each alert is
//! printed as one JSON line on stdout, the same payload the gateway
//! publishes upstream; a summary goes to stderr. This is how rules are tuned
//! against last month's data, and how the detector is scored.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use chrono::NaiveDateTime;
use gateway_core::clock::zone::LOCAL;
use gateway_core::config::RuleKind;
use gateway_core::{DeviceId, DeviceRegistry, MetricName, Reading, TimeSource, Timestamp};
use gateway_settings as settings;
use pipeline::fanout::alert_event;
use rules::{Alert, AlertState, Engine};
use sinks::mqtt_upstream::Renderer;

/// EX_USAGE, EX_DATAERR, EX_NOINPUT and EX_CONFIG from sysexits.h.
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_CONFIG: u8 = 78;
/// Files bigger than this get a progress bar (on a terminal).
const PROGRESS_BYTES: u64 = 1024 * 1024;
/// Bad rows reported one by one before only counting them.
const SHOWN_BAD_ROWS: usize = 10;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The config file whose [[rule]] tables are run.
    #[arg(short, long)]
    config: PathBuf,
    /// `timestamp,value` rows (or `timestamp;value` with a decimal comma,
    /// as a spreadsheet in a European locale saves them, or tab-separated;
    /// further columns are ignored); a header line is skipped. Timestamps
    /// are `2013-12-10 06:25:00` (UTC) or RFC 3339.
    #[arg(long)]
    csv: PathBuf,
    /// The device the readings are from.
    #[arg(long)]
    device: String,
    /// The metric the values are.
    #[arg(long)]
    metric: String,
    /// Runs every anomaly rule at this sensitivity in (0, 1] instead of
    /// its configured one: try another setting on past data.
    #[arg(long)]
    sensitivity: Option<f64>,
}

/// Alerts of one rule over the file, and why the anomaly ones fired.
#[derive(Default)]
struct Counts {
    raised: u64,
    cleared: u64,
    /// Raises held back by the rule's cooldown (not printed: they never
    /// go upstream).
    suppressed: u64,
    reasons: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn add(&mut self, a: &Alert) {
        match a.state {
            AlertState::Raised => self.raised += 1,
            AlertState::Cleared => self.cleared += 1,
            AlertState::Suppressed => self.suppressed += 1,
        }
        if let Some(e) = &a.evidence {
            *self.reasons.entry(e.reason.as_str()).or_default() += 1;
        }
    }
}

/// Parses `2013-12-10 06:25:00[.fff]` as UTC, or RFC 3339.
fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim().trim_matches('"');
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Some(t);
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()?;
    Timestamp::from_millis(naive.and_utc().timestamp_millis()).ok()
}

/// One row's time and value: `timestamp,value`, or as a spreadsheet set
/// to a European locale saves it (`;` between the fields, a decimal
/// comma: `2026-11-21 10:00:00;21,5`), or tab-separated. Fields may be
/// quoted; further columns are ignored.
fn parse_row(text: &str) -> Option<(Timestamp, f64)> {
    let separator = if text.contains(';') {
        ';'
    } else if text.contains('\t') {
        '\t'
    } else {
        ','
    };
    let mut fields = text.split(separator);
    let at = parse_time(fields.next()?)?;
    let value = fields.next()?.trim().trim_matches('"').trim();
    let decimal_comma = separator != ',' && value.matches(',').count() == 1 && !value.contains('.');
    let value: f64 = if decimal_comma {
        value.replacen(',', ".", 1).parse().ok()?
    } else {
        value.parse().ok()?
    };
    Some((at, value))
}

fn fail(code: u8, message: String) -> ExitCode {
    eprintln!("edge-gateway replay: {message}");
    ExitCode::from(code)
}

/// Runs the subcommand.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let cfg = match settings::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(EX_CONFIG, e.to_string()),
    };
    let device = match DeviceId::new(args.device.as_str()) {
        Ok(d) => d,
        Err(e) => return fail(EX_USAGE, format!("--device: {e}")),
    };
    let metric = match MetricName::new(args.metric.as_str()) {
        Ok(m) => m,
        Err(e) => return fail(EX_USAGE, format!("--metric: {e}")),
    };
    let mut rules = cfg.rules.clone();
    if let Some(s) = args.sensitivity {
        if !(s > 0.0 && s <= 1.0) {
            return fail(
                EX_USAGE,
                format!("--sensitivity: expected a number in (0, 1], got {s}"),
            );
        }
        for rule in rules.iter_mut().filter(|r| r.kind == RuleKind::Anomaly) {
            rule.sensitivity = Some(s);
        }
    }
    if rules.is_empty() {
        return fail(
            EX_CONFIG,
            format!("{} has no [[rule]]", args.config.display()),
        );
    }
    let file = match std::fs::File::open(&args.csv) {
        Ok(f) => f,
        Err(e) => {
            return fail(
                EX_NOINPUT,
                format!("cannot read {}: {e}", args.csv.display()),
            )
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = (size > PROGRESS_BYTES && std::io::stderr().is_terminal())
        .then(|| indicatif::ProgressBar::new(size));

    let renderer = Renderer {
        gateway_id: cfg.gateway.id.clone(),
        prefix: cfg.topic_prefix(),
        registry: DeviceRegistry::from_config(&cfg.devices),
    };
    // As the gateway states them, but for `[[adapter]] units`: a CSV
    // replay comes through no adapter.
    let units = cfg.units(gateway_core::Sources::default());
    let mut engine = Engine::new(&rules, &cfg.devices);
    // "local" would make the same CSV and config learn differently on
    // another machine (a benchmark's series, read on New York's clocks,
    // lost a labelled day at each change of daylight saving time): a zone
    // is used only when named.
    if cfg.gateway.timezone.trim() != LOCAL {
        match cfg.gateway.zone() {
            Ok(zone) => engine.set_zone(zone),
            Err(e) => return fail(EX_CONFIG, format!("gateway.timezone: {e}")),
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let started = Instant::now();
    let (mut bad, mut read) = (0usize, 0u64);
    // The first row that is neither blank nor a reading is taken for a
    // header, whatever its names or quotes.
    let mut header_seen = false;
    let mut per_rule: BTreeMap<String, Counts> = BTreeMap::new();
    // Read whole before any is judged: 16 bytes a row.
    let mut readings: Vec<(Timestamp, f64)> = Vec::new();

    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    EX_DATAERR,
                    format!("{}: line {}: {e}", args.csv.display(), n + 1),
                )
            }
        };
        read += line.len() as u64 + 1;
        if let Some(bar) = &bar {
            if n % 4096 == 0 {
                bar.set_position(read);
            }
        }
        // A spreadsheet's export may begin with a byte-order mark.
        let text = line.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        let Some((at, value)) = parse_row(text).filter(|(_, v)| v.is_finite()) else {
            if !header_seen && readings.is_empty() && bad == 0 {
                header_seen = true;
                continue;
            }
            bad += 1;
            if bad <= SHOWN_BAD_ROWS {
                eprintln!(
                    "{}: line {}: expected timestamp,value (or timestamp;value) with a finite number, got \"{text}\"",
                    args.csv.display(),
                    n + 1
                );
            }
            continue;
        };
        readings.push((at, value));
    }
    // Exports often run newest first (a database's ORDER BY time DESC): fed
    // in file order, every rule judged the series backwards and a file of
    // alarms replayed as "no alerts". Stable: rows of one time keep their
    // order, as the gateway takes them in the order they come.
    let backwards = readings.windows(2).filter(|w| w[1].0 < w[0].0).count();
    if backwards > 0 {
        readings.sort_by_key(|(at, _)| *at);
        eprintln!(
            "{}: {backwards} row(s) earlier than the row before them: replayed in time order",
            args.csv.display()
        );
    }
    let rows = readings.len() as u64;
    let first_last = readings
        .first()
        .zip(readings.last())
        .map(|(f, l)| (f.0, l.0));
    for (at, value) in readings {
        let Ok(reading) =
            Reading::new(device.clone(), metric.clone(), value, at, TimeSource::Event)
        else {
            continue;
        };
        let mut alerts = engine.on_tick(at);
        alerts.extend(engine.on_reading(&reading));
        for a in &alerts {
            per_rule.entry(a.rule.clone()).or_default().add(a);
            if a.state == AlertState::Suppressed {
                continue;
            }
            let info = units.of(
                renderer.registry.get(&a.device).map(|d| &d.units),
                gateway_core::SourceId::UNKNOWN,
                &a.metric,
            );
            let msg = renderer.alert_in(&alert_event(a, gateway_core::SourceId::UNKNOWN), &info);
            let written = out
                .write_all(&msg.payload)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                return fail(EX_DATAERR, format!("writing stdout: {e}"));
            }
        }
    }
    if let Err(e) = out.flush() {
        return fail(EX_DATAERR, format!("writing stdout: {e}"));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    let span = first_last.map_or("no readings".to_string(), |(f, l)| {
        format!("{} .. {}", f.to_rfc3339(), l.to_rfc3339())
    });
    eprintln!(
        "replayed {rows} reading(s) of {device}/{metric} ({span}) in {secs:.3} s ({:.0} readings/s); {bad} bad row(s) skipped",
        rows as f64 / secs.max(1e-9)
    );
    if engine.rules().iter().any(|r| r.kind == RuleKind::Anomaly) {
        let hint = if cfg.gateway.timezone.trim() == LOCAL {
            ": replay reads \"local\" as UTC, so that it learns alike on every machine; name the zone to replay on its clocks"
        } else {
            ""
        };
        eprintln!(
            "  daily and weekly routines read on the clocks of {} (gateway.timezone){hint}",
            engine.zone().name()
        );
    }
    for rule in engine.rules() {
        let counts = per_rule.remove(&rule.name).unwrap_or_default();
        let reasons = if counts.reasons.is_empty() {
            String::new()
        } else {
            let each: Vec<String> = counts
                .reasons
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            format!(" ({})", each.join(", "))
        };
        let sensitivity = rule
            .sensitivity
            .filter(|_| rule.kind == RuleKind::Anomaly)
            .map_or(String::new(), |s| format!(" at sensitivity {s}"));
        eprintln!(
            "  rule {:<20} {:<9} raised {}{reasons}, cleared {}, suppressed by cooldown {}{sensitivity}",
            rule.name,
            rule.kind.as_str(),
            counts.raised,
            counts.cleared,
            counts.suppressed,
        );
    }
    if rows == 0 {
        // Nothing was judged: a script must not read that as "no alerts".
        return fail(EX_DATAERR, format!("no reading in {}", args.csv.display()));
    }
    ExitCode::SUCCESS
}
