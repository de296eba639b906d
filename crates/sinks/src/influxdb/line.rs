//! Line protocol, pure: events in, lines out.
//!
//! Escaping follows InfluxDB's rules exactly: measurements escape commas
//! and spaces; tag keys, tag values and field keys also escape `=`; string
//! field values escape `"` and `\`. Line protocol has no escape for a line
//! break, so one in a name or tag becomes an (escaped) space rather than a
//! broken line, and a backslash that ends a name or precedes an escaped
//! character is doubled so it cannot swallow a separator. Numbers are written as floats (never with the `i` suffix),
//! so a metric that happens to be whole in one reading does not conflict
//! with the float field type InfluxDB fixed at its first write.
//! Non-finite values cannot be written and are left out; a point left
//! without fields is not written at all. Timestamps are the events' own
//! times in milliseconds (`precision=ms`), so a batch written twice is
//! the same points twice, which InfluxDB keeps once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gateway_core::{DeviceId, DeviceRegistry, Reading};

use crate::event::{AlertEvent, SinkEvent, WindowEvent};

use super::config::{InfluxConfig, Series};

/// The query-string precision matching the timestamps written.
pub const PRECISION: &str = "ms";

fn escape(out: &mut String, s: &str, specials: &[char]) {
    // Names and tags almost never need escaping, and escaping them char by
    // char was about 40 % of the encoder's instructions (callgrind, bench):
    // copied whole when nothing needs it.
    let plain = !s
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r') || specials.contains(&char::from(b)));
    if plain {
        out.push_str(s);
        return;
    }
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' => out.push_str("\\ "),
            // InfluxDB's scanner takes `\` plus the next byte as a pair: a
            // backslash last or before an escaped character would swallow
            // the separator after it, so it is doubled there.
            '\\' if chars
                .peek()
                .is_none_or(|n| specials.contains(n) || *n == '\n') =>
            {
                out.push_str("\\\\");
            }
            c if specials.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// A measurement name.
pub fn measurement(out: &mut String, s: &str) {
    escape(out, s, &[',', ' ']);
}

/// A tag key, tag value or field key.
pub fn key(out: &mut String, s: &str) {
    escape(out, s, &[',', '=', ' ']);
}

/// A string field value, quotes included.
pub fn string_value(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A field value of a number, always a float to InfluxDB.
fn float(out: &mut String, v: f64) {
    // `{}` prints the shortest text that reads back as the same f64, and
    // a whole number without a point, which line protocol reads as float.
    let _ = write!(out, "{v}");
}

/// Builds one point: measurement, sorted tags, fields, time.
struct Point<'a> {
    line: &'a mut String,
    fields: usize,
    start: usize,
}

impl<'a> Point<'a> {
    fn new(line: &'a mut String, name: &str, tags: &BTreeMap<&str, &str>) -> Self {
        let start = line.len();
        measurement(line, name);
        for (k, v) in tags {
            // InfluxDB refuses empty tag values: an absent tag says the same.
            if v.is_empty() || k.is_empty() {
                continue;
            }
            line.push(',');
            key(line, k);
            line.push('=');
            key(line, v);
        }
        Self {
            line,
            fields: 0,
            start,
        }
    }

    fn sep(&mut self) {
        self.line.push(if self.fields == 0 { ' ' } else { ',' });
        self.fields += 1;
    }

    fn float(&mut self, name: &str, v: f64) {
        if !v.is_finite() || name.is_empty() {
            return;
        }
        self.sep();
        key(self.line, name);
        self.line.push('=');
        float(self.line, v);
    }

    fn string(&mut self, name: &str, v: &str) {
        self.sep();
        key(self.line, name);
        self.line.push('=');
        string_value(self.line, v);
    }

    /// Ends the line; a point without fields is taken back.
    fn finish(self, time_ms: i64) {
        if self.fields == 0 {
            self.line.truncate(self.start);
            return;
        }
        let _ = writeln!(self.line, " {time_ms}");
    }
}

/// Turns events into lines, with each device's name and tags.
#[derive(Debug, Clone)]
pub struct Encoder {
    readings: Option<String>,
    aggregates: Option<String>,
    alerts: Option<String>,
    health: Option<String>,
    registry: DeviceRegistry,
}

impl Encoder {
    pub fn new(config: &InfluxConfig, registry: DeviceRegistry) -> Self {
        let pick = |s, m: &String| config.writes(s).then(|| m.clone());
        Self {
            readings: pick(Series::Readings, &config.measurement),
            aggregates: pick(Series::Aggregates, &config.aggregates_measurement),
            alerts: pick(Series::Alerts, &config.alerts_measurement),
            health: pick(Series::Health, &config.health_measurement),
            registry,
        }
    }

    fn device_tags<'a>(&'a self, device: &'a DeviceId) -> BTreeMap<&'a str, &'a str> {
        let mut tags = BTreeMap::new();
        if let Some(info) = self.registry.get(device) {
            for (k, v) in &info.tags {
                tags.insert(k.as_str(), v.as_str());
            }
        }
        // The gateway's own tags win over a registry tag of the same key.
        tags.insert("device", device.as_str());
        tags.insert("name", self.registry.name_of(device));
        tags
    }

    /// The lines of one event (several for readings of several devices or
    /// times), each ending in `\n`; empty when this sink does not write it.
    pub fn encode(&self, event: &SinkEvent, out: &mut String) {
        match event {
            SinkEvent::Readings(r) => self.readings(r, out),
            SinkEvent::Window(w) => self.window(w, out),
            SinkEvent::Alert(a) => self.alert(a, out),
            // Device status is the upstream's and the dashboard's.
            SinkEvent::Status(_) => {}
        }
    }

    /// One point per device and time, a field per metric: readings of one
    /// sample arrive next to each other, so neighbours are merged.
    fn readings(&self, readings: &[Reading], out: &mut String) {
        let Some(name) = &self.readings else { return };
        let mut i = 0;
        while i < readings.len() {
            let first = &readings[i];
            let mut j = i + 1;
            while j < readings.len()
                && readings[j].device() == first.device()
                && readings[j].time() == first.time()
            {
                j += 1;
            }
            let tags = self.device_tags(first.device());
            let mut p = Point::new(out, name, &tags);
            for r in &readings[i..j] {
                p.float(r.metric().as_str(), r.value());
            }
            p.finish(first.time().as_millis());
            i = j;
        }
    }

    fn window(&self, w: &WindowEvent, out: &mut String) {
        let Some(name) = &self.aggregates else { return };
        let tags = self.device_tags(&w.device);
        let mut p = Point::new(out, name, &tags);
        let mut field = String::new();
        for (metric, s) in &w.metrics {
            for (suffix, v) in [
                ("avg", s.avg),
                ("min", s.min),
                ("max", s.max),
                ("std", s.std),
                ("count", s.count as f64),
            ] {
                field.clear();
                let _ = write!(field, "{metric}_{suffix}");
                p.float(&field, v);
            }
        }
        p.finish(w.start.as_millis());
    }

    /// The gateway's own health: one point of named values, now.
    pub fn health(&self, gateway: &str, values: &[(&str, f64)], time_ms: i64, out: &mut String) {
        let Some(name) = &self.health else { return };
        let tags = BTreeMap::from([("gateway", gateway)]);
        let mut p = Point::new(out, name, &tags);
        for (k, v) in values {
            p.float(k, *v);
        }
        p.finish(time_ms);
    }

    fn alert(&self, a: &AlertEvent, out: &mut String) {
        let Some(name) = &self.alerts else { return };
        let mut tags = self.device_tags(&a.device);
        tags.insert("rule", &a.rule);
        tags.insert("metric", &a.metric);
        tags.insert("kind", &a.kind);
        tags.insert("state", &a.state);
        let mut p = Point::new(out, name, &tags);
        p.float("value", a.value);
        p.float("limit", a.limit);
        // Grafana annotations show a text field.
        let what = if a.metric.is_empty() {
            String::new()
        } else {
            format!(" {}", a.metric)
        };
        p.string(
            "text",
            &format!(
                "{} {} {}{}: {} (limit {})",
                a.rule, a.state, a.kind, what, a.value, a.limit
            ),
        );
        p.finish(a.at.as_millis());
    }
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
