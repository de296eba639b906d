//! A reconnect loop must not flood the journal: the MQTT adapter's
//! "Cannot reach the local broker" warning comes once, then at most once
//! per interval with how many were suppressed, however fast it retries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::GatewayProcess;
use test_support::{free_port, Mosquitto};

#[tokio::test]
async fn an_unreachable_local_broker_is_reported_once_per_interval_not_per_attempt() {
    let upstream = Mosquitto::start();
    // Nothing listens there: every attempt fails at once, and with a
    // 100 ms backoff cap the adapter retries about ten times a second.
    let nowhere = free_port();
    let cfg = format!(
        r#"
[gateway]
id = "gw-throttle"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{}"

[[adapter]]
type = "mqtt"
name = "local"
url = "mqtt://127.0.0.1:{nowhere}"
max_backoff = "100ms"
"#,
        upstream.port()
    );
    let mut gw = GatewayProcess::start(&cfg);
    let needle = "Cannot reach the local broker";
    gw.wait_for_log_count(needle, 2).await;
    let lines: Vec<&String> = gw.seen.iter().filter(|l| l.contains(needle)).collect();
    let suppressed = |line: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("suppressed="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no suppressed count in {line}"))
    };
    assert_eq!(suppressed(lines[0]), 0, "the first one is reported at once");
    assert!(
        suppressed(lines[1]) >= 5,
        "the second line stands for the attempts in between: {}",
        lines[1]
    );
}
