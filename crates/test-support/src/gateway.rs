//! Running the real `edge-gateway` binary as a child process, and what
//! tests read from what it sends upstream.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::Message;

pub const WAIT: Duration = Duration::from_secs(20);

/// The `edge-gateway` binary under test: `EDGE_GATEWAY_BIN` (the soak
/// runs against an installed or older build), else the one Cargo built
/// beside the test executable (`target/…/deps/…` → `target/…/edge-gateway`).
pub fn gateway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("EDGE_GATEWAY_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/…/deps");
    dir.join(format!("edge-gateway{}", std::env::consts::EXE_SUFFIX))
}

/// A gateway process with its log lines available to the test.
pub struct GatewayProcess {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl GatewayProcess {
    /// Writes `config` to a temp file and runs `edge-gateway run -c` on it.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config)
    }

    /// Like `start`, with a given directory: `@STATE_DIR@` in the config
    /// becomes `{dir}/state`, so a restarted gateway finds its outbox again.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Self {
        Self::start_in_with(dir, config, &[])
    }

    /// Like `start_in`, with extra environment variables (fault hooks).
    pub fn start_in_with(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Self {
        let config = config.replace(
            "@STATE_DIR@",
            &dir.path().join("state").display().to_string(),
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(gateway_bin());
        // An EDGE_GATEWAY__SECTION__KEY in the developer's shell would
        // override the test's config.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("EDGE_GATEWAY__") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info,sinks=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn edge-gateway");
        let (tx, lines) = mpsc::unbounded_channel();
        // EDGE_TEST_LOG_FILE keeps every process's log of a long test (the
        // soak restarts the gateway a dozen times) for a post-mortem.
        let keep = std::env::var_os("EDGE_TEST_LOG_FILE").and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        let keep = keep.map(|f| std::sync::Arc::new(std::sync::Mutex::new(f)));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream).lines();
                while let Ok(Some(line)) = r.next_line().await {
                    if let Some(file) = &keep {
                        use std::io::Write;
                        let _ = writeln!(file.lock().unwrap(), "{line}");
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
            dir,
            config_path,
        }
    }

    /// Waits for a log line containing `needle` (lines already seen count).
    pub async fn wait_for_log(&mut self, needle: &str) {
        if self.seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                _ => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until `needle` has appeared in `n` log lines.
    pub async fn wait_for_log_count(&mut self, needle: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.seen.iter().filter(|l| l.contains(needle)).count() < n {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                _ => panic!(
                    "fewer than {n} log lines with {needle:?}; log so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Reads the rest of the log (after the process exited).
    pub async fn drain_log(&mut self) {
        while let Ok(Some(line)) = tokio::time::timeout(WAIT, self.lines.recv()).await {
            self.seen.push(line);
        }
    }

    /// Takes the lines logged so far, without waiting.
    pub fn take_log(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The last `key=value` number logged under `key`.
    pub fn last_logged(&self, key: &str) -> Option<f64> {
        let pat = format!("{key}=");
        self.seen.iter().rev().find_map(|l| {
            let plain = strip_ansi(l);
            let at = plain.find(&pat)?;
            let rest = &plain[at + pat.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("process is running");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// `kill -9`, then the same gateway again on the same state directory
    /// (with `env`, fault hooks), once it is subscribed to its local broker.
    pub async fn kill_and_restart(mut self, config: &str, env: &[(&str, &str)]) -> Self {
        self.signal("KILL");
        self.wait_exit().await;
        let mut gw = Self::start_in_with(self.dir, config, env);
        gw.wait_for_log("Subscribed").await;
        gw
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("gateway did not exit in time")
            .unwrap();
        status.code()
    }
}

/// Notes a test's own step (a kill, a fault) in `EDGE_TEST_LOG_FILE`
/// between the gateway's lines.
pub fn mark_in_log(step: &str) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("EDGE_TEST_LOG_FILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "=== test: {step}");
        }
    }
}

/// A config for tests: both sides on loopback brokers, short windows.
pub fn config(
    gateway_id: &str,
    local_port: u16,
    upstream_port: u16,
    window: &str,
    grace: &str,
) -> String {
    format!(
        r#"
[gateway]
id = "{gateway_id}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream_port}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "{window}"
grace = "{grace}"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{local_port}"
topics = [
  "sensors/data/{{device}}/{{metric}}",
  "sensors/{{device}}",
  {{ pattern = "esp32/{{device}}/csv", format = "csv", columns = ["temperature", "pressure", "humidity", "gas"] }},
  {{ pattern = "senml/#", format = "senml" }},
  {{ pattern = "zigbee2mqtt/{{device}}", format = "zigbee2mqtt" }},
  "tele/{{device}}/SENSOR",
]
max_backoff = "1s"

[[device]]
id = "a2:b2:c2:d2:e2:f2"
name = "Living Room"
room = "living"
floor = 1
"#
    )
}

/// Per distinct message id: device → (count, sum, sum of squares).
pub fn totals(msgs: &[Message]) -> BTreeMap<String, (u64, f64, f64)> {
    let mut seen = HashMap::new();
    for m in msgs.iter().filter(|m| m.topic.ends_with("/aggregated")) {
        let j = m.json();
        seen.insert(j["id"].as_str().unwrap().to_string(), j);
    }
    let mut t: BTreeMap<String, (u64, f64, f64)> = BTreeMap::new();
    for j in seen.values() {
        let e = t
            .entry(j["device"].as_str().unwrap().to_string())
            .or_default();
        for s in j["metrics"].as_object().unwrap().values() {
            let n = s["count"].as_u64().unwrap();
            let (avg, std) = (s["avg"].as_f64().unwrap(), s["std"].as_f64().unwrap());
            e.0 += n;
            e.1 += n as f64 * avg;
            e.2 += n as f64 * (std * std + avg * avg);
        }
    }
    t
}

pub fn distinct_ids(msgs: &[Message]) -> usize {
    let mut ids: Vec<String> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/aggregated"))
        .map(|m| m.json()["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids.len()
}

pub fn rel_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Ids that arrived more than once with different statistics: a consumer
/// deduplicating on `id` would keep an arbitrary one.
pub fn conflicting_ids(msgs: &[Message]) -> Vec<String> {
    let mut seen: HashMap<String, serde_json::Value> = HashMap::new();
    let mut bad = Vec::new();
    for m in msgs.iter().filter(|m| m.topic.ends_with("/aggregated")) {
        let j = m.json();
        let id = j["id"].as_str().unwrap().to_string();
        match seen.get(&id) {
            Some(first) if first["metrics"] != j["metrics"] => bad.push(id),
            Some(_) => {}
            None => {
                seen.insert(id, j);
            }
        }
    }
    bad
}

/// Direct statistics over a series, as numpy computes them (population std).
pub fn stats(values: &[f64]) -> (usize, f64, f64, f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (values.len(), mean, min, max, var.sqrt())
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Logs are plain when piped, but be robust to colour codes anyway.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The hash `edge-gateway passwd` prints for `password`, as a user puts it
/// into `[[dashboard.user]] password_hash`.
pub async fn password_hash(password: &str) -> String {
    let mut p = Command::new(gateway_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .await
        .unwrap();
    let out = p.wait_with_output().await.unwrap();
    assert!(out.status.success(), "edge-gateway passwd failed");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// A cloud command stamped now (`"ts"`, which the gateway requires),
/// unless it says its own time.
pub fn with_ts(mut body: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = body.as_object_mut() {
        obj.entry("ts").or_insert_with(|| {
            serde_json::Value::String(
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        });
    }
    body
}
