//! The Skoltech Anomaly Benchmark (SKAB) as series the NAB scorer reads:
//! the external check of the anomaly detector, a corpus no default is
//! chosen on. Shared by the `skab` example and its opt-in guard.
//!
//! SKAB (github.com/waico/SKAB, GPL-3.0, so never in this repository) is a
//! water-circulation rig recorded once a second: accelerometers on the
//! pump, its current and voltage, pressure, temperatures and the flow,
//! with each experiment's fault (a valve closed, a leak, cavitation...)
//! labelled row by row (`anomaly` = 1). Its files are 20-minute cuts of
//! three days of recording (`anomaly-free/` is the rig running normally on
//! the first of them), and consecutive cuts overlap by the same rows. A
//! gateway on that rig would have seen each day whole, so:
//!
//! - **Series.** Every file's rows are grouped by their day and merged in
//!   time order, a timestamp seen in two files kept once (the overlapping
//!   rows are identical). Each of the eight
//!   channels of a day is one series, as one `metric` anomaly rule sees it:
//!   3 days × 8 channels = 24 series. A row is anomalous if any file that
//!   holds it labels it so.
//! - **Windows.** Each run of anomalous rows is one window, from its first
//!   to its last row: the fault from its start (SKAB's changepoint) to its
//!   end. (NAB's windows are its labellers' spans; SKAB's labels are the
//!   experiment's own, so they are taken as they are, not widened.)
//! - **Score.** NAB's standard profile as for the NAB files (probation of
//!   the first 15% of rows, at most 750; the earliest detection in a window
//!   counts; false alarms cost 0.11 each, less just after a window),
//!   normalised. Two figures: *the rig*, each day one series whose alerts
//!   are those of any channel (what one anomaly rule over the rig tells an
//!   operator; the labels are the rig's, not a channel's), the figure a
//!   change must not lower; and *every channel a series*, over all 24.
//!
//! The fault of 1 March's first file starts 557 rows into the day, before
//! the detector's warm-up (1 000 readings at one a second) ends: no setting
//! can catch it, so the figure is for comparing models, not an absolute.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};

use super::nab::{parse_ms, Series};

/// The folders of SKAB's data, each of `N.csv` files.
const FOLDERS: [&str; 4] = ["anomaly-free", "valve1", "valve2", "other"];

/// One merged day: its channel names, rows (epoch ms, values) and the
/// label of each row.
struct Day {
    channels: Vec<String>,
    rows: BTreeMap<i64, (Vec<f64>, bool)>,
}

/// Every channel of every day of the SKAB data under `dir`, in day then
/// channel order, keyed `YYYY-MM-DD/Channel`.
pub fn load(dir: &Path) -> Result<Vec<Series>, Box<dyn Error>> {
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for folder in FOLDERS {
        let path = dir.join(folder);
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        files.sort();
        for file in files {
            read_file(&file, &mut days).map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    let device = DeviceId::new("rig")?;
    let mut out = Vec::new();
    for (date, day) in &days {
        let times: Vec<i64> = day.rows.keys().copied().collect();
        let labels: Vec<bool> = day.rows.values().map(|r| r.1).collect();
        let windows = runs(&labels);
        for (c, channel) in day.channels.iter().enumerate() {
            let metric = MetricName::new(channel.replace(' ', "_"))?;
            let mut readings = Vec::with_capacity(times.len());
            for (&t, (values, _)) in day.rows.iter() {
                let v = values.get(c).copied().ok_or("short row")?;
                readings.push(Reading::new(
                    device.clone(),
                    metric.clone(),
                    v,
                    Timestamp::from_millis(t)?,
                    TimeSource::Event,
                )?);
            }
            out.push(Series {
                key: format!("{date}/{channel}"),
                readings,
                windows: windows.clone(),
                published: BTreeMap::new(),
            });
        }
    }
    if out.is_empty() {
        return Err(format!("no SKAB files under {}", dir.display()).into());
    }
    Ok(out)
}

fn read_file(file: &Path, days: &mut BTreeMap<String, Day>) -> Result<(), Box<dyn Error>> {
    let text = std::fs::read_to_string(file)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split(';').collect();
    let label = header.iter().position(|h| h.trim() == "anomaly");
    // The channels: every column between the time and the labels.
    let channels: Vec<String> = header
        .iter()
        .skip(1)
        .take_while(|h| !matches!(h.trim(), "anomaly" | "changepoint"))
        .map(|h| h.trim().to_string())
        .collect();
    for line in lines {
        let fields: Vec<&str> = line.split(';').collect();
        let Some(t) = fields.first() else { continue };
        if t.trim().is_empty() {
            continue;
        }
        let ms = parse_ms(t.trim()).ok_or("bad timestamp")?;
        let date = t.trim().get(..10).ok_or("bad timestamp")?.to_string();
        let values = fields
            .iter()
            .skip(1)
            .take(channels.len())
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<Vec<f64>, _>>()?;
        let anomalous = label
            .and_then(|i| fields.get(i))
            .is_some_and(|v| v.trim().parse::<f64>().is_ok_and(|v| v > 0.5));
        let day = days.entry(date).or_insert_with(|| Day {
            channels: channels.clone(),
            rows: BTreeMap::new(),
        });
        if day.channels != channels {
            return Err("channels differ from the day's other files".into());
        }
        let row = day.rows.entry(ms).or_insert((values, false));
        row.1 |= anomalous;
    }
    Ok(())
}

/// Each run of `true` as (first, last) index, inclusive.
fn runs(labels: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &a) in labels.iter().enumerate() {
        match (a, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, labels.len() - 1));
    }
    out
}

/// What a parameter set scores on SKAB.
pub struct Scored {
    /// Normalised NAB score over every channel's series.
    pub channels: f64,
    /// Normalised NAB score of each day's alerts from any channel, as one
    /// anomaly rule over the whole rig raises them: what an operator sees.
    pub rig: f64,
    /// Per series: raw score, windows caught, false alarms, alerts.
    pub per_series: Vec<(f64, usize, usize, usize)>,
}

fn normalised(raw: f64, windows: f64) -> f64 {
    100.0 * (raw + windows) / (2.0 * windows)
}

/// Scores every series under `hits_of` (a series' alert indices).
pub fn score(series: &[Series], hits_of: impl Fn(&Series) -> Vec<usize>) -> Scored {
    let mut per_series = Vec::new();
    let (mut raw, mut windows) = (0.0, 0.0);
    let mut by_day: BTreeMap<&str, (&Series, Vec<usize>)> = BTreeMap::new();
    for s in series {
        let hits = hits_of(s);
        let r = super::nab::score(s, &hits);
        raw += r.total;
        windows += s.windows.len() as f64;
        per_series.push((r.total, r.caught, r.false_alarms, hits.len()));
        let day = s.key.split('/').next().unwrap_or("");
        by_day.entry(day).or_insert((s, Vec::new())).1.extend(hits);
    }
    let (mut rig_raw, mut rig_windows) = (0.0, 0.0);
    for (s, mut hits) in by_day.into_values() {
        hits.sort_unstable();
        hits.dedup();
        rig_raw += super::nab::score(s, &hits).total;
        rig_windows += s.windows.len() as f64;
    }
    Scored {
        channels: normalised(raw, windows),
        rig: normalised(rig_raw, rig_windows),
        per_series,
    }
}
