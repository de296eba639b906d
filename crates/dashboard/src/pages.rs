//! Server-rendered pages: Overview, Device, Alerts, Gateway. Plain HTML,
//! one small stylesheet, charts as inline SVG, and one script for live
//! updates (no build step, no CDN: the Pi may be offline). The script is
//! served as `/live.js`, never inline, nor any `on…=` handler: the
//! Content-Security-Policy's `script-src 'self'` then runs no script a
//! value slipped into a page could carry.

use std::fmt::Write;
use std::sync::Arc;

use gateway_core::registry::DeviceInfo;
use gateway_core::units::MetricInfo;
use gateway_core::{DeviceId, Timestamp};

use super::api::{all_devices, read_alerts, state_of, Query};
use super::history::{downsample, Aggregate, AlertRow};
use super::live::DeviceNow;
use super::svg;
use super::AppState;

pub use super::device_page::device;

pub const CSS: &str = include_str!("style.css");

/// The live-update script (`/live.js`): applies `/events` to whatever
/// the page shows, and submits the Overview's tag filter when it changes.
/// EventSource reconnects by itself (after a gateway restart too); the
/// `retry:` the server sends sets the pace.
pub const SCRIPT: &str = include_str!("live.js");

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

pub(super) fn url_enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) fn head(title: &str, active: &str) -> String {
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

pub(super) fn foot() -> String {
    "</main><script src=\"/live.js\"></script></body></html>".to_string()
}

pub(super) fn time(ms: i64) -> String {
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

pub(super) fn ago(now: i64, then: Option<i64>) -> String {
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
pub(super) fn tag_matches(tags: &std::collections::BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => tags.get(k).is_some_and(|x| x == v),
        None => tags.iter().any(|(k, v)| k == filter || v == filter),
    }
}

/// A device's registry entry.
pub(super) fn info_of(state: &AppState, id: &str) -> Option<DeviceInfo> {
    DeviceId::new(id)
        .ok()
        .and_then(|i| state.registry.get(&i).cloned())
}

/// Tags as people read them: labels bare (`fridge`, not `fridge=true`),
/// the rest `key=value` as configured.
pub(super) fn tags_text(info: Option<&DeviceInfo>) -> String {
    let Some(info) = info else {
        return String::new();
    };
    info.tags
        .iter()
        .map(|(k, v)| tag_option(info, k, v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The filter's option for a tag: a label bare, else `key=value`.
fn tag_option(info: &DeviceInfo, k: &str, v: &str) -> String {
    if info.labels.iter().any(|l| l == k) || v.is_empty() {
        k.to_string()
    } else {
        format!("{k}={v}")
    }
}

/// The protocol a device's data came in over, as the adapter that stamped
/// its readings says, never guessed. The overview (500 rows against a
/// 300 KB budget) shows the protocol alone; the device page adds the
/// adapter's name.
pub(super) fn protocol_html(state: &AppState, d: &DeviceNow, adapter_name: bool) -> String {
    match state.view.adapter(d.source) {
        Some((proto, name)) if adapter_name => {
            format!("<b>{}</b> (adapter {})", esc(&proto), esc(&name))
        }
        Some((proto, _)) => format!("<b>{}</b>", esc(&proto)),
        None => String::new(),
    }
}

/// An attribute value, unquoted where HTML allows it: 500 rows of three
/// values each count against the overview's size.
fn attr(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        v.to_string()
    } else {
        format!("\"{}\"", esc(v))
    }
}

/// A live value; the script finds it by metric inside the element that
/// carries the device (`data-d`), and keeps the decimals it was given.
pub(super) fn value_span(metric: &str, info: &MetricInfo, v: f64, label: bool) -> String {
    format!(
        r#"<i data-m={}{}>{} <b>{}</b> {}</i>"#,
        attr(metric),
        // Unknown precision: the script picks by magnitude, as the server.
        if info.precision.is_none() {
            " data-a=1"
        } else {
            ""
        },
        if label { esc(metric) } else { String::new() },
        info.number(v),
        esc(&info.unit)
    )
}

/// Sparkline buckets: 24 over 24 h, so 500 devices stay near 300 KB
/// before compression (see benches/dashboard.rs).
const SPARK_STEP: i64 = 3_600_000;
const SPARK_POINTS: usize = 24;

/// The overview: every device, one row each. The radio infrastructure
/// (a LoRaWAN forwarder's counters) is on the gateway page instead.
pub async fn overview(state: &Arc<AppState>, q: &Query) -> String {
    let now = state.clock.now().as_millis();
    let filter = q.get("tag").map(str::to_string);
    let active = state.live.active();
    let mut rows = Vec::new();
    let mut all_tags = std::collections::BTreeSet::new();
    for (id, d) in all_devices(state) {
        if d.infrastructure {
            continue;
        }
        let info = info_of(state, &id);
        let tags = info.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
        if let Some(i) = &info {
            for (k, v) in &tags {
                all_tags.insert(tag_option(i, k, v));
            }
        }
        if filter.as_deref().is_some_and(|f| !tag_matches(&tags, f)) {
            continue;
        }
        rows.push((id, info, d));
    }
    // One sparkline per device, of the metric that stands for it: the
    // page stays small with hundreds of devices.
    // With each, the readings of its windows not closed yet: the hour a
    // fridge of hourly windows is in counts for "24 h" too.
    let spark_keys: Vec<(String, String, MetricInfo, Vec<Aggregate>)> = rows
        .iter()
        .filter_map(|(id, info, d)| {
            let m = state.view.primary(info.as_ref(), d.latest.keys())?;
            let mi = state.view.info(id, info.as_ref(), d.source, &m);
            let open = state.live.open_points(id, &m);
            Some((id.clone(), m, mi, open))
        })
        .collect();
    let sparks = match state.store.clone() {
        Some(store) => tokio::task::spawn_blocking(move || {
            spark_keys
                .into_iter()
                .map(|(id, m, mi, open)| {
                    let day = now - 86_400_000;
                    let mut pts = store
                        .series(&id, &m, day, now, SPARK_STEP)
                        .unwrap_or_default();
                    pts.extend(open.iter().filter(|p| p.start >= day));
                    pts = downsample(pts, day, now, SPARK_STEP);
                    // Younger than two buckets: its few windows as stored.
                    if pts.len() < 2 {
                        pts = store.series(&id, &m, day, now, 0).unwrap_or_default();
                        let after = pts.last().map_or(day, |w| w.end);
                        pts.extend(open.into_iter().filter(|p| p.start >= after));
                        pts.drain(..pts.len().saturating_sub(SPARK_POINTS));
                    }
                    let cell = match svg::reading_range(&pts) {
                        Some((lo, hi)) => format!(
                            r#"{}<small>{} {}–{} {}</small>"#,
                            svg::sparkline(&pts, 96, 20, super::view::min_span(&mi)),
                            esc(&m),
                            mi.number(lo),
                            mi.number(hi),
                            esc(&mi.unit)
                        ),
                        None => String::new(),
                    };
                    (id, cell)
                })
                .collect::<std::collections::HashMap<_, _>>()
        })
        .await
        .unwrap_or_default(),
        None => Default::default(),
    };
    let mut out = head("Overview", "Overview");
    out.push_str(
        r#"<form class="filter"><label>Tag <select name="tag"><option value="">all</option>"#,
    );
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
    for (id, info, d) in &rows {
        let alerts: Vec<&AlertRow> = active.iter().filter(|a| &a.device == id).collect();
        let st = state_of(d, now, state.window_ms);
        let name = info.as_ref().map_or(id.as_str(), |i| i.name.as_str());
        let tags = tags_text(info.as_ref());
        let _ = write!(
            out,
            // The script finds the last-seen and alerts cells by position:
            // a class on each of 500 rows weighed 10 KB.
            r#"<tr data-d={eid}{cls}><td><a href="/device?id={uid}">{name}</a><small>{proto}{sep}{tags}</small><td class="st {st}">{st}<td>{ago}<td class=vals>"#,
            eid = attr(id),
            cls = if alerts.is_empty() {
                ""
            } else {
                r#" class="alert""#
            },
            uid = url_enc(id),
            name = esc(name),
            proto = protocol_html(state, d, false),
            sep = if tags.is_empty() || state.view.adapter(d.source).is_none() {
                ""
            } else {
                " · "
            },
            tags = esc(&tags),
            ago = ago(now, d.last_seen),
        );
        let mut metrics: Vec<String> = d.latest.keys().cloned().collect();
        state.view.sort(&mut metrics);
        for m in &metrics {
            if let Some((v, _)) = d.latest.get(m) {
                out.push_str(&value_span(
                    m,
                    &state.view.info(id, info.as_ref(), d.source, m),
                    *v,
                    true,
                ));
            }
        }
        let _ = write!(
            out,
            r#"<td>{}<td>"#,
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

/// An alert's value and what it was measured against, in the metric's
/// unit: a threshold's bound, a rate's change over its rule's span, an
/// anomaly's expected range (its score apart: a score is not in ppm), a
/// silence's wait.
pub(super) fn alert_texts(state: &AppState, a: &AlertRow) -> (String, String) {
    let info = state.view.info(
        &a.device,
        info_of(state, &a.device).as_ref(),
        state.live.source_of(&a.device),
        &a.metric,
    );
    describe_alert(&info, a, &state.rules)
}

/// [`alert_texts`] from what the writer also has: a rate's span is its
/// rule's, as configured now (a rule renamed or removed since leaves
/// "per span").
pub fn describe_alert(
    info: &MetricInfo,
    a: &AlertRow,
    rules: &[gateway_core::config::RuleConfig],
) -> (String, String) {
    let span = rules
        .iter()
        .find(|r| r.name == a.rule)
        .and_then(|r| r.rate.as_ref())
        .map(|rate| rate.span);
    gateway_core::units::alert_texts_over(
        info,
        &a.kind,
        a.value,
        a.limit,
        a.expected.map(|[lo, hi]| (lo, hi)),
        span,
    )
}

/// The Active table's one row when nothing is active (the live script
/// puts it back when the last one clears).
const NO_ACTIVE_ALERTS: &str =
    r#"<tr class="empty"><td colspan="6" class="muted">No active alerts</td></tr>"#;

/// Active alerts first, then the history of transitions.
pub async fn alerts(state: &Arc<AppState>) -> String {
    let mut out = head("Alerts", "Alerts");
    out.push_str(r#"<h1>Active</h1><table id="active"><thead><tr><th>Device</th><th>Rule</th><th>Raised (UTC)</th><th>Value</th><th>Limit or expected</th><th>Reason</th></tr></thead><tbody>"#);
    let active = state.live.active();
    if active.is_empty() {
        out.push_str(NO_ACTIVE_ALERTS);
    }
    for a in &active {
        let (value, limit) = alert_texts(state, a);
        let _ = write!(
            out,
            r#"<tr class="alert" data-d="{}" data-rule="{}"><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&a.device),
            esc(&a.rule),
            esc(&device_name(state, &a.device)),
            esc(&a.rule),
            esc(&a.kind),
            time(a.at),
            esc(&value),
            esc(&limit),
            esc(a.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table>");
    // Which alerts keep each actuator on (its clear waits for the last).
    out.push_str(&super::actions_held::section(state, &active));
    out.push_str(r#"<h1>History</h1><table id="history"><thead><tr><th>Time (UTC)</th><th>Device</th><th>Rule</th><th>State</th><th>Value</th><th>Limit or expected</th><th>Reason</th></tr></thead><tbody>"#);
    let history = read_alerts(state, 0, i64::MAX).await;
    if history.is_empty() {
        out.push_str(r#"<tr class="empty"><td colspan="7" class="muted">No alerts yet</td></tr>"#);
    }
    for a in history {
        let (value, limit) = alert_texts(state, &a);
        let _ = write!(
            out,
            r#"<tr class="{}"><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&a.state),
            time(a.at),
            esc(&device_name(state, &a.device)),
            esc(&a.rule),
            esc(&a.kind),
            esc(&a.state),
            esc(&value),
            esc(&limit),
            esc(a.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table>");
    out.push_str(&foot());
    out
}

pub(super) fn device_name(state: &AppState, id: &str) -> String {
    info_of(state, id).map_or_else(|| id.to_string(), |d| d.name)
}

/// The gateway itself, from the same telemetry `/metrics` serves.
pub fn gateway(state: &Arc<AppState>) -> String {
    let t = &state.telemetry;
    let health = (state.health)(t);
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
        if !health.upstream_configured {
            "none configured"
        } else if t
            .gauge(gateway_core::event::metrics::UPSTREAM_CONNECTED, &[])
            .get()
            > 0.5
        {
            "connected"
        } else {
            "not connected"
        },
        sum_gauge(t, gateway_core::event::metrics::OUTBOX_MESSAGES),
        sum_gauge(t, gateway_core::event::metrics::OUTBOX_BYTES),
        t.counter_total(super::writer::HISTORY_BYTES_WRITTEN),
        t.counter_total(super::writer::HISTORY_COMMITS),
    );
    // The configuration pushed from the cloud, when `[remote_config]` said.
    if let Some(config) = health.body["config"].as_object() {
        let text = |k: &str| config.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let applied = match (
            text("applied"),
            config.get("serial").and_then(serde_json::Value::as_u64),
        ) {
            ("", _) => "local files only".to_string(),
            (v, Some(s)) => format!("{v} (serial {s})"),
            (v, None) => v.to_string(),
        };
        let _ = write!(
            out,
            r#"<table class="kv"><tr><th>Configuration</th><td id="config-applied">{} — last push {} {}</td></tr></table>"#,
            esc(&applied),
            esc(text("desired")),
            esc(text("status")),
        );
    }
    out.push_str("<h2>Adapters</h2><table id=\"adapters\"><thead><tr><th>Name</th><th>Protocol</th><th>State</th><th>Readings</th><th>Errors</th></tr></thead><tbody>");
    let sources = state.view.sources.all();
    if let Some(adapters) = health.body["adapters"].as_object() {
        for (name, st) in adapters {
            let proto = sources
                .iter()
                .find(|s| &s.name == name)
                .map_or("", |s| state.view.sources.label(&s.kind));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(proto),
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
    infrastructure(state, &mut out);
    out.push_str("<h2>Outputs</h2><ul>");
    if health.upstream_configured {
        out.push_str("<li>upstream (MQTT)</li>");
    }
    for o in &state.outputs {
        let _ = write!(out, "<li>{}</li>", esc(o));
    }
    out.push_str("</ul>");
    out.push_str(&foot());
    out
}

/// The radio infrastructure the adapters report on (a LoRaWAN packet
/// forwarder's `stat`: received, forwarded, acknowledged share): part of
/// the gateway's own health, not a sensor.
fn infrastructure(state: &AppState, out: &mut String) {
    let now = state.clock.now().as_millis();
    let infra: Vec<(String, DeviceNow)> = state
        .live
        .devices()
        .into_iter()
        .filter(|(_, d)| d.infrastructure)
        .collect();
    out.push_str("</tbody></table>");
    if infra.is_empty() {
        return;
    }
    out.push_str(r#"<h2>Radio infrastructure</h2><table id="infrastructure"><thead><tr><th>Forwarder</th><th>Last report</th><th>Statistics</th></tr></thead><tbody>"#);
    for (id, d) in &infra {
        let _ = write!(
            out,
            r#"<tr data-d="{}"><td>{}<small>{}</small></td><td>{}</td><td class=vals>"#,
            esc(id),
            esc(&device_name(state, id)),
            protocol_html(state, d, false),
            ago(now, d.last_seen)
        );
        for (m, (v, _)) in &d.latest {
            out.push_str(&value_span(
                m,
                &state.view.info(id, None, d.source, m),
                *v,
                true,
            ));
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use gateway_core::config::DeviceConfig;
    use gateway_core::{DeviceRegistry, SystemClock, Telemetry};

    use super::*;
    use crate::{auth::Auth, live::Live, HealthView};

    fn state() -> Arc<AppState> {
        let device: DeviceConfig =
            toml::from_str("id = \"fridge-2\"\nname = \"Fridge 2\"\nroom = \"kitchen\"").unwrap();
        Arc::new(AppState {
            live: Live::default(),
            store: None,
            registry: DeviceRegistry::from_config(&[device]),
            rules: vec![],
            telemetry: Telemetry::default(),
            clock: Arc::new(SystemClock),
            started: Instant::now(),
            window_ms: 60_000,
            outputs: vec![],
            auth: Auth::new(&[], &Telemetry::default()),
            view: crate::view::View::default(),
            health: Arc::new(|_| HealthView {
                body: serde_json::json!({"status": "ok"}),
                upstream_configured: false,
            }),
            allowed_hosts: vec![],
        })
    }

    /// The Content-Security-Policy allows scripts from the dashboard's
    /// own origin only: a page with an inline script or an `on…=`
    /// handler would lose it (the Overview's tag filter did).
    #[tokio::test]
    async fn every_page_runs_only_the_served_script_and_no_inline_code() {
        let state = state();
        let pages = [
            ("/", overview(&state, &Query::parse("")).await),
            ("/alerts", alerts(&state).await),
            ("/gateway", gateway(&state)),
            (
                "/device",
                device(&state, &Query::parse("id=fridge-2")).await.unwrap(),
            ),
        ];
        for (path, page) in &pages {
            let scripts: Vec<&str> = page
                .match_indices("<script")
                .map(|(i, _)| &page[i..])
                .collect();
            assert_eq!(scripts.len(), 1, "{path}: one script");
            assert!(
                scripts[0].starts_with(r#"<script src="/live.js"></script>"#),
                "{path}: {}",
                scripts[0]
            );
            let lower = page.to_ascii_lowercase();
            for handler in [
                " onchange=",
                " onclick=",
                " onload=",
                " onsubmit=",
                " oninput=",
                "javascript:",
            ] {
                assert!(!lower.contains(handler), "{path}: {handler}");
            }
        }
        assert!(pages[0]
            .1
            .contains(r#"<form class="filter"><label>Tag <select name="tag">"#));
        // What the handler did is the served script's now.
        assert!(
            SCRIPT.contains("form.filter select[name=\"tag\"]") && SCRIPT.contains(".submit()")
        );
    }
}
