//! ESP32 room sensors sending over ESP-NOW to a relay board that prints
//! `MAC,temperature,humidity` on its USB serial port (here a socat
//! pseudo-terminal pair), MACs named as rooms in `[[device]]`, into
//! InfluxDB and the dashboard's overview. This building has no cloud
//! broker: the config has no `[upstream]` section at all.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_support::chromium::{Browser, Page};
use test_support::{free_port, have, Influxd};

use super::support::{decimal, dom_until, get_until, influx_until, metric_sum, Checks, DEADLINE};
use crate::common::GatewayProcess;

const DB: &str = "espnow";

/// The rooms: the MAC as the registry lists it (lower case) and its name.
const ROOMS: [(&str, &str, &str); 3] = [
    ("24:6f:28:aa:bb:01", "Kitchen", "kitchen"),
    ("24:6f:28:aa:bb:02", "Bedroom", "bedroom"),
    ("24:6f:28:aa:bb:03", "Office", "office"),
];

/// `socat` linking two pseudo-terminals: the gateway's port and the relay
/// board's end, which the test writes to.
struct PtyPair(Child);

impl PtyPair {
    fn start(port: &Path, board: &Path) -> Self {
        Self(
            Command::new("socat")
                .arg(format!("pty,raw,echo=0,link={}", port.display()))
                .arg(format!("pty,raw,echo=0,link={}", board.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn socat (apt-get install socat)"),
        )
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(port: &Path, influx: &str, metrics: u16, dashboard: u16) -> String {
    let mut cfg = format!(
        r#"
[gateway]
id = "gw-espnow"
site = "flat"
state_dir = "@STATE_DIR@"

[aggregation]
window = "2s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"
write_interval = "200ms"

[[adapter]]
type = "serial_line"
name = "espnow-relay"
path = "{port}"
baud = 115200
format = "csv"
columns = ["mac", "temperature", "humidity"]
max_backoff = "200ms"

[[sink]]
type = "influxdb"
name = "influx"
url = "{influx}"
database = "{DB}"
flush_interval = "100ms"
max_backoff = "500ms"
"#,
        port = port.display()
    );
    for (mac, name, room) in ROOMS {
        cfg += &format!("\n[[device]]\nid = \"{mac}\"\nname = \"{name}\"\nroom = \"{room}\"\n");
    }
    cfg
}

#[tokio::test]
async fn an_espnow_relay_without_a_cloud_broker_fills_influxdb_and_the_dashboard() {
    assert!(have("socat"), "socat is required (apt-get install socat)");
    let mut c = Checks::new("ESP-NOW relay on a serial port, no cloud broker");
    let browser = Browser::start().await;
    let db = Influxd::start();
    let dir = tempfile::tempdir().unwrap();
    let (port, board) = (dir.path().join("ttyRELAY"), dir.path().join("ttyBOARD"));
    let _pair = PtyPair::start(&port, &board);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(port.exists() && board.exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socat made no links"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (metrics, dashboard) = (free_port(), free_port());
    let cfg = config(&port, &db.url(), metrics, dashboard);
    assert!(!cfg.contains("[upstream]"));
    let mut gw = GatewayProcess::start(&cfg);

    let health = get_until(&mut gw, metrics, "/health", |s, _| s == 200).await;
    c.check(
        "/health answers 200 with no [upstream] configured",
        health.is_ok(),
        || format!("{health:?}"),
    );
    if let Ok(Some(status)) = gw.child.try_wait() {
        // Nothing else can be seen from a gateway that is not running.
        c.check(
            "the rest of the journey (InfluxDB, dashboard)",
            false,
            || format!("not reached: the gateway exited ({status})"),
        );
        c.finish();
        return;
    }

    // The relay prints MACs upper case (its firmware's `%02X`), CRLF, the
    // three rooms interleaved as their sensors wake.
    let mut sent: Vec<Vec<(f64, f64)>> = vec![Vec::new(); ROOMS.len()];
    let mut wire = String::new();
    for i in 0..10 {
        for (r, (mac, _, _)) in ROOMS.iter().enumerate() {
            let (t, tv) = decimal(19.0 + r as f64 * 2.0 + (i as f64 * 0.9).sin(), 1);
            let (h, hv) = decimal(40.0 + r as f64 * 5.0 + i as f64 * 0.5, 1);
            wire.push_str(&format!("{},{t},{h}\r\n", mac.to_ascii_uppercase()));
            sent[r].push((tv, hv));
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&board)
        .unwrap();
    f.write_all(wire.as_bytes()).unwrap();
    f.flush().unwrap();

    // One wait for every line; then each room is read as it stands.
    let all = (ROOMS.len() * 10) as f64;
    let total = influx_until(
        &db,
        DB,
        r#"SELECT count("temperature") FROM "readings""#,
        all,
    )
    .await;
    c.eq("temperature points in InfluxDB", total, Some(all));
    for (r, (_, name, _)) in ROOMS.iter().enumerate() {
        let q = |agg: &str, field: &str| {
            format!(r#"SELECT {agg}("{field}") FROM "readings" WHERE "name" = '{name}'"#)
        };
        let n = sent[r].len() as f64;
        let got = super::support::influx_number(&db, DB, &q("count", "temperature"));
        c.eq(
            &format!("{name}: temperature points in InfluxDB"),
            got,
            Some(n),
        );
        let t_sum: f64 = sent[r].iter().map(|s| s.0).sum();
        let h_sum: f64 = sent[r].iter().map(|s| s.1).sum();
        let got_t = super::support::influx_number(&db, DB, &q("sum", "temperature"));
        let got_h = super::support::influx_number(&db, DB, &q("sum", "humidity"));
        c.close(
            &format!("{name}: sum of temperatures"),
            got_t.unwrap_or(f64::NAN),
            t_sum,
        );
        c.close(
            &format!("{name}: sum of humidities"),
            got_h.unwrap_or(f64::NAN),
            h_sum,
        );
        let last = super::support::influx_number(&db, DB, &q("last", "temperature"));
        c.eq(
            &format!("{name}: latest temperature in InfluxDB"),
            last,
            sent[r].last().map(|s| s.0),
        );
    }
    let rooms = db
        .try_rows(DB, r#"SHOW TAG VALUES FROM "readings" WITH KEY = "name""#)
        .unwrap_or_default();
    c.eq("series names in InfluxDB: the rooms only", rooms.len(), 3);

    if let Some(browser) = browser {
        let mut page = Page::new(&browser).await;
        page.navigate(&format!("http://127.0.0.1:{dashboard}/"))
            .await;
        for (r, (_, name, _)) in ROOMS.iter().enumerate() {
            let latest = sent[r].last().unwrap();
            let cond = format!(
                "(() => {{ const rows = [...document.querySelectorAll('#devices tr[data-d]')].filter(tr => tr.querySelector('td a') && tr.querySelector('td a').textContent === '{name}'); if (rows.length !== 1) return false; const v = m => parseFloat(rows[0].querySelector('i[data-m=\"' + m + '\"] b').textContent); return v('temperature') === {} && v('humidity') === {}; }})()",
                latest.0, latest.1
            );
            let shown = dom_until(&mut page, &cond, 5000).await;
            let rows = if shown {
                serde_json::Value::Null
            } else {
                page.eval("document.getElementById('devices').innerText")
                    .await
            };
            c.check(
                &format!("the overview shows {name} once, with its latest values"),
                shown,
                || format!("want {latest:?} in one row named {name}; the overview: {rows}"),
            );
        }
        page.close().await;
    }

    let body = get_until(&mut gw, metrics, "/metrics", |s, _| s == 200)
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    let lines = (ROOMS.len() * 10) as f64;
    c.eq(
        "readings counted by the relay's adapter",
        metric_sum(&body, "edge_gateway_adapter_readings_total"),
        2.0 * lines,
    );
    c.eq(
        "adapter errors",
        metric_sum(&body, "edge_gateway_adapter_errors_total"),
        0.0,
    );
    let health = get_until(&mut gw, metrics, "/health", |_, _| true).await;
    c.check(
        "/health still 200 at the end",
        matches!(health, Ok((200, _))),
        || format!("{health:?}"),
    );
    c.check(
        "no upstream outbox on disk",
        !gw.dir.path().join("state/outbox").exists(),
        || "state/outbox exists".into(),
    );
    gw.signal("TERM");
    c.eq("exit status after SIGTERM", gw.wait_exit().await, Some(0));
    c.finish();
}
