//! `/api/devices`, `/api/series`, `/api/alerts` and `/events`.
//!
//! Ranges are bounded by the store (at most `MAX_POINTS` buckets,
//! `MAX_ALERTS` rows), reads run on the blocking pool, and an `/events`
//! client that stops reading is dropped, never buffered for.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use gateway_core::Timestamp;
use http_body_util::Either;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::history::{Aggregate, AlertRow};
use super::live::DeviceNow;
use super::server::{full, Body, EventStream};
use super::AppState;

/// Chunks queued for one `/events` client before it counts as stuck.
const CLIENT_QUEUE: usize = 256;
/// A comment line this often keeps proxies from closing an idle stream
/// and lets the server notice a client that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Clients wait this long before reconnecting (the browser's EventSource
/// does it by itself, e.g. after a gateway restart).
const RETRY_MS: u32 = 2000;

/// The query string, decoded.
#[derive(Debug, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(q: &str) -> Self {
        Self(
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// `now`, `-24h` (ago), milliseconds since the epoch or RFC 3339.
pub fn parse_time(text: &str, now: i64) -> Option<i64> {
    let t = text.trim();
    if t == "now" {
        return Some(now);
    }
    if let Some(ago) = t.strip_prefix('-') {
        let d = humantime::parse_duration(ago).ok()?;
        return Some(now - i64::try_from(d.as_millis()).ok()?);
    }
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    Timestamp::parse_rfc3339(t).ok().map(Timestamp::as_millis)
}

fn bad(msg: String) -> Response<Body> {
    full(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        msg + "\n",
    )
}

fn json_reply(v: &serde_json::Value) -> Response<Body> {
    full(StatusCode::OK, "application/json", v.to_string())
}

/// Derived state: `offline` (the device said so), `receiving` (a reading
/// within two windows), `silent` (seen before, not lately) or `unknown`.
pub fn state_of(d: &DeviceNow, now: i64, window_ms: i64) -> &'static str {
    if d.online == Some(false) {
        return "offline";
    }
    match d.last_seen {
        Some(t) if now - t <= 2 * window_ms.max(60_000) => "receiving",
        Some(_) => "silent",
        None => "unknown",
    }
}

/// The unit the usual metric names are measured in; empty when unknown.
pub fn unit(metric: &str) -> &'static str {
    let m = metric.to_ascii_lowercase();
    match m.as_str() {
        _ if m.contains("temp") => "°C",
        _ if m.contains("humid") => "%",
        _ if m.contains("co2") => "ppm",
        _ if m.contains("pressure") => "hPa",
        _ if m.contains("voltage") => "V",
        _ if m.contains("battery") => "%",
        _ if m.contains("lux") || m.contains("illuminance") => "lx",
        _ if m.contains("power") => "W",
        _ if m.contains("energy") => "kWh",
        _ if m.contains("rssi") => "dBm",
        _ => "",
    }
}

/// Every device the registry, history or the present knows, by id.
pub fn all_devices(state: &AppState) -> BTreeMap<String, DeviceNow> {
    let mut all = state.live.devices();
    for d in state.registry.ids() {
        all.entry(d.to_string()).or_default();
    }
    all
}

pub fn devices(state: &AppState) -> Response<Body> {
    let now = state.clock.now().as_millis();
    let active = state.live.active();
    let list: Vec<_> = all_devices(state)
        .into_iter()
        .map(|(id, d)| {
            let info = gateway_core::DeviceId::new(id.clone())
                .ok()
                .and_then(|i| state.registry.get(&i).cloned());
            let latest: serde_json::Map<_, _> = d
                .latest
                .iter()
                .map(|(m, (v, at))| (m.clone(), json!({"value": v, "at": at, "unit": unit(m)})))
                .collect();
            json!({
                "id": id,
                "name": info.as_ref().map_or(id.as_str(), |i| i.name.as_str()),
                "tags": info.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
                "state": state_of(&d, now, state.window_ms),
                "last_seen": d.last_seen,
                "latest": latest,
                "active_alerts": active.iter().filter(|a| a.device == id).count(),
            })
        })
        .collect();
    json_reply(&json!({ "devices": list }))
}

/// The series a query names, or why not.
pub async fn read_series(
    state: &AppState,
    q: &Query,
) -> Result<(String, String, Vec<Aggregate>), String> {
    let now = state.clock.now().as_millis();
    let device = q.get("device").ok_or("device= is required")?.to_string();
    let metric = q.get("metric").ok_or("metric= is required")?.to_string();
    let from = match q.get("from") {
        Some(t) => {
            parse_time(t, now).ok_or(format!("from={t}: expected now, -24h, ms or RFC 3339"))?
        }
        None => now - 86_400_000,
    };
    let to = match q.get("to") {
        Some(t) => {
            parse_time(t, now).ok_or(format!("to={t}: expected now, -24h, ms or RFC 3339"))?
        }
        None => now,
    };
    let step = match q.get("step") {
        Some(s) => i64::try_from(
            humantime::parse_duration(s)
                .map_err(|_| format!("step={s}: expected a duration like 5m"))?
                .as_millis(),
        )
        .unwrap_or(i64::MAX),
        None => 0,
    };
    if to <= from {
        return Err("to must be after from".into());
    }
    let Some(store) = state.store.clone() else {
        return Ok((device, metric, Vec::new()));
    };
    let (d, m) = (device.clone(), metric.clone());
    let points = tokio::task::spawn_blocking(move || store.series(&d, &m, from, to, step))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((device, metric, points))
}

/// The CSV of `history export` and `format=csv`.
pub fn csv(device: &str, metric: &str, points: &[Aggregate]) -> String {
    let mut out = String::from("device,metric,start,end,count,avg,min,max,std\n");
    for p in points {
        let ts = |ms| {
            Timestamp::from_millis(ms)
                .map(Timestamp::to_rfc3339)
                .unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            csv_field(device),
            csv_field(metric),
            ts(p.start),
            ts(p.end),
            p.count,
            p.avg,
            p.min,
            p.max,
            p.std
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub async fn series(state: &AppState, q: &Query) -> Response<Body> {
    match read_series(state, q).await {
        Err(e) => bad(e),
        Ok((device, metric, points)) if q.get("format") == Some("csv") => full(
            StatusCode::OK,
            "text/csv; charset=utf-8",
            csv(&device, &metric, &points),
        ),
        Ok((device, metric, points)) => json_reply(&json!({
            "device": device, "metric": metric, "unit": unit(&metric), "points": points,
        })),
    }
}

/// Alert transitions in the range, newest first.
pub async fn read_alerts(state: &AppState, from: i64, to: i64) -> Vec<AlertRow> {
    let Some(store) = state.store.clone() else {
        return Vec::new();
    };
    tokio::task::spawn_blocking(move || store.alerts(from, to))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

pub async fn alerts(state: &AppState, q: &Query) -> Response<Body> {
    let now = state.clock.now().as_millis();
    let from = q.get("from").map_or(Some(0), |t| parse_time(t, now));
    let to = q.get("to").map_or(Some(i64::MAX), |t| parse_time(t, now));
    let (Some(from), Some(to)) = (from, to) else {
        return bad("from/to: expected now, -24h, ms or RFC 3339".into());
    };
    let rows = match q.get("state") {
        Some("active") => state.live.active(),
        Some(s @ ("raised" | "cleared")) => read_alerts(state, from, to)
            .await
            .into_iter()
            .filter(|a| a.state == s)
            .collect(),
        Some(s) => return bad(format!("state={s}: expected active, raised or cleared")),
        None => read_alerts(state, from, to).await,
    };
    json_reply(&json!({ "alerts": rows }))
}

/// `/events`: Server-Sent Events from the live broadcast.
pub fn events(state: &AppState, stop: &CancellationToken) -> Response<Body> {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let mut sub = state.live.subscribe();
    let stop = stop.clone();
    tokio::spawn(async move {
        if tx
            .send(Bytes::from(format!("retry: {RETRY_MS}\n: hello\n\n")))
            .await
            .is_err()
        {
            return;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        loop {
            let chunk = tokio::select! {
                _ = stop.cancelled() => return,
                _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                ev = sub.recv() => match ev {
                    Ok(text) => Bytes::copy_from_slice(text.as_bytes()),
                    // Too far behind: say so (the page reloads its data)
                    // and go on from the present.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Bytes::from(format!("event: lagged\ndata: {n}\n\n"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            // A client that does not read is dropped, not buffered for.
            if tx.try_send(chunk).is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Either::Right(EventStream { rx }));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_relative_absolute_or_epoch_ms() {
        assert_eq!(parse_time("now", 10_000), Some(10_000));
        assert_eq!(parse_time("-5s", 10_000), Some(5_000));
        assert_eq!(parse_time("1234", 0), Some(1234));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Some(1000));
        assert_eq!(parse_time("yesterday", 0), None);
    }
}
