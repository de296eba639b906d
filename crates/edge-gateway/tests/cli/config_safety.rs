//! Issue #52's config, safety and output items, played from outside against
//! the real binary: what devices send and what an operator or an attacker
//! writes in the config, with real Mosquitto and InfluxDB as the peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{http_get, http_until, GatewayProcess, WAIT};
use test_support::exposition::parse_strict;
use test_support::{free_port, publish, Influxd, Message, Mosquitto, Subscriber};

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edge-gateway"));
    // A developer's EDGE_GATEWAY__ variable must not change the test.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EDGE_GATEWAY__") {
            c.env_remove(name);
        }
    }
    c
}

/// `edge-gateway <command> -c` on `main` written in `dir`, with each
/// `(name, text)` of `drop_ins` in `dir/conf.d/`.
fn on_files(command: &str, dir: &Path, main: &str, drop_ins: &[(&str, &str)]) -> Output {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, main).unwrap();
    if !drop_ins.is_empty() {
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    }
    for (name, text) in drop_ins {
        std::fs::write(dir.join("conf.d").join(name), text).unwrap();
    }
    gateway()
        .arg(command)
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap()
}

fn validate(main: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    on_files("validate", dir.path(), main, &[])
}

/// Everything the process printed, both streams.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config that validates on any machine: its state below `dir`, no
/// broker needed to validate, the metrics endpoint off.
fn minimal(state_dir: &Path) -> String {
    format!(
        r#"
[gateway]
id = "gw-safety"
state_dir = "{}"

[upstream]
url = "mqtt://127.0.0.1:1"

[metrics]
enabled = false
"#,
        state_dir.display()
    )
}

/// Once the gateway serves `/health` 200: its adapters subscribed, so a
/// reading published now is taken.
async fn healthy(gw: &mut GatewayProcess, metrics: u16) {
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |c, _| c == 200).await;
}

// -- item 6: a shared actuator ----------------------------------------------

/// Two rooms' CO2 drive one HVAC zone: room-b clearing must not tell it
/// "normal" while room-a is still above 1000 ppm; room-a's clear does.
#[tokio::test]
async fn a_shared_actuator_stays_on_until_the_last_room_clears() {
    let local = Mosquitto::start();
    let dashboard = free_port();
    let metrics = free_port();
    let mut actuator = Subscriber::start(local.port(), "actuators/#").await;
    let cfg = format!(
        r#"
[gateway]
id = "gw-hvac"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[[adapter]]
type = "mqtt"
name = "rooms"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/data/{{device}}/{{metric}}"]
max_backoff = "1s"

[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
cooldown = "0s"
action = {{ publish = "actuators/hvac_zone_1/command", payload = "increase_ventilation", clear_payload = "normal_ventilation", broker = "mqtt://127.0.0.1:{port}", cooldown = "0s" }}
"#,
        port = local.port()
    );
    let mut gw = GatewayProcess::start(&cfg);
    healthy(&mut gw, metrics).await;

    let mut commands: Vec<Message> = Vec::new();
    publish(local.port(), "sensors/data/room-a/co2", "1200", 1, false).await;
    commands.push(
        actuator
            .next(WAIT)
            .await
            .expect("room-a's raise reaches the actuator"),
    );
    publish(local.port(), "sensors/data/room-b/co2", "1250", 1, false).await;
    commands.push(
        actuator
            .next(WAIT)
            .await
            .expect("room-b's raise reaches the actuator"),
    );
    publish(local.port(), "sensors/data/room-b/co2", "800", 1, false).await;
    gw.wait_for_log("Action's clear held back").await;

    // The dashboard says who holds the actuator on, once it has seen
    // room-b's clear (its page is how we see that).
    let actions = |page: &str| {
        page.split(r#"id="actions""#)
            .nth(1)
            .and_then(|t| t.split("</table>").next())
            .unwrap_or_default()
            .to_string()
    };
    let (_, page) = http_until(dashboard, "/alerts", |c, b| {
        c == 200 && actions(b).contains("room-a") && !actions(b).contains("room-b")
    })
    .await;
    assert!(
        actions(&page).contains("actuators/hvac_zone_1/command"),
        "the actions table names the actuator room-a holds on: {page}"
    );

    publish(local.port(), "sensors/data/room-a/co2", "600", 1, false).await;
    commands.push(
        actuator
            .next(WAIT)
            .await
            .expect("room-a's clear reaches the actuator"),
    );
    let payloads: Vec<&str> = commands.iter().map(|m| m.payload.as_str()).collect();
    // One publisher, one topic, QoS 1: in order. A clear sent at room-b's
    // clear would be the third message.
    assert_eq!(
        payloads,
        [
            "increase_ventilation",
            "increase_ventilation",
            "normal_ventilation"
        ]
    );
    let (_, text) = http_get(metrics, "/metrics").await;
    assert!(
        text.contains("edge_gateway_action_clears_held_total 1"),
        "{text}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

// -- item 7: a gateway that cannot keep its state ----------------------------

#[tokio::test]
async fn validate_and_run_refuse_a_state_dir_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: no user can create the
    // state directory below it (root included, unlike permission bits).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let state = blocker.join("state");
    let cfg = minimal(&state);

    let out = on_files("validate", dir.path(), &cfg, &[]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(73), "{text}");
    assert!(
        text.contains("gateway.state_dir: cannot create the state directory")
            && text.contains(&state.display().to_string())
            && text.contains("durability = \"none\""),
        "names the key, the directory and the ways out: {text}"
    );

    let out = on_files("run", dir.path(), &cfg, &[]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(73), "run refuses: {text}");
    assert!(
        text.contains(&state.display().to_string()) && text.contains("not starting"),
        "{text}"
    );
    assert!(
        !text.contains("Starting edge-gateway"),
        "nothing was started: {text}"
    );

    // Said explicitly, it runs without (and says what that costs).
    let metrics = free_port();
    let cfg = cfg
        .replace("state_dir", "durability = \"none\"\nstate_dir")
        .replace(
            "[metrics]\nenabled = false",
            &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\""),
        );
    let out = on_files("validate", dir.path(), &cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("readings are lost on every restart").await;
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.signal("TERM");
    gw.wait_exit().await;

    // An empty state_dir would be the working directory.
    let out = validate(&minimal(Path::new("")));
    assert_eq!(out.status.code(), Some(78), "{}", said(&out));
    assert!(said(&out).contains("gateway.state_dir: expected a directory"));
}

// -- item 9: unknown-key hints ------------------------------------------------

#[test]
fn unknown_key_hints_list_every_key_of_the_section_the_closest_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}\n{}",
        minimal(&dir.path().join("state")).replace(
            "url = \"mqtt://127.0.0.1:1\"",
            "url = \"mqtt://127.0.0.1:1\"\npassword = \"hunter2-secret\"\npasswd_env = \"GW_PASSWORD\"\nkeepalive = \"10s\""
        ),
        r#"
[[adapter]]
type = "mqtt"
name = "local"
topics = ["sensors/{device}"]
passwd_env = "LOCAL_PASSWORD"
"#
    );
    let out = validate(&cfg);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(78), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no line for {key}: {text}"))
            .to_string()
    };
    for (key, first) in [
        ("upstream.passwd_env:", "`password_env`"),
        ("upstream.keepalive:", "`keep_alive`"),
        ("upstream.password:", "`password_env`"),
        ("adapter[0].passwd_env:", "`password_env`"),
    ] {
        let l = line(key);
        let listed = l.split("expected one of ").nth(1).unwrap_or_default();
        assert!(listed.starts_with(first), "closest first: {l}");
        for accepted in [
            "`url`",
            "`username`",
            "`password_env`",
            "`keep_alive`",
            "`qos`",
        ] {
            assert!(l.contains(accepted), "{accepted} listed: {l}");
        }
    }
    assert!(line("upstream.passwd_env:").contains("`topic_prefix`"));
    assert!(line("adapter[0].passwd_env:").contains("`topics`"));
    assert!(!text.contains("hunter2-secret"), "{text}");
}

// -- item 10: the struct codec's byte positions --------------------------------

#[test]
fn struct_fields_at_the_same_byte_are_refused_before_any_uplink() {
    let dir = tempfile::tempdir().unwrap();
    let device = |fields: &str| {
        format!(
            r#"{}
[[lorawan.device]]
dev_addr = "26011234"
nwk_s_key = "2b7e151628aed2a6abf7158809cf4f3c"
app_s_key = "000102030405060708090a0b0c0d0e0f"
codec = "struct"
fields = [{fields}]
"#,
            minimal(&dir.path().join("state"))
        )
    };
    // `offset` read as a value offset: both fields at byte 0.
    let out = validate(&device(
        r#"{ name = "co2", type = "u16", scale = 1.0, offset = 0 }, { name = "temperature", type = "i16", scale = 0.01, offset = 0 }"#,
    ));
    let text = said(&out);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains(
            "lorawan.device[0].fields: field 1 (temperature): bytes 0..2 overlap field 0 (co2)"
        ),
        "{text}"
    );
    let out = validate(&device(
        r#"{ name = "co2", type = "u16", at_byte = 0 }, { name = "temperature", type = "i16", scale = 0.01, at_byte = 2 }"#,
    ));
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = validate(&format!(
        "{}frame_bytes = 3\n",
        device(r#"{ name = "co2", type = "u16" }, { name = "t", type = "i16" }"#)
    ));
    assert!(
        said(&out).contains("the fields take 4 bytes, more than frame_bytes = 3"),
        "{}",
        said(&out)
    );
}

// -- item 18: secrets on a line with a syntax error ---------------------------

#[tokio::test]
async fn a_syntax_error_on_a_secret_line_shows_its_key_and_place_never_the_value() {
    const APP_KEY: &str = "A1B2C3D4E5F60718293A4B5C6D7E8F90";
    const PSK: &str = "correct-horse-battery-staple-42";
    let dir = tempfile::tempdir().unwrap();
    let main = minimal(&dir.path().join("state"));
    let lorawan = format!(
        "[[lorawan.device]]\ndev_eui = \"0004A30B001C0530\"\njoin_eui = \"70B3D57ED0000000\"\napp_key = \"{APP_KEY}\ncodec = \"compact_i16\"\n"
    );
    let coap = format!("[[coap.psk]]\nidentity = \"node-7\"\nkey = \"{PSK}\n");
    for command in ["validate", "run"] {
        let out = on_files(
            command,
            dir.path(),
            &main,
            &[("20-lora.toml", &lorawan), ("30-coap.toml", &coap)],
        );
        let text = said(&out);
        assert_eq!(out.status.code(), Some(78), "{command}: {text}");
        for (file, key) in [
            ("conf.d/20-lora.toml", "lorawan.device[0].app_key"),
            ("conf.d/30-coap.toml", "coap.psk[0].key"),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{file}: {key}: not valid TOML (line "))),
                "{command} names the file, the key and the line: {text}"
            );
        }
        assert!(
            !text.contains(APP_KEY) && !text.contains("A1B2C3") && !text.contains(PSK),
            "{command} printed a secret: {text}"
        );
    }
}

// -- item 19: /metrics and names --------------------------------------------

#[tokio::test]
async fn names_that_would_forge_metrics_are_refused_and_metrics_parse_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let injected = r#"k\"v} 1\nedge_gateway_injected_total 43\n"#;
    for (section, extra) in [
        (
            "adapter",
            "type = \"mqtt\"\ntopics = [\"sensors/{device}\"]\n",
        ),
        ("rule", "kind = \"silence\"\nafter = \"5m\"\n"),
        (
            "sink",
            "type = \"influxdb\"\nurl = \"http://127.0.0.1:1\"\ndatabase = \"d\"\n",
        ),
    ] {
        let cfg = format!(
            "{}\n[[{section}]]\nname = \"{injected}\"\n{extra}",
            minimal(&dir.path().join("state"))
        );
        let out = validate(&cfg);
        let text = said(&out);
        assert_eq!(out.status.code(), Some(78), "{section}: {text}");
        assert!(
            text.contains(&format!(
                "{section}[0].name: expected 1 to 64 of A-Z a-z 0-9 _ - ."
            )),
            "{text}"
        );
        assert!(
            !text.contains("\nedge_gateway_injected_total"),
            "the name is shown escaped: {text}"
        );
    }

    // A running gateway's whole /metrics, as a strict scraper reads it.
    let local = Mosquitto::start();
    let metrics = free_port();
    let cfg = format!(
        r#"
[gateway]
id = "gw-scrape"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[[adapter]]
type = "mqtt"
name = "local.sensors-1"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/data/{{device}}/{{metric}}"]

[[rule]]
name = "too.warm"
kind = "threshold"
metric = "temperature"
max = 30.0
"#,
        dashboard = free_port(),
        port = local.port()
    );
    let mut gw = GatewayProcess::start(&cfg);
    healthy(&mut gw, metrics).await;
    // A device id a scraper would choke on, were it ever a label value.
    publish(
        local.port(),
        "sensors/data/k\"v} 1/temperature",
        "31.5",
        1,
        false,
    )
    .await;
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"local.sensors-1\"} 1")
    })
    .await;
    let samples = parse_strict(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(samples.iter().any(|s| s.name == "edge_gateway_build_info"));
    assert!(!samples
        .iter()
        .any(|s| s.name.starts_with("edge_gateway_injected")));
    gw.signal("TERM");
    gw.wait_exit().await;
}

// -- item 20: values that cost or mislead ---------------------------------------

#[test]
fn values_that_cost_or_mislead_are_refused_by_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = minimal(&dir.path().join("state"));
    for (add, expected) in [
        (
            "[aggregation]\ncheckpoint_interval = \"1ns\"\n",
            "aggregation.checkpoint_interval: expected \"0s\" (off) or at least 100ms",
        ),
        (
            "[aggregation]\nmax_series = 18446744073709551616\n",
            "aggregation.max_series: not valid TOML (line ",
        ),
    ] {
        let out = validate(&format!("{base}{add}"));
        let text = said(&out);
        assert_eq!(out.status.code(), Some(78), "{text}");
        assert!(text.contains(expected), "{expected:?} in {text}");
        assert!(!text.contains("the config is empty"), "{text}");
    }
    // A NUL in the topic prefix (TOML's \u0000): every connect would fail.
    let out = validate(&base.replace(
        "url = \"mqtt://127.0.0.1:1\"",
        "url = \"mqtt://127.0.0.1:1\"\ntopic_prefix = \"building/\\u0000x\"",
    ));
    let text = said(&out);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("upstream.topic_prefix: a control character (U+0000)"),
        "{text}"
    );
}

// -- item 21: backslashes into a real InfluxDB ---------------------------------

fn tag_values(db: &Influxd) -> Vec<String> {
    db.try_rows("lab", "SHOW TAG VALUES FROM readings WITH KEY = \"device\"")
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get(1).and_then(|v| v.as_str()).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn device_ids_and_metrics_with_backslashes_are_stored_not_dead_lettered() {
    let local = Mosquitto::start();
    let db = Influxd::start();
    let metrics = free_port();
    let cfg = format!(
        r#"
[gateway]
id = "gw-backslash"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "nodes"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/data/{{device}}/{{metric}}"]

[[sink]]
type = "influxdb"
name = "influx"
url = "{url}"
database = "lab"
flush_interval = "100ms"
max_backoff = "500ms"
"#,
        port = local.port(),
        url = db.url()
    );
    let mut gw = GatewayProcess::start(&cfg);
    healthy(&mut gw, metrics).await;
    for (topic, value) in [
        // A node whose id ends in a backslash (a Windows-style path).
        ("sensors/data/C:\\node\\/temperature", "21.5"),
        // An id trying to inject a second device tag.
        ("sensors/data/x\\,device=victim/temperature", "22.5"),
        // A metric ending in a backslash.
        ("sensors/data/plain/t\\", "23.5"),
        ("sensors/data/plain/temperature", "24.5"),
    ] {
        publish(local.port(), topic, value, 1, false).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let values = tag_values(&db);
        if values.len() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every device reached InfluxDB: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut values = tag_values(&db);
    values.sort();
    // Stored as sent, not with a doubled backslash; a trailing backslash
    // cannot end a tag in line protocol: a fullwidth one (U+FF3C) stands
    // for it, so the node stays apart from a `C:\node` (trimmed, the two
    // were one series).
    assert_eq!(values, ["C:\\node\u{FF3C}", "plain", "x\\,device=victim"]);
    let rows = db.rows(
        "lab",
        "SELECT \"t\u{FF3C}\", \"temperature\" FROM readings WHERE device = 'plain'",
    );
    assert!(
        rows.iter()
            .any(|r| r.get(1).and_then(|v| v.as_f64()) == Some(23.5)),
        "the metric `t\\` is the field t\u{FF3C}: {rows:?}"
    );
    let dead = gw.dir.path().join("state/sink-influx/dead-letter.lp");
    assert!(
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .is_empty(),
        "nothing was refused: {}",
        std::fs::read_to_string(&dead).unwrap_or_default()
    );
    gw.signal("TERM");
    gw.wait_exit().await;
}
