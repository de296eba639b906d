//! An ESP32 with a BME680 writing CSV lines over TCP
//! (`temperature,pressure,humidity,gas`), into InfluxDB 1.x database
//! `bme680_db`, measurement `bme680_measure`, read by Grafana's InfluxQL.
//!
//! The node's two habits: MicroPython's `s.send(line); s.close()` per
//! sample (no newline: the line ends with the connection; a shell's
//! `printf | socat` does the same), and a connection kept open, where
//! samples buffered during a Wi-Fi gap go out in one write and later ones
//! one at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use test_support::{free_port, Influxd, Mosquitto};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::support::{
    close, decimal, get_until, influx_until, metric_sum, metric_value, now_ms, Checks,
};
use crate::common::GatewayProcess;

const DB: &str = "bme680_db";
const OPEN_CONNECTIONS: &str = "edge_gateway_line_connections{adapter=\"bme680-tcp\"}";

fn config(upstream: u16, line_port: u16, metrics: u16, influx: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-bme680"
site = "lab"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
max_backoff = "1s"

[aggregation]
window = "2s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "tcp_line"
name = "bme680-tcp"
bind = "127.0.0.1:{line_port}"
format = "csv"
columns = ["temperature", "pressure", "humidity", "gas"]
device = "bme680-lab"

[[sink]]
type = "influxdb"
name = "influx"
url = "{influx}"
database = "{DB}"
measurement = "bme680_measure"
flush_interval = "100ms"
max_backoff = "500ms"
"#
    )
}

/// Sample `i` as the node formats it: one decimal for temperature and
/// humidity, whole hPa and ohms, as in `21.4,1013,45,12000`.
fn sample(i: usize) -> (String, [f64; 4]) {
    let x = i as f64;
    let (t, tv) = decimal(20.0 + (x * 0.7).sin() * 2.5, 1);
    let (h, hv) = decimal(45.0 + (x * 0.3).cos() * 6.0, 1);
    let (p, pv) = (1013 - (i % 5) as i64, (1013 - (i % 5) as i64) as f64);
    let (g, gv) = (12_000 + i * 13, (12_000 + i * 13) as f64);
    (format!("{t},{p},{h},{g}"), [tv, pv, hv, gv])
}

async fn connect(port: u16) -> TcpStream {
    tokio::time::timeout(
        Duration::from_secs(20),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .expect("connect in time")
    .expect("the line port answers")
}

/// Waits until the gateway holds `n` line connections open.
async fn connections(gw: &mut GatewayProcess, metrics: u16, n: f64) {
    get_until(gw, metrics, "/metrics", |_, b| {
        metric_value(b, OPEN_CONNECTIONS) == Some(n)
    })
    .await
    .unwrap_or_else(|e| panic!("never {n} line connections open: {e}"));
}

#[tokio::test]
async fn an_esp32_bme680_over_tcp_reaches_grafana_with_exact_means() {
    let mut c = Checks::new("ESP32 + BME680 over TCP into InfluxDB");
    let upstream = Mosquitto::start();
    let db = Influxd::start();
    let (line_port, metrics) = (free_port(), free_port());
    let mut gw = GatewayProcess::start(&config(upstream.port(), line_port, metrics, &db.url()));
    gw.wait_for_log("Listening for lines.").await;
    gw.wait_for_log("InfluxDB output started.").await;
    let from = now_ms() - 1000;

    let mut sent: Vec<[f64; 4]> = Vec::new();
    // Ten samples, each on its own connection, closed right after the send:
    // eight from MicroPython's socket, two as a shell script sends them.
    for i in 0..10 {
        let (line, v) = sample(i);
        sent.push(v);
        if i % 5 == 4 {
            // socat exits once the gateway closed its side, after the end
            // of the input was read.
            let status = tokio::time::timeout(
                Duration::from_secs(20),
                tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "printf '%s' '{line}' | socat - TCP:127.0.0.1:{line_port}"
                    ))
                    .kill_on_drop(true)
                    .status(),
            )
            .await
            .expect("socat in time")
            .expect("spawn socat");
            assert!(status.success(), "socat: {status}");
            continue;
        }
        let mut s = connect(line_port).await;
        connections(&mut gw, metrics, 1.0).await;
        s.write_all(line.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        // One node, one connection at a time: the next sample's connection
        // opens once the gateway has finished with this one.
        connections(&mut gw, metrics, 0.0).await;
    }
    // A connection kept open: 20 buffered samples in one write...
    let mut kept = connect(line_port).await;
    let mut burst = String::new();
    for i in 10..30 {
        let (line, v) = sample(i);
        burst.push_str(&line);
        burst.push('\n');
        sent.push(v);
    }
    kept.write_all(burst.as_bytes()).await.unwrap();
    // ...then one sample at a time, each seen in InfluxDB before the next,
    // as a node sampling every few seconds.
    let count_q =
        format!(r#"SELECT count("temperature") FROM "bme680_measure" WHERE time >= {from}ms"#);
    for i in 30..35 {
        let before = super::support::influx_number(&db, DB, &count_q).unwrap_or(0.0);
        let (line, v) = sample(i);
        kept.write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        sent.push(v);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while super::support::influx_number(&db, DB, &count_q).unwrap_or(0.0) <= before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a single line on the open connection never reached InfluxDB"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    kept.shutdown().await.unwrap();
    drop(kept);

    let n = sent.len() as f64;
    for (k, field) in ["temperature", "pressure", "humidity", "gas"]
        .into_iter()
        .enumerate()
    {
        let q = format!(r#"SELECT count("{field}") FROM "bme680_measure" WHERE time >= {from}ms"#);
        // One wait for the first field; the others are written with it.
        let got = if k == 0 {
            influx_until(&db, DB, &q, n).await
        } else {
            super::support::influx_number(&db, DB, &q)
        };
        c.eq(
            &format!("points with a {field} in bme680_measure (10 send-and-close + 25 kept-open)"),
            got,
            Some(n),
        );
        let sum = super::support::influx_number(
            &db,
            DB,
            &format!(r#"SELECT sum("{field}") FROM "bme680_measure" WHERE time >= {from}ms"#),
        )
        .unwrap_or(f64::NAN);
        let want: f64 = sent.iter().map(|v| v[k]).sum();
        c.close(&format!("sum of {field} in InfluxDB"), sum, want);
    }

    // Grafana's panel, as its InfluxQL data source sends it.
    let to = now_ms() + 1000;
    let grafana = format!(
        r#"SELECT mean("temperature") FROM "bme680_measure" WHERE time >= {from}ms and time <= {to}ms GROUP BY time(1m) fill(null)"#
    );
    let means = db.rows(DB, &grafana);
    let raw = db.rows(
        DB,
        &format!(r#"SELECT "temperature" FROM "bme680_measure" WHERE time >= {from}ms"#),
    );
    // The means each minute of the points stored, computed here.
    let mut by_minute: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &raw {
        let (Some(t), Some(v)) = (r[0].as_i64(), r[1].as_f64()) else {
            continue;
        };
        by_minute
            .entry(t - t.rem_euclid(60_000))
            .or_default()
            .push(v);
    }
    let mut answered = 0usize;
    for row in &means {
        let (Some(t), Some(mean)) = (row[0].as_i64(), row[1].as_f64()) else {
            continue;
        };
        answered += 1;
        let want = by_minute
            .get(&t)
            .map(|v| v.iter().sum::<f64>() / v.len() as f64);
        c.check(
            "Grafana's mean of each minute equals the mean of its samples",
            want.is_some_and(|w| close(w, mean)),
            || format!("minute {t}: {mean} vs {want:?}"),
        );
    }
    c.eq(
        "minutes with a mean in Grafana",
        answered,
        by_minute.len().max(1),
    );
    let mut stored: Vec<f64> = raw.iter().filter_map(|r| r[1].as_f64()).collect();
    let mut temps: Vec<f64> = sent.iter().map(|v| v[0]).collect();
    stored.sort_by(f64::total_cmp);
    temps.sort_by(f64::total_cmp);
    c.eq(
        "the temperatures stored are the ones sent, each once",
        stored,
        temps,
    );

    let body = get_until(&mut gw, metrics, "/metrics", |s, _| s == 200)
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    c.eq(
        "readings counted by the adapter",
        metric_sum(&body, "edge_gateway_adapter_readings_total"),
        4.0 * n,
    );
    c.eq(
        "adapter errors",
        metric_sum(&body, "edge_gateway_adapter_errors_total"),
        0.0,
    );
    gw.signal("TERM");
    c.eq("exit status after SIGTERM", gw.wait_exit().await, Some(0));
    c.finish();
}
