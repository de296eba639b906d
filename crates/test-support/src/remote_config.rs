//! Pushed configurations ([remote_config]) as a fleet tool makes them, signed
//! by Python's `cryptography` (an Ed25519 implementation that is not ours),
//! and the gateway's reported state as the cloud broker holds it.

use std::time::Duration;

use crate::{publish, Message, Subscriber};

use crate::gateway::{GatewayProcess, WAIT};
use crate::web::{http_get, try_get};

pub const GATEWAY: &str = "gw-rc";
pub const PREFIX: &str = "building/hq";

/// Ed25519 seeds (hex): the fleet's key, and one the gateway does not know.
pub const FLEET_KEY: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
pub const OTHER_KEY: &str = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7";

const SIGNER: &str = r#"
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
if sys.argv[2] == "verify":
    m = json.loads(sys.stdin.read())
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(sys.argv[1]))
    text = f"{m['serial']}\n{m['version']}\n{m['sha256']}" + (f"\n{m['gateway']}" if "gateway" in m else "")
    public.verify(base64.b64decode(m["signature"]), text.encode())
    assert hashlib.sha256(m["config"].encode()).hexdigest() == m["sha256"]
    print("verified")
    sys.exit(0)
key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sys.argv[1]))
if sys.argv[2] == "public":
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    print(base64.b64encode(raw).decode())
elif sys.argv[2] == "pem":
    print(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
else:
    serial, version, config = int(sys.argv[2]), sys.argv[3], sys.stdin.read()
    gateway = sys.argv[4] if len(sys.argv) > 4 else None
    sha = hashlib.sha256(config.encode()).hexdigest()
    text = f"{serial}\n{version}\n{sha}" + (f"\n{gateway}" if gateway else "")
    signature = key.sign(text.encode())
    message = {"version": version, "serial": serial, "sha256": sha, "config": config,
               "signature": base64.b64encode(signature).decode()}
    if gateway:
        message["gateway"] = gateway
    print(json.dumps(message))
"#;

fn python(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::peers_python())
        .arg("-c")
        .arg(SIGNER)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python signer failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The base64 public key of a seed.
pub fn public_key(seed: &str) -> String {
    python(&[seed, "public"], "")
}

/// The seed as a PKCS#8 PEM file's text (what `config push --key` reads).
pub fn pem(seed: &str) -> String {
    python(&[seed, "pem"], "")
}

/// Python's verdict on a message and a base64 public key: "verified", or
/// the signer script fails.
pub fn verify(public: &str, message: &str) -> String {
    python(&[public, "verify"], message)
}

/// The desired-state message for `config`, signed with `seed`.
pub fn signed(seed: &str, serial: u64, version: &str, config: &str) -> String {
    python(&[seed, &serial.to_string(), version], config)
}

/// The same, for `gateway` alone (its id signed as a fourth line).
pub fn signed_for(seed: &str, serial: u64, version: &str, config: &str, gateway: &str) -> String {
    python(&[seed, &serial.to_string(), version, gateway], config)
}

/// The desired-state topic of the test gateway.
pub fn config_topic() -> String {
    format!("{PREFIX}/gateway/{GATEWAY}/config")
}

/// Publishes a desired state, retained, as a fleet tool would.
pub async fn push(cloud: u16, message: &str) {
    publish(cloud, &config_topic(), message, 1, true).await;
}

/// The gateway's reported states, as the cloud broker relays them.
pub struct States(pub Subscriber);

impl States {
    pub async fn start(cloud: u16) -> Self {
        Self(Subscriber::start(cloud, &format!("{PREFIX}/gateway/{GATEWAY}/config/state")).await)
    }

    /// The first state with this serial and status (skipping others).
    pub async fn wait(&mut self, serial: u64, status: &str, within: Duration) -> serde_json::Value {
        let m: Option<Message> = self
            .0
            .wait_for(within, |m| {
                let j = m.json();
                j["serial"].as_u64() == Some(serial) && j["status"] == status
            })
            .await;
        m.unwrap_or_else(|| panic!("no reported state {status} for serial {serial}"))
            .json()
    }

    /// Anything reported within `within`.
    pub async fn any(&mut self, within: Duration) -> Option<serde_json::Value> {
        self.0.next(within).await.map(|m| m.json())
    }
}

/// The local gateway.toml: the cloud broker, the building's broker (MQTT
/// adapter `building`), `/health` on `metrics`, `[remote_config]` with the
/// given keys, and `extra` appended.
pub fn base_config(
    cloud: u16,
    building: u16,
    metrics: u16,
    keys: &[String],
    extra: &str,
) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        r#"
[gateway]
id = "{GATEWAY}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{cloud}"
qos = 1
max_backoff = "500ms"

[aggregation]
window = "1s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"

[remote_config]
enabled = true
public_keys = [{keys}]
health_timeout = "3s"

[[adapter]]
type = "mqtt"
name = "building"
url = "mqtt://127.0.0.1:{building}"
topics = ["sensors/{{device}}/{{metric}}"]
max_backoff = "500ms"
{extra}"#,
        keys = keys.join(", ")
    )
}

/// A pushed layer that adds a TCP line adapter on `port` for the device
/// `lab-1`, registers it and watches it with a rule.
pub fn lab_layer(port: u16) -> String {
    format!(
        r#"[[adapter]]
type = "tcp_line"
name = "lab-lines"
bind = "127.0.0.1:{port}"
format = "kv"
device = "lab-1"

[[device]]
id = "lab-1"
name = "Lab bench"

[[rule]]
name = "lab-hot"
kind = "threshold"
metric = "temperature"
device = "lab-1"
max = 30.0
"#
    )
}

/// `/health`'s body once it answers 200.
pub async fn healthy(metrics: u16) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((200, body)) = try_get(metrics, "/health").await {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "/health never 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/health` once healthy with this pushed version applied (`None`: the
/// local files alone) and status.
pub async fn healthy_on(metrics: u16, applied: Option<&str>, status: &str) -> serde_json::Value {
    healthy_running(metrics, applied, Some(status)).await
}

/// `/health` once healthy with this pushed version applied, whatever the
/// last push's status (`None`) or with that status.
pub async fn healthy_running(
    metrics: u16,
    applied: Option<&str>,
    status: Option<&str>,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((200, body)) = try_get(metrics, "/health").await {
            let h: serde_json::Value = serde_json::from_str(&body).unwrap();
            let status_ok = status.is_none_or(|s| h["config"]["status"] == s);
            if h["config"]["applied"].as_str() == applied && status_ok {
                return h;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health never showed {applied:?} {status:?}: {:?}",
            try_get(metrics, "/health").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The adapters `/health` lists, sorted.
pub fn adapters(health: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = health["adapters"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Sends one line to a TCP line adapter (send-and-close, as a sensor does).
pub async fn send_line(port: u16, line: &str) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
}

/// How many times the gateway restarted in place so far (its log).
pub fn restarts(gw: &mut GatewayProcess) -> usize {
    gw.take_log();
    gw.seen
        .iter()
        .filter(|l| l.contains("Restarting on the configuration"))
        .count()
}

/// `/health` answers (any status): the gateway serves.
pub async fn answers(metrics: u16) {
    let _ = http_get(metrics, "/health").await;
}
