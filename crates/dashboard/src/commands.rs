//! The last commands and their results per device, read-only: the table
//! on the device page and `/api/commands?device=…`.
//!
//! Kept in memory from the results the command runner hands the
//! dashboard (`SinkEvent::Command`, the same results the cloud receives),
//! not in history: a restart starts with an empty list. Bounded twice:
//! [`PER_DEVICE`] rows a device, and [`MAX_DEVICES`] devices, since a
//! command for a made-up device id is refused with a result too.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;

use gateway_core::event::CommandEvent;
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::api::Query;
use super::pages::{esc, time};
use super::server::{full, Body};
use super::AppState;

/// Results kept per device: more than a page shows at a glance.
pub const PER_DEVICE: usize = 20;
/// Devices with results kept; beyond it the device whose newest result is
/// the oldest makes room.
pub const MAX_DEVICES: usize = 1000;

/// One command's result as the pages show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRow {
    pub id: String,
    pub metric: String,
    pub value: serde_json::Value,
    /// `done`, `refused`, `failed` or `expired`.
    pub status: String,
    /// Empty when done.
    pub reason: String,
    /// When the result was decided (ms).
    pub at: i64,
}

impl CommandRow {
    pub fn of(c: &CommandEvent) -> Self {
        Self {
            id: c.id.clone(),
            metric: c.metric.clone(),
            value: c.value.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            at: c.at.as_millis(),
        }
    }
}

/// Each device's last results, newest last.
#[derive(Debug, Default)]
pub struct RecentCommands {
    by_device: HashMap<String, VecDeque<CommandRow>>,
}

impl RecentCommands {
    /// Keeps `row` as `device`'s newest. A result sent again for a
    /// repeated id replaces the first one's row rather than adding one.
    pub fn push(&mut self, device: &str, row: CommandRow) {
        if !self.by_device.contains_key(device) && self.by_device.len() >= MAX_DEVICES {
            let oldest = self
                .by_device
                .iter()
                .min_by_key(|(_, rows)| rows.back().map_or(i64::MIN, |r| r.at))
                .map(|(d, _)| d.clone());
            if let Some(d) = oldest {
                self.by_device.remove(&d);
            }
        }
        let rows = self.by_device.entry(device.to_string()).or_default();
        if !row.id.is_empty() {
            rows.retain(|r| r.id != row.id);
        }
        if rows.len() >= PER_DEVICE {
            rows.pop_front();
        }
        rows.push_back(row);
    }

    /// `device`'s results, newest first.
    pub fn of(&self, device: &str) -> Vec<CommandRow> {
        self.by_device
            .get(device)
            .map(|rows| rows.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// The device page's table; empty when the device has no result.
pub fn table(rows: &[CommandRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        r#"<h2>Last commands</h2><table id="commands"><thead><tr><th>Time (UTC)</th><th>Id</th><th>Metric</th><th>Value</th><th>Status</th><th>Reason</th></tr></thead><tbody>"#,
    );
    for r in rows {
        let _ = write!(
            out,
            r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&r.status),
            time(r.at),
            esc(&r.id),
            esc(&r.metric),
            esc(&r.value.to_string()),
            esc(&r.status),
            esc(&r.reason),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `/api/commands?device=…`: the device's last results, newest first.
pub fn api(state: &AppState, q: &Query) -> Response<Body> {
    let Some(device) = q.get("device") else {
        return full(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "device= is required\n",
        );
    };
    // One device in any case, as everywhere else.
    let device = match gateway_core::DeviceId::new(device) {
        Ok(d) => d.to_string(),
        Err(e) => {
            return full(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                format!("device: {e}\n"),
            )
        }
    };
    let rows: Vec<serde_json::Value> = state
        .live
        .commands_of(&device)
        .into_iter()
        .map(|r| {
            let mut v = json!(r);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("time".into(), json!(time(r.at)));
            }
            v
        })
        .collect();
    full(
        StatusCode::OK,
        "application/json",
        json!({ "device": device, "commands": rows }).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, at: i64) -> CommandRow {
        CommandRow {
            id: id.into(),
            metric: "setpoint".into(),
            value: json!(21.5),
            status: "done".into(),
            reason: String::new(),
            at,
        }
    }

    #[test]
    fn newest_first_bounded_per_device_and_in_devices() {
        let mut r = RecentCommands::default();
        for i in 0..(PER_DEVICE as i64 + 5) {
            r.push("ahu-1", row(&format!("c-{i}"), i));
        }
        let rows = r.of("ahu-1");
        assert_eq!(rows.len(), PER_DEVICE);
        assert_eq!(rows[0].id, format!("c-{}", PER_DEVICE + 4));
        // A result sent again for a repeated id: one row, now the newest.
        r.push("ahu-1", row("c-10", 1000));
        let rows = r.of("ahu-1");
        assert_eq!(rows.len(), PER_DEVICE);
        assert_eq!((rows[0].id.as_str(), rows[0].at), ("c-10", 1000));
        assert_eq!(rows.iter().filter(|x| x.id == "c-10").count(), 1);

        for d in 0..MAX_DEVICES as i64 {
            r.push(&format!("made-up-{d}"), row("x", 2000 + d));
        }
        assert!(r.by_device.len() <= MAX_DEVICES);
        // The device whose newest result is the oldest made room.
        assert!(r.of("ahu-1").is_empty());
        assert_eq!(r.of("made-up-5").len(), 1);
        assert!(r.of("nobody").is_empty());
    }

    #[test]
    fn the_table_escapes_what_a_sender_wrote() {
        let mut x = row("<script>", 0);
        x.status = "refused".into();
        x.reason = "out_of_range".into();
        let html = table(&[x]);
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"<tr class="refused">"#));
        assert!(table(&[]).is_empty());
    }
}
