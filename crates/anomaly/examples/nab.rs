//! Scores the detector with the NAB standard profile on one series.
//!
//! ```text
//! cargo run -p anomaly --release --example nab -- FILE.csv windows.json [--sensitivity S] [--trace]
//! ```
//!
//! FILE.csv is NAB's `timestamp,value`; windows.json is NAB's
//! `combined_windows.json` shape, looked up by the file's name. Prints the
//! detections and the score (the maximum is the number of windows).

use std::error::Error;

use anomaly::{Detector, DEFAULT_SENSITIVITY};

fn sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, labels) = match (args.first(), args.get(1)) {
        (Some(f), Some(l)) => (f.clone(), l.clone()),
        _ => return Err("usage: nab FILE.csv windows.json [--sensitivity S] [--trace]".into()),
    };
    let mut sensitivity = DEFAULT_SENSITIVITY;
    if let Some(i) = args.iter().position(|a| a == "--sensitivity") {
        sensitivity = args
            .get(i + 1)
            .ok_or("--sensitivity needs a value")?
            .parse()?;
    }
    let trace = args.iter().any(|a| a == "--trace");

    let text = std::fs::read_to_string(&file)?;
    let mut rows: Vec<(String, f64)> = Vec::new();
    for line in text.lines().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            continue;
        };
        rows.push((t.trim().to_string(), v.trim().parse()?));
    }
    let name = std::path::Path::new(&file)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("bad file name")?;
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&labels)?)?;
    let spans = all
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.ends_with(name))
                .map(|(_, v)| v.clone())
        })
        .ok_or("no windows for this file")?;
    let key = |s: &str| s.chars().take(19).collect::<String>();
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for w in spans.as_array().ok_or("windows must be a list")? {
        let (a, b) = (
            key(w[0].as_str().ok_or("bad window")?),
            key(w[1].as_str().ok_or("bad window")?),
        );
        let s = rows
            .iter()
            .position(|(t, _)| key(t) >= a)
            .ok_or("window after data")?;
        let e = rows
            .iter()
            .rposition(|(t, _)| key(t) <= b)
            .ok_or("window before data")?;
        windows.push((s, e));
    }

    let n = rows.len();
    let probation = ((0.15 * n as f64).floor() as usize).min(750);
    let mut det = Detector::new();
    let mut detections = Vec::new();
    for (i, (t, v)) in rows.iter().enumerate() {
        let verdict = det.observe(parse_ms(t).ok_or("bad timestamp")?, *v, sensitivity);
        if trace {
            println!(
                "{i}\t{t}\t{v:.3}\t{:.3}\t{}",
                verdict.score,
                det.zs
                    .iter()
                    .map(|z| format!("{z:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if verdict.anomaly && i >= probation {
            detections.push(i);
        }
    }

    let mut score = 0.0;
    let mut fps = 0;
    for &(s, e) in &windows {
        let w = (e - s + 1) as f64;
        match detections.iter().find(|&&i| i >= s && i <= e) {
            Some(&i) => {
                let p = -((e - i + 1) as f64) / w;
                let tp = sigmoid(p) / sigmoid(-1.0);
                println!(
                    "window {} .. {}: first detection {} ({}) scores {tp:+.4}",
                    rows[s].0, rows[e].0, i, rows[i].0
                );
                score += tp;
            }
            None => {
                println!("window {} .. {}: missed, -1", rows[s].0, rows[e].0);
                score -= 1.0;
            }
        }
    }
    for &i in &detections {
        if windows.iter().any(|&(s, e)| i >= s && i <= e) {
            continue;
        }
        fps += 1;
        let cost = match windows
            .iter()
            .filter(|&&(_, e)| e < i)
            .max_by_key(|&&(_, e)| e)
        {
            None => -0.11,
            Some(&(s, e)) => {
                let w = (e - s + 1) as f64;
                0.11 * sigmoid((i - e) as f64 / (w - 1.0))
            }
        };
        println!("false positive {} ({}) costs {cost:+.4}", i, rows[i].0);
        score += cost;
    }
    println!(
        "{name}: rows {n}, probation {probation}, detections {}, false positives {fps}, score {score:.4} of {}",
        detections.len(),
        windows.len()
    );
    Ok(())
}

/// Milliseconds since the epoch of `YYYY-MM-DD HH:MM:SS`, taken as UTC.
fn parse_ms(t: &str) -> Option<i64> {
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
