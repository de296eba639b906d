//! One device's page: what it is and where its data comes from, the
//! numbers of its latest windows, a chart per metric with value and time
//! axes and labelled alert markers, its last commands, its last raw
//! readings and its rules.

use std::fmt::Write;
use std::sync::Arc;

use gateway_core::config::RuleConfig;

use super::api::{read_alerts, state_of, Query};
use super::history::{downsample, merge, Aggregate, AlertRow};
use super::pages::{
    ago, alert_texts, esc, foot, head, info_of, protocol_html, tag_matches, tags_text, time,
    url_enc, value_span,
};
use super::svg::{self, Marker};
use super::AppState;

fn rule_applies(
    r: &RuleConfig,
    id: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> bool {
    r.device.as_ref().is_none_or(|d| d.as_str() == id)
        && r.tag.as_deref().is_none_or(|t| tag_matches(tags, t))
}

/// `stored` windows of a range followed by the `open` slots after them,
/// merged into the range's `step` like the stored ones (0: as they are).
fn with_open(
    mut stored: Vec<Aggregate>,
    open: Vec<Aggregate>,
    from: i64,
    to: i64,
    step: i64,
) -> Vec<Aggregate> {
    // Stored as they are, the last window's end is where the open ones
    // begin; merged, a bucket's end is only the step's, and the open slots
    // (after the last closed window by construction) join their bucket.
    let after = match stored.last() {
        Some(w) if step == 0 => w.end.max(from),
        _ => from,
    };
    stored.extend(
        open.into_iter()
            .filter(|p| p.start >= after && p.start < to),
    );
    if step > 0 {
        stored = downsample(stored, from, to, step);
    }
    stored
}

/// The oldest open window of `window_ms` so far: its slots merged into
/// one, over the window's span.
fn open_window(slots: &[Aggregate], window_ms: i64) -> Option<Aggregate> {
    let first = slots.first()?;
    let start = first.start.div_euclid(window_ms.max(1)) * window_ms.max(1);
    let end = start.saturating_add(window_ms);
    let mut w = Aggregate {
        start,
        end,
        count: 0,
        ..*first
    };
    for s in slots.iter().filter(|s| s.start < end) {
        merge(&mut w, s);
    }
    Some(w)
}

/// One device: its numbers, a chart per metric, its latest raw readings
/// and its rules. `None` when no one knows the id.
pub async fn device(state: &Arc<AppState>, q: &Query) -> Option<String> {
    // The id as the link or a person typed it: one device in any case.
    let id = gateway_core::DeviceId::new(q.get("id")?)
        .map(|d| d.to_string())
        .ok()?;
    let now = state.clock.now().as_millis();
    let live = state.live.device(&id);
    let info = info_of(state, &id);
    if live.is_none() && info.is_none() {
        return None;
    }
    let d = live.unwrap_or_default();
    let name = info.as_ref().map_or(id.clone(), |i| i.name.clone());
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
    state.view.sort(&mut metrics);
    let alerts: Vec<AlertRow> = read_alerts(state, from, i64::MAX)
        .await
        .into_iter()
        .filter(|a| a.device == id)
        .collect();
    let stored = match state.store.clone() {
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
    // Readings of windows not closed yet follow the stored windows: with
    // hourly windows they are the chart's first hour, and its newest.
    let series: Vec<Vec<Aggregate>> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            with_open(
                stored.get(i).cloned().unwrap_or_default(),
                state.live.open_points(&id, m),
                from,
                now,
                step,
            )
        })
        .collect();
    let mut out = head(&name, "");
    let proto = protocol_html(state, &d, true);
    let tags = tags_text(info.as_ref());
    let _ = write!(
        out,
        r#"<div data-d="{}"><h1>{}</h1><p class="muted">{}{}{} · {} · last seen {}</p><p class="ranges">"#,
        esc(&id),
        esc(&name),
        esc(&id),
        if proto.is_empty() {
            String::new()
        } else {
            format!(" · {proto}")
        },
        if tags.is_empty() {
            String::new()
        } else {
            format!(" · {}", esc(&tags))
        },
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

    // The numbers: each metric's latest closed window.
    out.push_str(r#"<h2>Latest window</h2><table id="windows"><thead><tr><th>Metric</th><th>Window (UTC)</th><th>Count</th><th>Average</th><th>Min</th><th>Max</th><th>Std dev</th></tr></thead><tbody>"#);
    for (i, m) in metrics.iter().enumerate() {
        // The writer's present, else the newest window of this range in
        // history (after a restart).
        let closed: Option<Aggregate> = d.last_window.get(m).copied().or_else(|| {
            (step == 0)
                .then(|| stored.get(i).and_then(|s| s.last().copied()))
                .flatten()
        });
        // No window closed yet (the first hour of hourly windows): what
        // the oldest open one holds so far, said to be so.
        let (w, end) = match closed {
            Some(w) => (w, time(w.end).get(11..).unwrap_or_default().to_string()),
            None => match open_window(&state.live.open_points(&id, m), state.window_ms) {
                Some(w) if w.end > now => (w, "now (open)".to_string()),
                Some(w) => (
                    w,
                    format!("{} (open)", time(w.end).get(11..).unwrap_or_default()),
                ),
                None => continue,
            },
        };
        let mi = state.view.info(id.as_str(), info.as_ref(), d.source, m);
        let _ = write!(
            out,
            r#"<tr data-metric="{}"><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(m),
            esc(m),
            time(w.start),
            end,
            w.count,
            esc(&mi.format(w.avg)),
            esc(&mi.format(w.min)),
            esc(&mi.format(w.max)),
            esc(&mi.format(w.std)),
        );
    }
    out.push_str("</tbody></table>");

    for (i, m) in metrics.iter().enumerate() {
        let pts = series.get(i).map_or(&[][..], Vec::as_slice);
        let mi = state.view.info(id.as_str(), info.as_ref(), d.source, m);
        let markers: Vec<Marker> = alerts
            .iter()
            .filter(|a| a.metric.is_empty() || &a.metric == m)
            .map(|a| {
                let (value, limit) = alert_texts(state, a);
                Marker {
                    at: a.at,
                    raised: a.state == "raised",
                    label: a.rule.clone(),
                    title: format!(
                        "{} {} at {} UTC: {value} ({limit})",
                        a.rule,
                        a.state,
                        time(a.at)
                    ),
                }
            })
            .collect();
        let latest = d
            .latest
            .get(m)
            .map_or(String::new(), |(v, _)| value_span(m, &mi, *v, false));
        // Data younger than the range is drawn over its own span, not
        // squeezed against the right edge.
        let drawn_from = pts.first().map_or(from, |p| p.start.max(from));
        let _ = write!(
            out,
            r#"<section class="metric" data-metric="{}"><h2>{} {}<small class="muted">{}</small></h2>{}</section>"#,
            esc(m),
            esc(m),
            latest,
            if mi.quantity.is_empty() || mi.quantity == m {
                String::new()
            } else {
                format!(" {}", esc(mi.quantity))
            },
            svg::chart(pts, &markers, &mi, drawn_from, now)
        );
    }

    if !alerts.is_empty() {
        out.push_str(r#"<h2>Alerts in this range</h2><table id="device-alerts"><thead><tr><th>Time (UTC)</th><th>Rule</th><th>State</th><th>Value</th><th>Limit or expected</th></tr></thead><tbody>"#);
        for a in &alerts {
            let (value, limit) = alert_texts(state, a);
            let _ = write!(
                out,
                r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&a.state),
                time(a.at),
                esc(&a.rule),
                esc(&a.state),
                esc(&value),
                esc(&limit)
            );
        }
        out.push_str("</tbody></table>");
    }

    out.push_str(&super::commands::table(&state.live.commands_of(&id)));

    out.push_str(r#"<h2>Latest readings</h2><table id="recent"><thead><tr><th>Time (UTC)</th><th>Metric</th><th>Value</th></tr></thead><tbody>"#);
    for (at, m, v) in d.recent.iter().rev() {
        let mi = state.view.info(id.as_str(), info.as_ref(), d.source, m);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(*at),
            esc(m),
            esc(&mi.format(*v)),
        );
    }
    out.push_str("</tbody></table></div><h2>Rules</h2><ul>");
    let tag_map = info.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
    for r in state
        .rules
        .iter()
        .filter(|r| rule_applies(r, &id, &tag_map))
    {
        let mi = r.metric.as_ref().map(|m| {
            state
                .view
                .info(id.as_str(), info.as_ref(), d.source, m.as_str())
        });
        let bound = |v: f64| mi.as_ref().map_or(v.to_string(), |mi| mi.format(v));
        let _ = write!(
            out,
            "<li><b>{}</b> {:?} {}{}{}</li>",
            esc(&r.name),
            r.kind,
            r.metric.as_ref().map_or(String::new(), |m| esc(m.as_str())),
            r.max
                .map_or(String::new(), |v| format!(" &gt; {}", esc(&bound(v)))),
            r.min
                .map_or(String::new(), |v| format!(" &lt; {}", esc(&bound(v)))),
        );
    }
    out.push_str("</ul>");
    out.push_str(&foot());
    Some(out)
}
