//! The command line as an operator uses it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use edge_gateway::settings;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
}

const SHIPPED: &str = include_str!("../../../../gateway.toml");

/// `validate -c` on `config` written to a temporary file, with each
/// variable set (`Some`) or removed (`None`).
fn validate(config: &str, env: &[(&str, Option<&str>)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = gateway();
    cmd.arg("validate").arg("-c").arg(&path);
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    cmd.output().unwrap()
}

#[test]
fn the_shipped_gateway_toml_is_the_configfile_template() {
    let out = gateway().arg("configfile").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        SHIPPED,
        "gateway.toml is stale: regenerate it with `edge-gateway configfile > gateway.toml`"
    );
}

#[test]
fn the_template_parses_to_the_defaults() {
    let c = settings::parse(SHIPPED).unwrap();
    assert_eq!(c.gateway, Default::default());
    assert_eq!(c.upstream, Default::default());
    assert_eq!(c.aggregation, Default::default());
    assert_eq!(c.log, Default::default());
    assert_eq!(c.outbox, Default::default());
    assert_eq!(c.adapters.len(), 1, "one local MQTT adapter by default");
    assert!(c.devices.is_empty());
    // Every key of every section appears in the template, commented or not.
    for key in [
        "id",
        "site",
        "state_dir",
        "url",
        "qos",
        "topic_prefix",
        "client_id",
        "username",
        "password_env",
        "ca_file",
        "client_cert",
        "client_key",
        "keep_alive",
        "max_backoff",
        "max_queued",
        "max_inflight",
        "window",
        "grace",
        "max_future",
        "level",
        "format",
        "topics",
        "status_topics",
        "columns",
        "max_payload_bytes",
        "name",
        "room",
        "floor",
        "tags",
        "max_bytes",
        "policy",
        "max_age",
        "drain_rate",
        "checkpoint_interval",
        "persistent_session",
        "dedup_window",
        "gateways",
        "dev_addr",
        "nwk_s_key",
        "app_s_key",
        "codec",
        "fields",
        "fcnt_reset",
    ] {
        assert!(
            SHIPPED.lines().any(|l| l
                .trim_start_matches(['#', ' '])
                .starts_with(&format!("{key} ="))),
            "key {key} is not documented in the template"
        );
    }
}

#[test]
fn validate_accepts_the_shipped_file() {
    let out = gateway()
        .args([
            "validate",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../gateway.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The template's "uncomment to use" examples: each `#[[table]]` line and
/// the `#key = value` lines after it (no space after `#`; `# key` lines
/// are alternatives and prose), up to the next blank line.
fn uncommented_examples(template: &str) -> Vec<String> {
    let mut examples = Vec::new();
    let mut current: Option<String> = None;
    for line in template.lines() {
        if line.starts_with("#[") {
            examples.extend(current.take());
            current = Some(format!("{}\n", &line[1..]));
        } else if let Some(example) = current.as_mut() {
            if line.trim().is_empty() {
                examples.extend(current.take());
            } else if line.starts_with('#')
                && line[1..].starts_with(|c: char| c.is_ascii_lowercase() || c == '{' || c == ']')
            {
                example.push_str(&line[1..]);
                example.push('\n');
            }
        }
    }
    examples.extend(current);
    examples
}

#[test]
fn the_templates_examples_validate_when_uncommented() {
    // What a user does with them. The KNX example once named a routing-only
    // key beside a tunnel url, a file that is not there, and bounds on a
    // group that is not writable: three problems before a first try.
    let examples = uncommented_examples(SHIPPED);
    let tables: Vec<&str> = examples.iter().filter_map(|e| e.lines().next()).collect();
    for table in [
        "[[adapter]]",
        "[[modbus.device]]",
        "[[bacnet.device]]",
        "[[knx.group]]",
    ] {
        assert!(tables.contains(&table), "{table} in {tables:?}");
    }
    assert!(
        examples.iter().any(|e| e.contains("type = \"knx\"")),
        "{examples:#?}"
    );
    let config = format!("{SHIPPED}\n{}", examples.join("\n"));
    let out = validate(&config, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}\n{}",
        examples.join("\n"),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_lists_every_problem_and_exits_78() {
    let out = validate(
        r#"
[gateway]
id = "gw-01"

[upstream]
url = "http://cloud"
qos = 7

[aggregation]
window = "5 minutes please"
grace = 30

[[adapter]]
type = "mqtt"
name = "local"
topics = ["sensors/{device}/{metric}/{metric}"]

[[adapter]]
type = "mqtt"
name = "local"
colour = "red"
"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in [
        "upstream.url: expected mqtt://host[:port] or mqtts://host[:port]",
        "upstream.qos: expected 0, 1 or 2, got 7",
        "aggregation.window: expected a duration",
        "aggregation.grace: expected a duration string",
        "adapter[0].topics[0]: {metric} appears more than once",
        "adapter[1].colour: unknown key",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(lines.len(), 6, "one line per problem:\n{stdout}");
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let out = gateway()
        .args(["validate", "-c", "/nonexistent/gateway.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gateway.toml"));
}

#[test]
fn validate_refuses_an_unset_password_variable_and_unreadable_tls_files_in_every_broker_section() {
    // Both sections share one validation: the adapter used to pass these
    // and then run with the adapter stopped (or the service restarting).
    let config = r#"
[gateway]
id = "gw-01"

[upstream]
url = "mqtts://cloud.example:8883"
username = "gw"
password_env = "EDGE_GATEWAY_TEST_UNSET_UPSTREAM"

[[adapter]]
type = "mqtt"
name = "local"
url = "mqtts://127.0.0.1:8883"
topics = ["sensors/{device}/{metric}"]
username = "u"
password_env = "EDGE_GATEWAY_TEST_UNSET_LOCAL"
ca_file = "/nonexistent/ca.pem"
client_cert = "/nonexistent/client.pem"
"#;
    let out = validate(
        config,
        &[
            ("EDGE_GATEWAY_TEST_UNSET_UPSTREAM", None),
            ("EDGE_GATEWAY_TEST_UNSET_LOCAL", None),
        ],
    );
    assert_eq!(out.status.code(), Some(78));
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "upstream.password_env: environment variable EDGE_GATEWAY_TEST_UNSET_UPSTREAM is not set",
        "adapter[0].password_env: environment variable EDGE_GATEWAY_TEST_UNSET_LOCAL is not set",
        "adapter[0].ca_file: cannot read \"/nonexistent/ca.pem\"",
        "adapter[0].client_key: client_cert and client_key go together",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    // With the variables set, only the file problems remain.
    let out = validate(
        config,
        &[
            ("EDGE_GATEWAY_TEST_UNSET_UPSTREAM", Some("x")),
            ("EDGE_GATEWAY_TEST_UNSET_LOCAL", Some("y")),
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("password_env"), "{text}");
    assert!(text.contains("adapter[0].ca_file"), "{text}");
}

#[test]
fn an_empty_config_is_a_config_error_and_defaults_in_use_are_named() {
    for empty in ["", "\n# only a comment\n"] {
        let out = validate(empty, &[]);
        assert_eq!(out.status.code(), Some(78), "{empty:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("the config is empty"), "{stdout}");
    }
    // Valid without [gateway] or adapters, as before, but said out loud
    // (with an output: a config with none is refused).
    let out = validate("[upstream]\n[aggregation]\nwindow = \"1m\"\n", &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: no [gateway] section: running as id \"gw-01\""),
        "{stderr}"
    );
    assert!(stderr.contains("note: no [[adapter]]"), "{stderr}");
    // The shipped file names its gateway and adapter: no notes.
    let out = validate(SHIPPED, &[]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note:"));
}

/// A KNX tunnel whose heartbeat the validation accepts (at most 120 s)
/// but whose third try passes the 120 s after which the interface drops
/// the tunnel: valid, and said by `validate` with the key to change, as
/// `run` logs it; the defaults, and routing (no tunnel), say nothing.
#[test]
fn validate_notes_a_knx_heartbeat_that_outlives_the_tunnel() {
    let knx = |extra: &str, url: &str| {
        format!(
            "[gateway]\nid = \"gw-knx\"\n[upstream]\n\n[[adapter]]\ntype = \"knx\"\nname = \"bus\"\nurl = \"{url}\"\n{extra}\n[[knx.group]]\nadapter = \"bus\"\naddress = \"1/2/3\"\ndpt = \"9.001\"\ndevice = \"room-1\"\nmetric = \"temperature\"\n"
        )
    };
    let notes = |config: &str| {
        let out = validate(config, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(0), "{config}\n{stderr}");
        stderr
            .lines()
            .filter(|l| l.starts_with("note: ") && l.contains("heartbeat"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let late = notes(&knx("heartbeat = \"100s\"", "udp://127.0.0.1:3671"));
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].contains("adapter[0].heartbeat"), "{late:?}");
    assert!(
        late[0].contains("2m"),
        "the last try, 100 s + 2 x 10 s: {late:?}"
    );
    let slow_answers = notes(&knx("timeout = \"35s\"", "tcp://127.0.0.1:3671"));
    assert_eq!(slow_answers.len(), 1, "60 s + 2 x 35 s: {slow_answers:?}");
    assert!(
        notes(&knx("", "udp://127.0.0.1:3671")).is_empty(),
        "the defaults"
    );
    let routing = knx("heartbeat = \"110s\"", "multicast://224.0.23.12:3671");
    assert!(notes(&routing).is_empty(), "routing has no tunnel");
}

/// A building that writes InfluxDB only: a serial ESP-NOW relay in, no
/// cloud broker.
const INFLUX_ONLY: &str = r#"
[gateway]
id = "gw-serial"

[[adapter]]
type = "tcp_line"
name = "relay"
bind = "127.0.0.1:0"
columns = ["temperature"]

[[sink]]
type = "influxdb"
name = "influx"
url = "http://127.0.0.1:8086"
database = "sensors"
"#;

#[test]
fn validate_accepts_a_config_without_upstream_and_says_nothing_goes_to_a_cloud_broker() {
    for config in [
        INFLUX_ONLY.to_string(),
        format!("{INFLUX_ONLY}\n[upstream]\nenabled = false\nurl = \"mqtt://cloud:1883\"\n"),
        "[gateway]\nid = \"gw-dash\"\n[dashboard]\nenabled = true\nbind = \"127.0.0.1:0\"\n".into(),
    ] {
        let out = validate(&config, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{config}\n{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("note: ") && l.contains("nothing goes to a cloud broker")),
            "{config}\n{stderr}"
        );
    }
    // With an upstream, no such note.
    let out = validate(
        &format!("{INFLUX_ONLY}\n[upstream]\nurl = \"mqtt://cloud:1883\"\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cloud broker"));
}

#[test]
fn a_config_without_any_output_is_refused_with_78() {
    for config in [
        "[gateway]\nid = \"gw-x\"\n[[adapter]]\ntype = \"tcp_line\"\nname = \"relay\"\nbind = \"127.0.0.1:0\"\ncolumns = [\"t\"]\n".to_string(),
        "[gateway]\nid = \"gw-x\"\n[upstream]\nenabled = false\n".into(),
    ] {
        let out = validate(&config, &[]);
        assert_eq!(out.status.code(), Some(78), "{config}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.lines().any(|l| l.contains("no output")
                && l.contains("[upstream]")
                && l.contains("[[sink]]")
                && l.contains("[dashboard]")),
            "{config}\n{stdout}"
        );
        // `run` refuses it the same way, before starting anything.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, &config).unwrap();
        let run = gateway().arg("run").arg("-c").arg(&path).output().unwrap();
        assert_eq!(run.status.code(), Some(78), "{config}");
    }
}

/// `state_dir = "state"` is as good as `"./state"`: a bare relative path
/// was refused by `validate` (its last ancestor, the working directory,
/// read as "") while `run` took it.
#[test]
fn a_bare_relative_state_dir_validates_as_run_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    for state_dir in ["state", "./state", "rel3/sub"] {
        std::fs::write(
            dir.path().join("gateway.toml"),
            format!("[gateway]\nid = \"gw-rel\"\nstate_dir = \"{state_dir}\"\n\n[upstream]\nurl = \"mqtt://127.0.0.1:1883\"\n"),
        )
        .unwrap();
        let out = gateway()
            .current_dir(dir.path())
            .args(["validate", "-c", "gateway.toml"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{state_dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!dir.path().join("state").exists(), "validate makes nothing");
    }
}

/// The signing key given where the configuration goes (an argument
/// mixed up): refused as not TOML by its position, its secret not quoted
/// into the terminal or a CI log.
#[test]
fn a_key_file_given_as_the_configuration_is_refused_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    let made = gateway()
        .args(["config", "keygen", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = gateway()
        .args(["config", "sign", "--key"])
        .arg(&key)
        .args(["--serial", "1", "--version", "v1"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not TOML"), "{stderr}");
    let secret = std::fs::read_to_string(&key).unwrap();
    for line in secret.lines().map(str::trim).filter(|l| l.len() > 16) {
        assert!(
            !stderr.contains(line),
            "the key's text was printed: {stderr}"
        );
    }
}

/// A configuration that cannot be read is EX_CONFIG (78) for `history
/// export` as for `validate` and `replay`, said once.
#[test]
fn history_export_without_its_configuration_exits_78() {
    let out = gateway()
        .args(["history", "export", "-c", "/nonexistent/gateway.toml"])
        .args(["--device", "a", "--metric", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
}

/// A range given backwards is said so, not exported as an empty CSV that
/// reads as "no data".
#[test]
fn history_export_of_a_range_given_backwards_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let template = gateway().arg("configfile").output().unwrap();
    std::fs::write(&config, &template.stdout).unwrap();
    let out = gateway()
        .args(["history", "export", "-c"])
        .arg(&config)
        .args([
            "--device", "a", "--metric", "b", "--from", "now", "--to", "-1h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--from (now) is after --to (-1h)"),
        "{stderr}"
    );
}

/// Two parts on one socket: `run` would start with the second down and
/// `/health` 503, so `validate` names it first. A TCP and a UDP socket
/// share a port.
#[test]
fn validate_refuses_two_parts_listening_on_one_socket() {
    let out = validate(
        r#"
[gateway]
id = "gw-01"

[upstream]
url = "mqtt://127.0.0.1:1883"

[metrics]
bind = "127.0.0.1:9898"

[[adapter]]
type = "tcp_line"
name = "bme680"
bind = "0.0.0.0:5050"
format = "csv"
columns = ["temperature"]

[[adapter]]
type = "tcp_line"
name = "fridge"
bind = "127.0.0.1:5050"
format = "csv"
columns = ["temperature"]

[[adapter]]
type = "coap"
name = "coap"
bind = "127.0.0.1:9898"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "0.0.0.0:5050"
"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim(),
        "adapter[1].bind: TCP 127.0.0.1:5050 is already taken by adapter[0].bind (0.0.0.0:5050): each part needs its own port",
        "only the second TCP listener on 5050 clashes"
    );
}

/// A wildcard or a `/` in `--gateway` or `--prefix` would publish where no
/// gateway reads (the client library said only "Failed to send mqtt
/// requests to eventloop"): refused by name before any connection.
#[test]
fn config_push_refuses_a_gateway_or_prefix_that_is_not_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer.toml");
    std::fs::write(&layer, "[aggregation]\nwindow = \"1m\"\n").unwrap();
    for (flags, said) in [
        (
            &["--gateway", "site/+"][..],
            "--gateway \"site/+\": gateway id contains '/'",
        ),
        (
            &["--gateway", "gw#"][..],
            "--gateway \"gw#\": gateway id contains '#'",
        ),
        (
            &["--gateway", "gw-01", "--prefix", "building/#"][..],
            "--prefix \"building/#\"",
        ),
    ] {
        let out = gateway()
            .args(["config", "push", "--url", "mqtt://127.0.0.1:9"])
            .args(["--version", "v1", "--serial", "1"])
            .args(flags)
            .arg(&layer)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{flags:?}: {stderr}");
        assert!(!stderr.contains("eventloop"), "{stderr}");
    }
}
