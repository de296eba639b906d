//! The NAB corpus and its scorer (standard profile), shared by the
//! `nab_all` example and the regression test. A port of
//! the NAB tools' `nab_score.py`, which reproduces NAB's published
//! per-file scores.

// Each user (the example, the test) takes the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};

/// One NAB file: its readings, label windows (row indices, inclusive) and
/// the published detectors' scores on it.
pub struct Series {
    pub key: String,
    pub readings: Vec<Reading>,
    pub windows: Vec<(usize, usize)>,
    pub published: BTreeMap<String, f64>,
}

pub struct Corpus {
    pub series: Vec<Series>,
}

impl Corpus {
    /// Every file of `windows.json` under `dir` whose key contains `only`.
    pub fn load(dir: &Path, only: &str) -> Result<Self, Box<dyn Error>> {
        let windows: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("windows.json"))?)?;
        let published: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("published_scores.json"))?)?;
        let device = DeviceId::new("s1")?;
        let metric = MetricName::new("value")?;
        let mut series = Vec::new();
        for (key, spans) in windows
            .as_object()
            .ok_or("windows.json: expected an object")?
        {
            if !key.contains(only) {
                continue;
            }
            let text = std::fs::read_to_string(dir.join(key))?;
            let mut times = Vec::new();
            let mut readings = Vec::new();
            for line in text.lines().skip(1) {
                let Some((t, v)) = line.split_once(',') else {
                    continue;
                };
                let ms = parse_ms(t.trim()).ok_or("bad timestamp")?;
                times.push(ms);
                let at = Timestamp::from_millis(ms)?;
                readings.push(Reading::new(
                    device.clone(),
                    metric.clone(),
                    v.trim().parse()?,
                    at,
                    TimeSource::Event,
                )?);
            }
            let mut wins = Vec::new();
            for w in spans.as_array().ok_or("windows must be a list")? {
                let a = parse_ms(w[0].as_str().ok_or("bad window")?).ok_or("bad window")?;
                let b = parse_ms(w[1].as_str().ok_or("bad window")?).ok_or("bad window")?;
                let s = times
                    .iter()
                    .position(|&t| t >= a)
                    .ok_or("window after data")?;
                let e = times
                    .iter()
                    .rposition(|&t| t <= b)
                    .ok_or("window before data")?;
                wins.push((s, e));
            }
            let published = published[key.as_str()]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default();
            series.push(Series {
                key: key.clone(),
                readings,
                windows: wins,
                published,
            });
        }
        Ok(Self { series })
    }
}

/// NAB's family of a file key, as the issue reports them.
pub fn family(key: &str) -> &'static str {
    match key.split('/').next().unwrap_or("") {
        "realKnownCause" => "realKnownCause",
        "artificialNoAnomaly" | "artificialWithAnomaly" => "artificial",
        "realAWSCloudwatch" => "AWS",
        "realTraffic" => "traffic",
        "realTweets" => "tweets",
        "realAdExchange" => "ad exchange",
        _ => "other",
    }
}

/// One anomaly rule with the defaults and this sensitivity, as
/// `nab_eval.py` configures it.
pub fn rules(sensitivity: f64) -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        rule: Vec<RuleConfig>,
    }
    let text = format!(
        "[[rule]]\nname = \"anomaly\"\nkind = \"anomaly\"\nmetric = \"value\"\nsensitivity = {sensitivity}\n"
    );
    toml::from_str::<File>(&text)
        .map(|f| f.rule)
        .unwrap_or_default()
}

pub struct Score {
    pub total: f64,
    pub caught: usize,
    pub false_alarms: usize,
}

fn sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// NAB standard profile score of detections at these row indices.
pub fn score(s: &Series, hits: &[usize]) -> Score {
    score_rows(s.readings.len(), &s.windows, hits)
}

/// [`score`] of a series of `n` rows with these label windows.
pub fn score_rows(n: usize, windows: &[(usize, usize)], hits: &[usize]) -> Score {
    score_after_probation(n, probation_of(n), windows, hits)
}

/// NAB's probationary period of a file of `n` rows: its first 15%, at most
/// 750 rows, where no detection counts.
pub fn probation_of(n: usize) -> usize {
    ((0.15 * n as f64).floor()).min(750.0) as usize
}

/// [`score_rows`] with the probation given: a file whose rows were
/// changed keeps the probation of the file it came from, or rows lost
/// before a window would move that window into it and its detection
/// would no longer count.
pub fn score_after_probation(
    n: usize,
    probation: usize,
    windows: &[(usize, usize)],
    hits: &[usize],
) -> Score {
    let max_tp = sigmoid(-1.0);
    let mut best: Vec<f64> = vec![-1.0; windows.len()];
    let (mut fp_sum, mut fps) = (0.0, 0);
    for &i in hits.iter().filter(|&&i| i >= probation && i < n) {
        if let Some(w) = windows.iter().position(|&(a, b)| i >= a && i <= b) {
            let (a, b) = windows[w];
            let width = (b - a + 1) as f64;
            let v = sigmoid(-((b - i + 1) as f64) / width) / max_tp;
            best[w] = best[w].max(v);
            continue;
        }
        let prev = windows
            .iter()
            .filter(|&&(_, b)| b < i)
            .max_by_key(|&&(_, b)| b);
        fp_sum += match prev {
            None => -0.11,
            Some(&(a, b)) => sigmoid((i - b) as f64 / (b - a) as f64) * 0.11,
        };
        fps += 1;
    }
    Score {
        total: best.iter().sum::<f64>() + fp_sum,
        caught: best.iter().filter(|&&v| v > -1.0).count(),
        false_alarms: fps,
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DD HH:MM:SS`, taken as UTC.
pub fn parse_ms(t: &str) -> Option<i64> {
    let num = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000)
}
