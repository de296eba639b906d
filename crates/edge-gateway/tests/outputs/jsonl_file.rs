//! The JSON-lines file output from outside, through the real binary:
//! CSV samples over MQTT, a file whose directory is missing (a mount not
//! there yet) while the gateway is killed, then the same gateway on the
//! same state once it is back: every reading, window and alert reaches the
//! file, rotated by size, each line a JSON object a shipper can read.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{now_ms, GatewayProcess};
use test_support::{publish_lines, Mosquitto};

fn config(local: u16, path: &Path) -> String {
    format!(
        r#"
[gateway]
id = "gw-jsonl"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
enabled = false

[aggregation]
window = "1s"
grace = "1s"

[[adapter]]
type = "mqtt"
name = "bench-csv"
url = "mqtt://127.0.0.1:{local}"
topics = [
  {{ pattern = "bench/{{device}}/csv", format = "csv", columns = ["ts", "temperature"] }},
]
max_backoff = "1s"

[[sink]]
type = "jsonl"
name = "export"
path = "{path}"
write = ["readings", "aggregates", "alerts", "statuses"]
rotate_bytes = "4KiB"
keep = 20

[[rule]]
name = "bench-hot"
kind = "threshold"
metric = "temperature"
max = 25.0
"#,
        path = path.display()
    )
}

/// Every line of the file and its rotated copies, oldest first.
fn all_lines(path: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = (1..=20)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .collect();
    files.push(path.to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        assert!(
            text.len() <= 4096,
            "{} is past rotate_bytes: {} bytes",
            f.display(),
            text.len()
        );
        assert!(text.is_empty() || text.ends_with('\n'), "a torn line");
        for line in text.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    }
    out
}

/// Distinct readings (device, ts) and the samples counted by distinct
/// windows: what a consumer de-duplicating on `id` sees.
fn seen(lines: &[serde_json::Value]) -> (BTreeSet<String>, u64, usize) {
    let mut readings = BTreeSet::new();
    let mut windows = BTreeMap::new();
    let mut raised = 0;
    for l in lines {
        match l["type"].as_str() {
            Some("reading") => {
                assert_eq!(l["metric"], "temperature");
                readings.insert(format!("{}@{}", l["device"], l["ts"]));
            }
            Some("aggregate") => {
                let n = l["metrics"]["temperature"]["count"].as_u64().unwrap_or(0);
                windows.insert(l["id"].as_str().unwrap().to_string(), n);
            }
            Some("alert") if l["state"] == "raised" => raised += 1,
            Some("alert" | "status") => {}
            other => panic!("unknown line type {other:?}: {l}"),
        }
    }
    (readings, windows.values().sum(), raised)
}

#[tokio::test]
async fn lines_wait_in_the_outbox_through_a_missing_directory_and_a_kill_then_reach_the_rotated_file(
) {
    let local = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("export");
    // Not a directory: no user, root included, can create the file.
    std::fs::write(&mount, b"").unwrap();
    let path = mount.join("events.jsonl");
    let config = config(local.port(), &path);
    let mut gw = GatewayProcess::start_in(dir, &config);
    gw.wait_for_log("Subscribed").await;

    // 60 samples over 3 s, the last ones above the rule's 25 °C.
    let start = now_ms();
    let lines: Vec<String> = (0..60)
        .map(|i| format!("{},{}", start + i * 50, 20.0 + i as f64 * 0.1))
        .collect();
    publish_lines(local.port(), "bench/bench-1/csv", &lines, 1).await;
    gw.wait_for_log("Cannot write the JSON-lines file").await;

    gw.signal("KILL");
    gw.wait_exit().await;
    std::fs::remove_file(&mount).unwrap();
    let mut gw = GatewayProcess::start_in(gw.dir, &config);
    gw.wait_for_log("JSON-lines output started").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = all_lines(&path);
        let (readings, counted, raised) = seen(&got);
        if readings.len() == 60 && counted == 60 && raised >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 60 s: {} readings, {counted} samples in windows, {raised} raised, of {} lines",
            readings.len(),
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        Path::new(&format!("{}.1", path.display())).exists(),
        "rotated at 4 KiB"
    );
    let first = &all_lines(&path)[0];
    assert_eq!(first["gateway"], "gw-jsonl");
}
