//! A config made of the `-c` file, `conf.d/*.toml` drop-ins beside it and
//! `EDGE_GATEWAY__SECTION__KEY` variables, with the real binary (and real
//! Mosquitto brokers where readings flow).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{config, GatewayProcess, WAIT};
use edge_gateway::settings;
use test_support::{free_port, publish, Mosquitto, Subscriber};

/// The gateway binary with no `EDGE_GATEWAY__` variable inherited from the
/// test's own environment, plus `env`.
fn gateway(args: &[&str], config: &Path, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"));
    cmd.args(args).arg("-c").arg(config).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("EDGE_GATEWAY__") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs to the end; a gateway that wrongly accepted its config would run
/// until killed, so this is bounded.
async fn output(mut cmd: tokio::process::Command) -> Output {
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("edge-gateway did not exit: the config was accepted")
        .unwrap()
}

/// `gateway.toml` and its drop-ins in a fresh directory.
fn files(dir: &Path, main: &str, drop_ins: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, main).unwrap();
    if !drop_ins.is_empty() {
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    }
    for (name, text) in drop_ins {
        std::fs::write(dir.join("conf.d").join(name), text).unwrap();
    }
    path
}

fn mqtt_adapter(name: &str, port: u16, topic: &str) -> String {
    format!(
        r#"
[[adapter]]
type = "mqtt"
name = "{name}"
url = "mqtt://127.0.0.1:{port}"
topics = ["{topic}"]
max_backoff = "1s"
"#
    )
}

#[tokio::test]
async fn a_drop_in_adapter_forwards_to_the_upstream_a_variable_names() {
    let file_local = Mosquitto::start();
    let drop_in_local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    // The file's upstream is a port nothing listens on: only the variable
    // leads the gateway to the broker the test watches.
    let nowhere = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/50-site-b.toml"),
        mqtt_adapter("site-b", drop_in_local.port(), "site-b/{device}/{metric}"),
    )
    .unwrap();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &config("gw-confd", file_local.port(), nowhere, "1s", "1s"),
        &[("EDGE_GATEWAY__UPSTREAM__URL", &upstream.url())],
    );
    gw.wait_for_log("Config read.").await;
    let read = gw.seen.iter().find(|l| l.contains("Config read.")).unwrap();
    assert!(
        read.contains("conf.d/50-site-b.toml") && read.contains("EDGE_GATEWAY__UPSTREAM__URL"),
        "{read}"
    );
    // Both adapters run: the drop-in's was appended, not put in place of
    // the file's.
    gw.wait_for_log_count("Subscribed.", 2).await;
    assert!(gw
        .seen
        .iter()
        .any(|l| l.contains("Subscribed.") && l.contains("site-b")));
    assert!(gw
        .seen
        .iter()
        .any(|l| l.contains("Subscribed.") && l.contains("local-sensors")));

    publish(
        drop_in_local.port(),
        "site-b/room-b/temperature",
        "21.5",
        1,
        false,
    )
    .await;
    publish(
        file_local.port(),
        "sensors/data/room-a/temperature",
        "19",
        1,
        false,
    )
    .await;
    let aggregate = |device: &str| format!("building/hq/{device}/aggregated");
    // Both at once: the two windows close together, in either order.
    let got = sub
        .collect_until(WAIT, |msgs| {
            ["room-a", "room-b"]
                .iter()
                .all(|d| msgs.iter().any(|m| m.topic == aggregate(d)))
        })
        .await;
    for (device, value) in [("room-b", 21.5), ("room-a", 19.0)] {
        let agg = got
            .iter()
            .find(|m| m.topic == aggregate(device))
            .unwrap_or_else(|| panic!("no aggregate of {device} upstream"))
            .json();
        assert_eq!(agg["gateway"], "gw-confd", "{agg}");
        assert_eq!(agg["metrics"]["temperature"]["avg"], value, "{agg}");
    }
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

const MAIN: &str = r#"
[gateway]
id = "gw-layers"

[[adapter]]
type = "mqtt"
name = "local"
topics = ["sensors/{device}/{metric}"]
"#;

#[tokio::test]
async fn a_drop_in_with_an_unknown_key_is_refused_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = files(
        dir.path(),
        MAIN,
        &[
            (
                "10-ok.toml",
                &mqtt_adapter("second", 1883, "b/{device}/{metric}"),
            ),
            ("20-site.toml", "[aggregation]\nwindoww = \"5m\"\n"),
            (
                "30-adapter.toml",
                "[[adapter]]\ntype = \"mqtt\"\nname = \"third\"\ncolour = \"red\"\n",
            ),
        ],
    );
    for command in ["validate", "run"] {
        let out = output(gateway(&[command], &path, &[])).await;
        assert_eq!(out.status.code(), Some(78), "{command}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        for expected in [
            "conf.d/20-site.toml: aggregation.windoww: unknown key",
            // Appended after the file's and 10-ok's adapters.
            "conf.d/30-adapter.toml: adapter[2].colour: unknown key",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "{command}: missing {expected:?} in:\n{stdout}"
            );
        }
        assert_eq!(lines.len(), 2, "{command}: one line per problem:\n{stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("2 problem(s)"));
    }
}

#[tokio::test]
async fn a_variable_with_a_bad_value_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = files(dir.path(), MAIN, &[]);
    let out = output(gateway(
        &["validate"],
        &path,
        &[
            ("EDGE_GATEWAY__UPSTREAM__QOS", "7"),
            ("EDGE_GATEWAY__AGGREGATION__WINDOW", "soon"),
            ("EDGE_GATEWAY__UPSTREAM__URLL", "mqtt://x"),
            // A single underscore is not ours (systemd's EnvironmentFile
            // holds the upstream password under such a name).
            ("EDGE_GATEWAY_PASSWORD", "hunter2"),
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(78));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "EDGE_GATEWAY__UPSTREAM__QOS: upstream.qos: expected 0, 1 or 2, got 7",
        "EDGE_GATEWAY__AGGREGATION__WINDOW: aggregation.window: expected a duration",
        "EDGE_GATEWAY__UPSTREAM__URLL: upstream.urll: unknown key",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(expected)),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[tokio::test]
async fn print_shows_the_merged_config_with_secrets_redacted() {
    const NWK: &str = "2B7E151628AED2A6ABF7158809CF4F3C";
    const APP: &str = "3C4FCF098815F7ABA6D2AE2816157E2B";
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        r#"{MAIN}
[upstream]
username = "gw"
password_env = "EDGE_GATEWAY_PASSWORD"

[[lorawan.device]]
dev_addr = "260B1234"
nwk_s_key = "{NWK}"
app_s_key = "env:LORA_APP"
codec = "compact_i16"
"#
    );
    let drop_in = format!(
        "[[lorawan.device]]\ndev_addr = \"260B1235\"\nnwk_s_key = \"{APP}\"\napp_s_key = \"{NWK}\"\ncodec = \"cayenne_lpp\"\n"
    );
    let path = files(dir.path(), &main, &[("40-lora.toml", &drop_in)]);
    let env = [
        ("EDGE_GATEWAY__UPSTREAM__URL", "mqtts://cloud.example:8883"),
        ("LORA_APP", APP),
        // validate checks that the variable password_env names is set.
        ("EDGE_GATEWAY_PASSWORD", "not printed"),
    ];
    let out = output(gateway(&["validate", "--print"], &path, &env)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains(NWK) && !stdout.contains(APP),
        "a key was printed:\n{stdout}"
    );
    let printed: toml::Table = toml::from_str(&stdout).unwrap();
    let devices = printed["lorawan"]["device"].as_array().unwrap();
    assert_eq!(
        devices.len(),
        2,
        "the drop-in's device is appended:\n{stdout}"
    );
    assert_eq!(devices[0]["nwk_s_key"].as_str(), Some("<redacted>"));
    assert_eq!(devices[0]["app_s_key"].as_str(), Some("env:LORA_APP"));
    assert_eq!(devices[1]["nwk_s_key"].as_str(), Some("<redacted>"));
    assert_eq!(devices[1]["app_s_key"].as_str(), Some("<redacted>"));
    assert_eq!(
        printed["upstream"]["password_env"].as_str(),
        Some("EDGE_GATEWAY_PASSWORD"),
        "a variable's name is not a secret"
    );
    assert_eq!(
        printed["upstream"]["url"].as_str(),
        Some("mqtts://cloud.example:8883")
    );
    for source in [
        "gateway.toml",
        "conf.d/40-lora.toml",
        "EDGE_GATEWAY__UPSTREAM__URL",
    ] {
        assert!(
            stdout
                .lines()
                .take_while(|l| l.starts_with('#'))
                .any(|l| l.contains(source)),
            "{source} not in the header:\n{stdout}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains(": ok ("));
}

#[tokio::test]
async fn printed_config_without_secrets_is_the_merged_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = files(
        dir.path(),
        MAIN,
        &[
            ("10-b.toml", &mqtt_adapter("second", 1884, "b/{device}/{metric}")),
            ("20-c.toml", "[aggregation]\nwindow = \"1m\"\n[[device]]\nid = \"d1\"\nname = \"Hall\"\ntags = [\"x\"]\n"),
        ],
    );
    let env = [("EDGE_GATEWAY__UPSTREAM__QOS", "0")];
    let out = output(gateway(&["validate", "--print"], &path, &env)).await;
    assert!(out.status.success());
    let printed = settings::parse(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let (merged, _) =
        settings::load_layers(&path, env.iter().map(|(k, v)| (k.into(), v.into()))).unwrap();
    assert_eq!(printed, merged);
    assert_eq!(merged.adapters.len(), 2);
    assert_eq!(merged.devices.len(), 1);
    assert_eq!(merged.upstream.forwarding.qos.as_u8(), 0);
}
