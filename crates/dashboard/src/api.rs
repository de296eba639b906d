//! `/api/devices`, `/api/series`, `/api/alerts` (JSON, or CSV with
//! `format=csv`) and `/events`.
//!
//! Ranges are bounded by the store (at most `MAX_POINTS` buckets,
//! `MAX_ALERTS` rows), reads run on the blocking pool, and an `/events`
//! client that stops reading is dropped, never buffered for.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use gateway_core::csv::csv_cell;
use gateway_core::Timestamp;
use http_body_util::Either;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::history::{Aggregate, AlertRow, CommandRow};
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
    // Within the range of timestamps: a query's `from=-9223372036854775808`
    // would otherwise overflow the bucket arithmetic further on.
    let within = |ms: i64| ms.clamp(0, Timestamp::MAX.as_millis());
    let t = text.trim();
    if t == "now" {
        return Some(now);
    }
    if let Some(Ok(d)) = t.strip_prefix('-').map(humantime::parse_duration) {
        let ago = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Some(within(now.saturating_sub(ago)));
    }
    if let Ok(ms) = t.parse::<i64>() {
        return Some(within(ms));
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
            let info = super::pages::info_of(state, &id);
            let latest: serde_json::Map<_, _> = d
                .latest
                .iter()
                .map(|(m, (v, at))| {
                    let unit = state.view.info(&id, info.as_ref(), d.source, m).unit;
                    (m.clone(), json!({"value": v, "at": at, "unit": unit}))
                })
                .collect();
            let adapter = state.view.sources.get(d.source).map(|s| {
                json!({"name": s.name, "type": s.kind, "protocol": state.view.sources.label(&s.kind)})
            });
            json!({
                "id": id,
                "name": info.as_ref().map_or(id.as_str(), |i| i.name.as_str()),
                "tags": info.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
                "state": state_of(&d, now, state.window_ms),
                "last_seen": d.last_seen,
                "latest": latest,
                "active_alerts": active.iter().filter(|a| a.device == id).count(),
                "adapter": adapter,
                "infrastructure": d.infrastructure,
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
    let device = q.get("device").ok_or("device= is required")?;
    // One device in any case, as everywhere else.
    let device = gateway_core::DeviceId::new(device)
        .map_err(|e| format!("device={device}: {e}"))?
        .to_string();
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
            csv_cell(device),
            csv_cell(metric),
            ts(p.start),
            ts(p.end),
            p.count,
            csv_number(p.avg),
            csv_number(p.min),
            csv_number(p.max),
            csv_number(p.std)
        );
    }
    out
}

/// A number as a CSV cell: at most 15 significant digits, the most an
/// f64 carries for every decimal (`DBL_DIG`), then the shortest text that
/// reads back as that. A reading of 10.21 stays 10.21, and the last-bit
/// noise of averaging it (`10.209999999999999`) goes; a meter's
/// 1 000 000 000 003 Wh keeps its last Wh.
pub fn csv_number(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        // `-0` is a zero to a spreadsheet; NaN and inf as Rust spells them.
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let rounded = format!("{v:.14e}").parse::<f64>().unwrap_or(v);
    if rounded.is_finite() {
        rounded.to_string()
    } else {
        // Within 15 digits of ±f64::MAX the rounding overflows to ±inf:
        // the value itself, in the shortest text that reads back as it
        // (`1.7976931348623157e308`; in full it would take 309 digits).
        format!("{v:e}")
    }
}

/// The columns of the alert history as CSV (`history export --alerts`,
/// `/api/alerts?format=csv`).
pub const ALERTS_CSV_HEADER: &str = "time,rule,device,metric,state,value,limit,reason";

/// Alert transitions as CSV, in the order given. Text cells go through
/// [`csv_cell`]; value and limit stay numbers.
pub fn alerts_csv<'a>(rows: impl IntoIterator<Item = &'a AlertRow>) -> String {
    let mut out = String::from(ALERTS_CSV_HEADER);
    out.push('\n');
    for a in rows {
        let time = Timestamp::from_millis(a.at)
            .map(Timestamp::to_rfc3339)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{time},{},{},{},{},{},{},{}",
            csv_cell(&a.rule),
            csv_cell(&a.device),
            csv_cell(&a.metric),
            csv_cell(&a.state),
            csv_number(a.value),
            csv_number(a.limit),
            csv_cell(a.reason.as_deref().unwrap_or_default()),
        );
    }
    out
}

/// The columns of the command history as CSV (`history export
/// --commands`).
pub const COMMANDS_CSV_HEADER: &str = "time,id,device,metric,value,status,reason,detail";

/// Commands and their results as CSV, in the order given. The value is a
/// number as a number, `null` for a relinquish, and JSON text otherwise
/// (a LoRaWAN downlink's `{"port", "data"}`), through [`csv_cell`].
pub fn commands_csv<'a>(rows: impl IntoIterator<Item = &'a CommandRow>) -> String {
    let mut out = String::from(COMMANDS_CSV_HEADER);
    out.push('\n');
    for c in rows {
        let time = Timestamp::from_millis(c.at)
            .map(Timestamp::to_rfc3339)
            .unwrap_or_default();
        let value = match &c.value {
            serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), csv_number),
            serde_json::Value::String(s) => csv_cell(s).into_owned(),
            other => csv_cell(&other.to_string()).into_owned(),
        };
        let _ = writeln!(
            out,
            "{time},{},{},{},{value},{},{},{}",
            csv_cell(&c.id),
            csv_cell(&c.device),
            csv_cell(&c.metric),
            csv_cell(&c.status),
            csv_cell(&c.reason),
            csv_cell(&c.detail),
        );
    }
    out
}

pub async fn series(state: &AppState, q: &Query) -> Response<Body> {
    match read_series(state, q).await {
        Err(e) => bad(e),
        Ok((device, metric, points)) if q.get("format") == Some("csv") => full(
            StatusCode::OK,
            "text/csv; charset=utf-8",
            csv(&device, &metric, &points),
        ),
        Ok((device, metric, points)) => {
            let info = super::pages::info_of(state, &device);
            let unit = state
                .view
                .info(
                    &device,
                    info.as_ref(),
                    state.live.source_of(&device),
                    &metric,
                )
                .unit;
            json_reply(&json!({
                "device": device, "metric": metric, "unit": unit, "points": points,
            }))
        }
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
    let csv = match q.get("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => return bad(format!("format={f}: expected json or csv")),
    };
    let rows = match q.get("state") {
        Some("active") => state.live.active(),
        Some(s @ ("raised" | "cleared" | "suppressed")) => read_alerts(state, from, to)
            .await
            .into_iter()
            .filter(|a| a.state == s)
            .collect(),
        Some(s) => {
            return bad(format!(
                "state={s}: expected active, raised, cleared or suppressed"
            ))
        }
        None => read_alerts(state, from, to).await,
    };
    if csv {
        // Oldest first, as a log reads; the JSON answer is newest first.
        let text = alerts_csv(rows.iter().rev());
        return full(StatusCode::OK, "text/csv; charset=utf-8", text);
    }
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
    fn csv_numbers_carry_the_source_precision_without_float_noise() {
        let noisy = (10.21_f64 * 3.0) / 3.0 + f64::EPSILON * 8.0;
        assert_ne!(noisy.to_string(), "10.21", "the case must be noisy");
        assert_eq!(csv_number(noisy), "10.21");
        assert_eq!(csv_number(10.209999999999999), "10.21");
        assert_eq!(csv_number(0.1 + 0.2), "0.3");
        assert_eq!(csv_number(1_000_000_000_003.0), "1000000000003");
        assert_eq!(csv_number(-4.5), "-4.5");
        assert_eq!(csv_number(2.0478911), "2.0478911");
        assert_eq!(csv_number(-0.0), "0");
        assert_eq!(csv_number(f64::NAN), "NaN");
        // Issue 68 (I): ±f64::MAX was printed as ±inf.
        for v in [f64::MAX, -f64::MAX, 1.797_693_134_862_315_5e308] {
            let text = csv_number(v);
            assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
        }
        assert_eq!(csv_number(f64::MAX), "1.7976931348623157e308");
        assert_eq!(csv_number(-f64::MAX), "-1.7976931348623157e308");
        assert_eq!(csv_number(f64::INFINITY), "inf");
        let p = Aggregate {
            start: 0,
            end: 3_600_000,
            count: 150,
            avg: 10.209999999999999,
            min: 8.0,
            max: 12.1,
            std: 2.048,
        };
        assert!(csv("d", "t", &[p]).ends_with(",150,10.21,8,12.1,2.048\n"));
    }

    #[test]
    fn times_are_relative_absolute_or_epoch_ms() {
        assert_eq!(parse_time("now", 10_000), Some(10_000));
        assert_eq!(parse_time("-5s", 10_000), Some(5_000));
        assert_eq!(parse_time("1234", 0), Some(1234));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Some(1000));
        assert_eq!(parse_time("yesterday", 0), None);
        // Whatever a query says, the time is one a timestamp can hold.
        let max = Timestamp::MAX.as_millis();
        assert_eq!(parse_time("-9223372036854775808", 10), Some(0));
        assert_eq!(parse_time("9223372036854775807", 10), Some(max));
        assert_eq!(parse_time("-300000000y", 10), Some(0));
        assert_eq!(parse_time("-18446744073709551615s", 10), Some(0));
    }

    #[test]
    fn csv_names_from_outside_never_start_a_formula_and_numbers_stay_numbers() {
        let point = Aggregate {
            start: 0,
            end: 1000,
            count: 2,
            avg: -1.5,
            min: -2.0,
            max: -1.0,
            std: 0.5,
        };
        let out = csv("=cmd|' -C calc'!A0", "@temp", &[point]);
        let row = out.lines().nth(1).unwrap();
        assert!(
            row.starts_with("'=cmd|' -C calc'!A0,'@temp,1970-01-01T00:00:00"),
            "{row}"
        );
        assert!(
            row.ends_with(",2,-1.5,-2,-1,0.5"),
            "numbers untouched: {row}"
        );
    }

    #[test]
    fn alert_csv_neutralises_text_cells_and_keeps_negative_numbers() {
        let row = AlertRow {
            device: "=HYPERLINK(\"http://evil\")".into(),
            rule: "freezer,low".into(),
            metric: "-temperature".into(),
            kind: "threshold".into(),
            state: "raised".into(),
            value: -3.5,
            limit: -2.0,
            at: 1_000,
            reason: Some("@below".into()),
            expected: None,
        };
        assert_eq!(
            alerts_csv([&row]),
            "time,rule,device,metric,state,value,limit,reason\n\
             1970-01-01T00:00:01Z,\"freezer,low\",\"'=HYPERLINK(\"\"http://evil\"\")\",'-temperature,raised,-3.5,-2,'@below\n"
        );
    }
}
