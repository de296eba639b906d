//! Server-rendered pages: Overview, Device, Alerts, Gateway. Plain HTML,
//! one small stylesheet, charts as inline SVG, and one inline script for
//! live updates (no build step, no CDN: the Pi may be offline).

use std::fmt::Write;
use std::sync::Arc;

use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, Timestamp};

use super::api::{all_devices, read_alerts, state_of, unit, Query};
use super::history::AlertRow;
use super::svg::{self, fmt_value, Marker};
use super::AppState;

pub const CSS: &str = include_str!("style.css");

/// The live-update script: applies `/events` to whatever the page shows.
/// EventSource reconnects by itself (after a gateway restart too); the
/// `retry:` the server sends sets the pace.
const SCRIPT: &str = include_str!("live.js");

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn head(title: &str, active: &str) -> String {
    let mut out = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · edge-gateway</title><link rel="stylesheet" href="/style.css"></head><body><nav>"#,
        esc(title)
    );
    for (href, name) in [
        ("/", "Overview"),
        ("/alerts", "Alerts"),
        ("/gateway", "Gateway"),
    ] {
        let class = if name == active { r#" class="on""# } else { "" };
        let _ = write!(out, r#"<a href="{href}"{class}>{name}</a>"#);
    }
    out.push_str(r#"<span id="conn" class="conn">●</span></nav><main>"#);
    out
}

fn foot() -> String {
    format!("</main><script>{SCRIPT}</script></body></html>")
}

fn time(ms: i64) -> String {
    Timestamp::from_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
        .replace('T', " ")
        .trim_end_matches('Z')
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn ago(now: i64, then: Option<i64>) -> String {
    match then {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).max(0) / 1000;
            match s {
                0..60 => format!("{s} s ago"),
                60..3600 => format!("{} min ago", s / 60),
                3600..86400 => format!("{} h ago", s / 3600),
                _ => format!("{} d ago", s / 86400),
            }
        }
    }
}

/// `room=kitchen` or a bare label/value.
fn tag_matches(tags: &std::collections::BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => tags.get(k).is_some_and(|x| x == v),
        None => tags.iter().any(|(k, v)| k == filter || v == filter),
    }
}

/// A guess from the id's shape: the registry does not say which adapter a
/// device talks through.
fn protocol(id: &str) -> &'static str {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    if id.len() == 16 && hex(id) {
        "LoRaWAN"
    } else if id.len() == 17 && id.split(':').count() == 6 {
        "BLE"
    } else {
        ""
    }
}

fn tags_text(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A live value; the script finds it by metric inside the element that
/// carries the device (`data-d`).
fn value_span(metric: &str, v: f64, label: bool) -> String {
    format!(
        r#"<i class=v data-m="{}">{} <b>{}</b> {}</i>"#,
        esc(metric),
        if label { esc(metric) } else { String::new() },
        fmt_value(v),
        unit(metric)
    )
}

/// Sparkline buckets: 24 over 24 h, so 500 devices stay near 300 KB
/// before compression (see benches/dashboard.rs).
const SPARK_STEP: i64 = 3_600_000;
const SPARK_POINTS: usize = 24;

/// The overview: every device, one row each.
pub async fn overview(state: &Arc<AppState>, q: &Query) -> String {
    let now = state.clock.now().as_millis();
    let filter = q.get("tag").map(str::to_string);
    let active = state.live.active();
    let mut rows = Vec::new();
    let mut all_tags = std::collections::BTreeSet::new();
    for (id, d) in all_devices(state) {
        let info = DeviceId::new(id.clone())
            .ok()
            .and_then(|i| state.registry.get(&i).cloned());
        let tags = info.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
        for (k, v) in &tags {
            all_tags.insert(if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            });
        }
        if filter.as_deref().is_some_and(|f| !tag_matches(&tags, f)) {
            continue;
        }
        let name = info.map_or(id.clone(), |i| i.name);
        rows.push((id, name, tags, d));
    }
    // One sparkline per device (its first metric): the page stays small
    // with hundreds of devices.
    let spark_keys: Vec<(String, String)> = rows
        .iter()
        .filter_map(|(id, _, _, d)| Some((id.clone(), d.latest.keys().next()?.clone())))
        .collect();
    let sparks = match state.store.clone() {
        Some(store) => tokio::task::spawn_blocking(move || {
            spark_keys
                .into_iter()
                .map(|(id, m)| {
                    let day = now - 86_400_000;
                    let mut pts = store
                        .series(&id, &m, day, now, SPARK_STEP)
                        .unwrap_or_default();
                    // Younger than two buckets: its few windows as stored.
                    if pts.len() < 2 {
                        pts = store.series(&id, &m, day, now, 0).unwrap_or_default();
                        pts.drain(..pts.len().saturating_sub(SPARK_POINTS));
                    }
                    (id, svg::sparkline(&pts, 96, 20))
                })
                .collect::<std::collections::HashMap<_, _>>()
        })
        .await
        .unwrap_or_default(),
        None => Default::default(),
    };
    let mut out = head("Overview", "Overview");
    out.push_str(r#"<form class="filter"><label>Tag <select name="tag" onchange="this.form.submit()"><option value="">all</option>"#);
    for t in &all_tags {
        let sel = if filter.as_deref() == Some(t) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, r#"<option{sel}>{}</option>"#, esc(t));
    }
    let _ = write!(
        out,
        r#"</select></label> <noscript><button>Filter</button></noscript> <span class="muted">{} devices</span></form><table id="devices"><thead><tr><th>Device</th><th>State</th><th>Last seen</th><th>Latest</th><th>24 h</th><th>Alerts</th></tr></thead><tbody>"#,
        rows.len()
    );
    for (id, name, tags, d) in &rows {
        let alerts: Vec<&AlertRow> = active.iter().filter(|a| &a.device == id).collect();
        let st = state_of(d, now, state.window_ms);
        let _ = write!(
            out,
            r#"<tr data-d="{eid}"{cls}><td><a href="/device?id={uid}">{name}</a><small>{tags}{proto}</small><td class="st {st}">{st}<td class=seen>{ago}<td class=vals>"#,
            eid = esc(id),
            cls = if alerts.is_empty() {
                ""
            } else {
                r#" class="alert""#
            },
            uid = url_enc(id),
            name = esc(name),
            tags = esc(&tags_text(tags)),
            proto = match protocol(id) {
                "" => String::new(),
                p => format!(" · {p}"),
            },
            ago = ago(now, d.last_seen),
        );
        for (m, (v, _)) in &d.latest {
            out.push_str(&value_span(m, *v, true));
        }
        let _ = write!(
            out,
            r#"<td>{}<td class=al>"#,
            sparks.get(id).map_or("", String::as_str)
        );
        for a in alerts {
            let _ = write!(
                out,
                r#"<span class="badge" data-rule="{r}">{r}</span>"#,
                r = esc(&a.rule)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out.push_str(&foot());
    out
}

fn rule_applies(
    r: &RuleConfig,
    id: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> bool {
    r.device.as_ref().is_none_or(|d| d.as_str() == id)
        && r.tag.as_deref().is_none_or(|t| tag_matches(tags, t))
}

/// One device: a chart per metric, its latest raw readings and its rules.
pub async fn device(state: &Arc<AppState>, q: &Query) -> Option<String> {
    let id = q.get("id")?.to_string();
    let now = state.clock.now().as_millis();
    let live = state.live.device(&id);
    let info = DeviceId::new(id.clone())
        .ok()
        .and_then(|i| state.registry.get(&i).cloned());
    if live.is_none() && info.is_none() {
        return None;
    }
    let d = live.unwrap_or_default();
    let tags = info.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
    let name = info.map_or(id.clone(), |i| i.name);
    let (range, span, step) = match q.get("range") {
        Some("7d") => ("7d", 7 * 86_400_000, 3_600_000),
        Some("30d") => ("30d", 30 * 86_400_000, 6 * 3_600_000),
        // 24 h: every window as stored.
        _ => ("24h", 86_400_000, 0),
    };
    let from = now - span;
    let mut metrics: Vec<String> = d.latest.keys().cloned().collect();
    if let Some(store) = &state.store {
        if let Some(k) = store
            .devices()
            .ok()
            .and_then(|v| v.into_iter().find(|k| k.id == id))
        {
            for m in k.metrics {
                if !metrics.contains(&m) {
                    metrics.push(m);
                }
            }
        }
    }
    metrics.sort();
    let alerts: Vec<AlertRow> = read_alerts(state, from, i64::MAX)
        .await
        .into_iter()
        .filter(|a| a.device == id)
        .collect();
    let series = match state.store.clone() {
        Some(store) => {
            let (id, ms) = (id.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || {
                ms.iter()
                    .map(|m| store.series(&id, m, from, now, step).unwrap_or_default())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let mut out = head(&name, "");
    let _ = write!(
        out,
        r#"<div data-d="{}"><h1>{}</h1><p class="muted">{} · {} · {} · last seen {}</p><p class="ranges">"#,
        esc(&id),
        esc(&name),
        esc(&id),
        esc(&tags_text(&tags)),
        state_of(&d, now, state.window_ms),
        ago(now, d.last_seen)
    );
    for r in ["24h", "7d", "30d"] {
        let cls = if r == range { r#" class="on""# } else { "" };
        let _ = write!(
            out,
            r#"<a{cls} href="/device?id={}&range={r}">{r}</a> "#,
            url_enc(&id)
        );
    }
    out.push_str("</p>");
    for (i, m) in metrics.iter().enumerate() {
        let pts = series.get(i).map_or(&[][..], Vec::as_slice);
        let markers: Vec<Marker> = alerts
            .iter()
            .filter(|a| a.metric.is_empty() || &a.metric == m)
            .map(|a| Marker {
                at: a.at,
                raised: a.state == "raised",
                label: format!("{} {} at {}", a.rule, a.state, time(a.at)),
            })
            .collect();
        let latest = d
            .latest
            .get(m)
            .map_or(String::new(), |(v, _)| value_span(m, *v, false));
        // Data younger than the range is drawn over its own span, not
        // squeezed against the right edge.
        let drawn_from = pts.first().map_or(from, |p| p.start.max(from));
        let _ = write!(
            out,
            r#"<section class="metric" data-metric="{}"><h2>{} {}</h2>{}</section>"#,
            esc(m),
            esc(m),
            latest,
            svg::chart(pts, &markers, unit(m), drawn_from, now)
        );
    }
    out.push_str(r#"<h2>Latest readings</h2><table id="recent"><thead><tr><th>Time</th><th>Metric</th><th>Value</th></tr></thead><tbody>"#);
    for (at, m, v) in d.recent.iter().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td></tr>",
            time(*at),
            esc(m),
            fmt_value(*v),
            unit(m)
        );
    }
    out.push_str("</tbody></table></div><h2>Rules</h2><ul>");
    for r in state.rules.iter().filter(|r| rule_applies(r, &id, &tags)) {
        let _ = write!(
            out,
            "<li><b>{}</b> {:?} {}{}{}</li>",
            esc(&r.name),
            r.kind,
            r.metric.as_ref().map_or(String::new(), |m| esc(m.as_str())),
            r.max.map_or(String::new(), |v| format!(" &gt; {v}")),
            r.min.map_or(String::new(), |v| format!(" &lt; {v}")),
        );
    }
    out.push_str("</ul>");
    out.push_str(&foot());
    Some(out)
}

/// Active alerts first, then the history of transitions.
pub async fn alerts(state: &Arc<AppState>) -> String {
    let mut out = head("Alerts", "Alerts");
    out.push_str(r#"<h1>Active</h1><table id="active"><thead><tr><th>Device</th><th>Rule</th><th>Raised</th><th>Value</th><th>Limit</th><th>Reason</th></tr></thead><tbody>"#);
    for a in state.live.active() {
        let _ = write!(
            out,
            r#"<tr class="alert"><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&device_name(state, &a.device)),
            esc(&a.rule),
            esc(&a.kind),
            time(a.at),
            fmt_value(a.value),
            fmt_value(a.limit),
            esc(a.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str(r#"</tbody></table><h1>History</h1><table id="history"><thead><tr><th>Time</th><th>Device</th><th>Rule</th><th>State</th><th>Value</th><th>Limit</th><th>Reason</th></tr></thead><tbody>"#);
    for a in read_alerts(state, 0, i64::MAX).await {
        let _ = write!(
            out,
            r#"<tr class="{}"><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&a.state),
            time(a.at),
            esc(&device_name(state, &a.device)),
            esc(&a.rule),
            esc(&a.kind),
            esc(&a.state),
            fmt_value(a.value),
            fmt_value(a.limit),
            esc(a.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table>");
    out.push_str(&foot());
    out
}

fn device_name(state: &AppState, id: &str) -> String {
    DeviceId::new(id.to_string())
        .ok()
        .and_then(|i| state.registry.get(&i).map(|d| d.name.clone()))
        .unwrap_or_else(|| id.to_string())
}

/// The gateway itself, from the same telemetry `/metrics` serves.
pub fn gateway(state: &Arc<AppState>) -> String {
    let t = &state.telemetry;
    let health = crate::health::check(t);
    let uptime = state.started.elapsed().as_secs();
    let readings = t.counter_total("edge_gateway_aggregator_readings_total");
    let mut out = head("Gateway", "Gateway");
    let _ = write!(
        out,
        r#"<h1>Gateway</h1><table class="kv"><tr><th>Version</th><td>{}</td></tr><tr><th>Uptime</th><td>{}</td></tr><tr><th>Health</th><td>{}</td></tr><tr><th>Readings</th><td>{} ({:.1}/s average; <span id="rate">–</span>/s now)</td></tr><tr><th>Upstream</th><td>{}</td></tr><tr><th>Outbox</th><td>{} messages, {} bytes</td></tr><tr><th>History written</th><td>{} bytes in {} commits</td></tr></table>"#,
        env!("CARGO_PKG_VERSION"),
        humantime::format_duration(std::time::Duration::from_secs(uptime)),
        esc(health.body["status"].as_str().unwrap_or("?")),
        readings,
        readings as f64 / uptime.max(1) as f64,
        if t.gauge(sinks::mqtt_upstream::UPSTREAM_CONNECTED, &[]).get() > 0.5 {
            "connected"
        } else {
            "not connected"
        },
        sum_gauge(t, sinks::spool::OUTBOX_MESSAGES),
        sum_gauge(t, sinks::spool::OUTBOX_BYTES),
        t.counter_total(super::writer::HISTORY_BYTES_WRITTEN),
        t.counter_total(super::writer::HISTORY_COMMITS),
    );
    out.push_str("<h2>Adapters</h2><table><thead><tr><th>Name</th><th>State</th><th>Readings</th><th>Errors</th></tr></thead><tbody>");
    if let Some(adapters) = health.body["adapters"].as_object() {
        for (name, st) in adapters {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(st.as_str().unwrap_or("?")),
                t.counter_value(
                    gateway_core::component::ADAPTER_READINGS,
                    &[("adapter", name)]
                )
                .unwrap_or(0),
                errors_of(t, name),
            );
        }
    }
    out.push_str("</tbody></table><h2>Outputs</h2><ul><li>upstream (MQTT)</li>");
    for o in &state.outputs {
        let _ = write!(out, "<li>{}</li>", esc(o));
    }
    out.push_str("</ul>");
    out.push_str(&foot());
    out
}

fn sum_gauge(t: &gateway_core::Telemetry, name: &str) -> f64 {
    t.gauges(name).into_iter().map(|(_, v)| v).sum()
}

fn errors_of(t: &gateway_core::Telemetry, adapter: &str) -> u64 {
    let rendered = t.render_prometheus();
    let needle = format!("adapter=\"{adapter}\"");
    rendered
        .lines()
        .filter(|l| l.starts_with(gateway_core::component::ADAPTER_ERRORS) && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
