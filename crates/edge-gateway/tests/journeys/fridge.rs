//! A Raspberry Pi Pico W in a fridge, publishing its temperature over MQTT
//! with its own (NTP) time, watched by a "too warm" threshold and a
//! "rising fast" rate rule, read on the dashboard in a browser; the
//! aggregates go to the cloud broker.
//!
//! A cold start: the gateway has just started (no state) when the fridge
//! warms from 4 to 24 °C within 4 minutes. The Pico stamps each reading, so
//! those 4 minutes are its timestamps, delivered as fast as the broker
//! takes them; the 5-minute window holding them is kept open by the grace
//! until they are all in, and closes seconds later.

use std::time::Duration;

use test_support::chromium::{Browser, Page};
use test_support::{free_port, publish_lines, Message, Mosquitto, Subscriber};

use super::support::{
    check_windows, dom_until, get_until, past_window, window_totals, Checks, DEADLINE,
};
use crate::common::GatewayProcess;

const PICO: &str = "pico-fridge";
const TOO_WARM: &str = "fridge-too-warm";
const RISING: &str = "fridge-rising-fast";
const WINDOW_MS: i64 = 300_000;
/// A reading every 10 s, 4.0 → 24.0 °C over 4 minutes.
const READINGS: usize = 25;

fn config(local: u16, upstream: u16, dashboard: u16, grace_s: i64) -> String {
    format!(
        r#"
[gateway]
id = "gw-fridge"
site = "home"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
max_backoff = "1s"

[aggregation]
window = "5m"
grace = "{grace_s}s"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"
write_interval = "200ms"

[[adapter]]
type = "mqtt"
name = "pico"
url = "mqtt://127.0.0.1:{local}"
topics = ["fridge/{{device}}"]
max_backoff = "1s"

[[device]]
id = "{PICO}"
name = "Kitchen fridge"
tags = ["fridge"]

[[rule]]
name = "{TOO_WARM}"
kind = "threshold"
metric = "temperature"
tag = "fridge"
max = 8.0
hysteresis = 0.5

[[rule]]
name = "{RISING}"
kind = "rate"
metric = "temperature"
tag = "fridge"
rate = "+2.0 per 10m"
"#
    )
}

fn alerts_of<'a>(msgs: &'a [Message], rule: &str) -> Vec<&'a Message> {
    msgs.iter()
        .filter(|m| m.topic == format!("building/home/{PICO}/alerts"))
        .filter(|m| m.json()["rule"] == rule)
        .collect()
}

fn ts_ms(alert: &serde_json::Value) -> Option<i64> {
    gateway_core::Timestamp::parse_rfc3339(alert["ts"].as_str()?)
        .ok()
        .map(|t| t.as_millis())
}

#[tokio::test]
async fn a_pico_fridge_cold_start_raises_too_warm_and_rising_fast_on_the_dashboard() {
    let mut c = Checks::new("Pico fridge over MQTT, cold start");
    let browser = Browser::start().await;
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut cloud = Subscriber::start(upstream.port(), "building/home/#").await;
    let dashboard = free_port();
    let w = past_window(WINDOW_MS, Duration::from_secs(10));
    let mut gw =
        GatewayProcess::start(&config(local.port(), upstream.port(), dashboard, w.grace_s));
    gw.wait_for_log("Subscribed").await;

    // 4.0 °C at the window's start + 20 s, then every 10 s to 24.0 °C.
    let mut sent = Vec::new();
    let mut lines = Vec::new();
    let mut times = Vec::new();
    for i in 0..READINGS {
        let (text, v) = super::support::decimal(4.0 + 20.0 * i as f64 / 24.0, 2);
        let t = w.start + 20_000 + i as i64 * 10_000;
        lines.push(format!(r#"{{"temperature":{text},"ts":{}}}"#, t / 1000));
        sent.push(v);
        times.push(t);
    }
    publish_lines(local.port(), &format!("fridge/{PICO}"), &lines, 1).await;

    // The cloud gets the window, then the test has every alert too (alerts
    // go out at once, before the window closes).
    let got = cloud
        .collect_until(DEADLINE + Duration::from_secs(15), |m| {
            m.iter().any(|m| m.topic.ends_with("/aggregated"))
        })
        .await;
    let mut got = got;
    while let Some(m) = cloud.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    let totals = window_totals(&got);
    check_windows(&mut c, &totals, PICO, "temperature", &sent);

    // Too warm: raised once, by the first reading above 8 °C.
    let first_warm = sent.iter().position(|v| *v > 8.0).unwrap();
    let warm = alerts_of(&got, TOO_WARM);
    let raised: Vec<_> = warm
        .iter()
        .map(|m| m.json())
        .filter(|j| j["state"] == "raised")
        .collect();
    c.eq("too-warm alerts raised upstream", raised.len(), 1);
    if let Some(j) = raised.first() {
        c.eq(
            "too-warm raised by the first reading above 8 °C",
            (ts_ms(j), j["value"].as_f64()),
            (Some(times[first_warm]), Some(sent[first_warm])),
        );
    }
    // Rising fast: +2.0 within the first minute after the start (4.0 →
    // 6.5 at the third step), so raised within one reading of crossing.
    let crossing = sent.iter().position(|v| v - sent[0] >= 2.0).unwrap();
    let rising: Vec<_> = alerts_of(&got, RISING)
        .iter()
        .map(|m| m.json())
        .filter(|j| j["state"] == "raised")
        .collect();
    c.eq(
        "rising-fast alerts raised upstream from a cold start",
        rising.len(),
        1,
    );
    if let Some(j) = rising.first() {
        let at = ts_ms(j);
        c.check(
            "rising-fast raised within one reading of the +2.0 crossing",
            at == Some(times[crossing]) || at == Some(times[crossing + 1]),
            || format!("raised at {at:?}, crossing at {}: {j}", times[crossing]),
        );
    }

    // What the user looks at: the overview and the alerts page.
    if let Some(browser) = browser {
        let base = format!("http://127.0.0.1:{dashboard}");
        let mut page = Page::new(&browser).await;
        page.navigate(&format!("{base}/")).await;
        let row = format!("#devices tr[data-d=\"{PICO}\"]");
        c.check(
            "the overview names the fridge and shows 24 °C",
            dom_until(
                &mut page,
                &format!(
                    "document.querySelector('{row}').innerText.includes('Kitchen fridge') && parseFloat(document.querySelector('{row} i[data-m=\"temperature\"] b').textContent) === 24"
                ),
                5000,
            )
            .await,
            || "row missing or another value".into(),
        );
        for rule in [TOO_WARM, RISING] {
            c.check(
                &format!("the overview shows the {rule} badge on the fridge"),
                dom_until(
                    &mut page,
                    &format!("document.querySelector('{row}.alert .badge[data-rule=\"{rule}\"]')"),
                    3000,
                )
                .await,
                || "no badge".into(),
            );
        }
        page.navigate(&format!("{base}/alerts")).await;
        for rule in [TOO_WARM, RISING] {
            c.check(
                &format!("the alerts page lists {rule} as active"),
                dom_until(
                    &mut page,
                    &format!("document.getElementById('active').innerText.includes('{rule}')"),
                    3000,
                )
                .await,
                || "not in #active".into(),
            );
        }
        page.close().await;
    }
    let health = get_until(&mut gw, dashboard, "/api/alerts", |s, _| s == 200).await;
    c.check("the dashboard's alert API answers", health.is_ok(), || {
        format!("{health:?}")
    });
    gw.signal("TERM");
    c.eq("exit status after SIGTERM", gw.wait_exit().await, Some(0));
    c.finish();
}
