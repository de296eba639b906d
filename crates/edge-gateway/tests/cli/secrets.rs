//! No secret anywhere a user or a log shipper reads: a marker in every
//! place a secret goes (broker and InfluxDB passwords, the InfluxDB token,
//! CoAP PSKs, LoRaWAN session keys, a BLE bindkey, a dashboard user's
//! hash, the password of every URL), then `validate --print`, the problems
//! `validate` prints, a run's whole log with every output failing, and
//! every HTTP page are searched for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::GatewayProcess;
use test_support::free_port;

/// The text marker: passwords, the token, a PSK.
const MARKER: &str = "Mk7q-secret-marker";
/// Hex markers for keys that must be hex (16 bytes each).
const HEX_NWK: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e701";
const HEX_APP: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e702";
const HEX_BIND: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e703";
const HEX_PSK: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e704";

/// Environment of the gateway process: every secret variable set to a
/// marker.
fn env() -> Vec<(&'static str, String)> {
    vec![
        ("SECRETS_TEST_UPSTREAM_PW", format!("{MARKER}-upstream")),
        ("SECRETS_TEST_ADAPTER_PW", format!("{MARKER}-adapter")),
        ("SECRETS_TEST_ACTION_PW", format!("{MARKER}-action")),
        ("SECRETS_TEST_INFLUX_PW", format!("{MARKER}-influx")),
        ("SECRETS_TEST_INFLUX_TOKEN", format!("{MARKER}-token")),
        ("SECRETS_TEST_PSK", format!("{MARKER}-psk-env")),
    ]
}

/// Every marker, and what a secret may turn into on the way out (the
/// Basic header InfluxDB gets, upper-case hex).
fn needles(hash: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut n: Vec<String> = vec![MARKER.into(), hash.into()];
    for hex in [HEX_NWK, HEX_APP, HEX_BIND, HEX_PSK] {
        n.push(hex.into());
        n.push(hex.to_uppercase());
    }
    n.push(
        base64::engine::general_purpose::STANDARD
            .encode(format!("influx:{MARKER}-influx"))
            .trim_end_matches('=')
            .to_string(),
    );
    // The hash's own salt and output: a shorter excerpt of it is as bad.
    if let Some(tail) = hash.rsplit('$').next() {
        n.push(tail.to_string());
    }
    n
}

fn assert_clean(what: &str, text: &str, needles: &[String]) {
    for n in needles {
        assert!(
            !text.contains(n.as_str()),
            "{what} shows a secret ({n}):\n{text}"
        );
    }
}

/// Every place a secret can be written, each with a marker; ports that
/// nobody answers, so every output fails and logs it.
fn config(
    dead: u16,
    dash: u16,
    metrics: u16,
    coap: u16,
    lora: u16,
    replay: &str,
    hash: &str,
) -> String {
    format!(
        r#"
[gateway]
id = "gw-secrets"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{dead}"
username = "gw"
password_env = "SECRETS_TEST_UPSTREAM_PW"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
enabled = true
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dash}"

[[dashboard.user]]
name = "ops"
password_hash = "{hash}"

[[adapter]]
type = "mqtt"
name = "local"
url = "mqtt://127.0.0.1:{dead}"
username = "sensor"
password_env = "SECRETS_TEST_ADAPTER_PW"
max_backoff = "1s"
topics = ["sensors/{{device}}"]

[[adapter]]
type = "coap"
name = "coaps"
bind = "127.0.0.1:{coap}"
dtls = "psk"

[[coap.psk]]
identity = "node-7"
key = "{MARKER}-psk"

[[coap.psk]]
identity = "node-8"
key = "env:SECRETS_TEST_PSK"

[[coap.psk]]
identity = "node-9"
key_hex = "{HEX_PSK}"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{lora}"

[[lorawan.device]]
dev_addr = "260B1234"
nwk_s_key = "{HEX_NWK}"
app_s_key = "{HEX_APP}"
codec = "seed_compact"
id = "lora-node"

[[adapter]]
type = "ble"
name = "ble"
source = "replay"
replay_file = "{replay}"
replay_speed = 0

[[ble.device]]
mac = "a4:c1:38:00:00:01"
bindkey = "{HEX_BIND}"

[[sink]]
type = "influxdb"
name = "influx-v1"
url = "http://127.0.0.1:{dead}"
database = "db"
username = "influx"
password_env = "SECRETS_TEST_INFLUX_PW"
max_backoff = "1s"

[[sink]]
type = "influxdb"
name = "influx-v2"
url = "http://127.0.0.1:{dead}"
version = 2
org = "o"
bucket = "b"
token = "env:SECRETS_TEST_INFLUX_TOKEN"
max_backoff = "1s"

[[rule]]
name = "too-hot"
kind = "threshold"
metric = "temperature"
max = 30.0
action = {{ publish = "hvac/cmd", payload = "cool", broker = {{ url = "mqtt://127.0.0.1:{dead}", username = "act", password_env = "SECRETS_TEST_ACTION_PW" }} }}
"#
    )
}

fn validate(dir: &std::path::Path, config: &str, print: bool) -> (Option<i32>, String) {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        config.replace("@STATE_DIR@", &dir.join("state").display().to_string()),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"));
    cmd.args(["validate", "-c"]).arg(&path);
    if print {
        cmd.arg("--print");
    }
    for (k, v) in env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

async fn get(port: u16, path: &str, auth: &str) -> String {
    let r = test_support::web::get_with(port, path, &[("Authorization", auth)]).await;
    r.expect("an answer in time").raw
}

#[tokio::test]
async fn no_secret_in_validate_the_log_or_any_page() {
    let hash = common::password_hash("correct horse").await;
    let needles = needles(&hash);
    let dir = tempfile::tempdir().unwrap();
    let replay = dir.path().join("ble.jsonl");
    std::fs::write(&replay, "").unwrap();
    let (dead, dash, metrics, coap, lora) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let cfg = config(
        dead,
        dash,
        metrics,
        coap,
        lora,
        &replay.display().to_string(),
        &hash,
    );

    // validate, and validate --print.
    let (code, text) = validate(dir.path(), &cfg, false);
    assert_eq!(code, Some(0), "{text}");
    let (code, printed) = validate(dir.path(), &cfg, true);
    assert_eq!(code, Some(0), "{printed}");
    assert_clean("validate --print", &printed, &needles);
    assert!(printed.contains("<redacted>"), "{printed}");

    // The same places as URL credentials: refused, naming the key to
    // use, never echoing the password.
    let with_url_credentials = cfg
        .replace(
            &format!("url = \"mqtt://127.0.0.1:{dead}\"\nusername = \"gw\""),
            &format!("url = \"mqtt://gw:{MARKER}@127.0.0.1:{dead}\"\nusername = \"gw\""),
        )
        .replace(
            &format!("url = \"http://127.0.0.1:{dead}\"\ndatabase"),
            &format!("url = \"http://influx:{MARKER}@127.0.0.1:{dead}\"\ndatabase"),
        )
        .replace(
            &format!("broker = {{ url = \"mqtt://127.0.0.1:{dead}\""),
            &format!("broker = {{ url = \"mqtt://act:{MARKER}@127.0.0.1:{dead}\""),
        );
    assert_ne!(with_url_credentials, cfg);
    for print in [false, true] {
        let (code, text) = validate(dir.path(), &with_url_credentials, print);
        assert_eq!(code, Some(78), "{text}");
        assert_clean("validate's problems", &text, &needles);
        for key in ["upstream.url", "sink[0].url", "rule[0].action.broker"] {
            assert!(
                text.lines()
                    .any(|l| l.contains(key) && l.contains("`username`")),
                "{key} is refused and names the key to use:\n{text}"
            );
        }
    }
    // An empty password variable is refused too.
    let (code, text) = {
        let path = dir.path().join("empty.toml");
        std::fs::write(
            &path,
            cfg.replace(
                "@STATE_DIR@",
                &dir.path().join("state").display().to_string(),
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .args(["validate", "-c"])
            .arg(&path)
            .envs(env())
            .env("SECRETS_TEST_UPSTREAM_PW", "")
            .env("SECRETS_TEST_PSK", "")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("upstream.password_env:"), "{text}");
    assert!(
        text.contains("coap.psk[1].key:") && text.contains("empty"),
        "{text}"
    );

    // A run with every output failing: its whole log, and every page.
    let vars = env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut gw = GatewayProcess::start_in_with(tempfile::tempdir().unwrap(), &cfg, &vars);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Cannot reach InfluxDB").await;
    gw.wait_for_log("Cannot reach the upstream broker").await;
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:correct horse")
    );
    let mut pages = String::new();
    for path in ["/metrics", "/health"] {
        pages += &get(metrics, path, "").await;
    }
    for path in [
        "/",
        "/gateway",
        "/alerts",
        "/api/devices",
        "/api/alerts",
        "/device?id=x",
        "/style.css",
    ] {
        let page = get(dash, path, &auth).await;
        assert!(
            page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.1 404"),
            "{path}: {page}"
        );
        pages += &page;
    }
    assert_clean("the pages", &pages, &needles);
    gw.signal("TERM");
    gw.wait_exit().await;
    gw.drain_log().await;
    let log = gw.seen.join("\n");
    assert!(log.contains("InfluxDB"), "{log}");
    assert_clean("the log", &log, &needles);
}
