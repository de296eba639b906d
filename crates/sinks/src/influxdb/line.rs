//! Line protocol, pure: events in, lines out.
//!
//! Escaping follows what InfluxDB 1.x's parser does, checked byte for byte
//! against a real `influxd` (`tests/influxdb_escaping.rs`), not only what
//! its documentation says:
//! - measurements escape commas and spaces; tag keys, tag values and field
//!   keys also escape `=`; string field values escape `"` and `\`;
//! - a backslash is otherwise written as it is: InfluxDB keeps it
//!   literally in names and tags (`x\,device=victim` is written
//!   `x\\,device\=victim` and stored as sent, not with its backslash
//!   doubled, which is what doubling it here did);
//! - a separator preceded by a backslash is taken as escaped, so no name,
//!   tag or field key can end in one, and a field key is read as
//!   backslash-and-next-byte pairs, where a run before an escaped
//!   character loses backslashes or breaks the line (InfluxDB 1.6 refused
//!   `t\\=1` as a last field, and read `t\\=1,hum=9` as one field
//!   `t\=1,hum`). Such a run (at the end of any name, before an escaped
//!   character in a field key) is written as as many FULLWIDTH REVERSE
//!   SOLIDUS (U+FF3C `＼`): a device `node\` is tagged `node＼`, its own
//!   series beside `node`, where trimming it (as Telegraf does) merged the
//!   two and a reading of one overwrote the other's.
//!
//! Line protocol has no escape for a line break, so one in a name or tag
//! becomes an (escaped) space rather than a broken line. Numbers are written as floats (never with the `i` suffix),
//! so a metric that happens to be whole in one reading does not conflict
//! with the float field type InfluxDB fixed at its first write.
//! Non-finite values cannot be written and are left out; a point left
//! without fields is not written at all.
//!
//! Time is written in nanoseconds (`precision=ns`): the event's millisecond
//! times 10^6, plus, for readings, the sample's ordinal among the samples of
//! its device in that millisecond (see [`SampleClock`] and
//! `docs/influxdb.md`). InfluxDB keeps one value per series, field and time,
//! so two readings of one device at one millisecond used to overwrite each
//! other; with the ordinal each is its own point, and since the ordinal
//! depends only on the order of the readings within their journal epoch
//! (see [`SinkEvent::JournalEpoch`]), writing the same readings again (an
//! outbox resend, the journal replayed after a crash) gives the same
//! points, which InfluxDB keeps once.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use gateway_core::units::{MetricInfo, Units};
use gateway_core::{DeviceId, DeviceRegistry, Reading, SourceId};

use gateway_core::event::{AlertEvent, SinkEvent, WindowEvent};

use super::config::{InfluxConfig, Series};
pub use super::sample_clock::SampleClock;
use super::sample_clock::{MAX_TRACKED_DEVICES, NS_PER_MS};
use super::tags::{device_tags, tag_key, GatewayKeys};

/// The query-string precision matching the timestamps written.
pub const PRECISION: &str = "ns";

/// The record marker (the outbox record's topic) of lines written in
/// nanoseconds. Records stored before it existed have an empty topic and
/// millisecond times; [`ms_record_to_ns`] converts them when they are sent.
pub const NS_RECORD: &str = "ns";

/// Converts a record of millisecond lines to nanoseconds: every line ends
/// in its time, so six zeros appended multiply it by 10^6.
pub fn ms_record_to_ns(payload: &[u8], out: &mut Vec<u8>) {
    for line in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"000000\n");
    }
}

/// Which part of a line a name is written in: they escape differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Measurement,
    /// A tag key or value.
    Tag,
    FieldKey,
}

impl Part {
    fn special(self, c: char) -> bool {
        match self {
            Self::Measurement => matches!(c, ',' | ' '),
            Self::Tag | Self::FieldKey => matches!(c, ',' | '=' | ' '),
        }
    }
}

/// Writes `s` as `part`; see the module doc for the rules.
fn escape(out: &mut String, s: &str, part: Part) {
    // Names and tags almost never need escaping, and escaping them char by
    // char was about 40 % of the encoder's instructions (callgrind, bench):
    // copied whole when nothing needs it.
    // Bytes, not chars: every character looked for is ASCII.
    let plain = !s
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r') || part.special(char::from(b)));
    if plain {
        out.push_str(s);
        return;
    }
    // Backslashes are held until what follows them is known.
    let mut run = 0usize;
    for c in s.chars() {
        if c == '\\' {
            run += 1;
            continue;
        }
        let c = if matches!(c, '\n' | '\r') { ' ' } else { c };
        let special = part.special(c);
        let as_read = if part == Part::FieldKey && special {
            LONE_BACKSLASH
        } else {
            '\\'
        };
        out.extend(std::iter::repeat_n(as_read, run));
        run = 0;
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    // At the end a separator follows.
    out.extend(std::iter::repeat_n(LONE_BACKSLASH, run));
}

/// What a backslash InfluxDB would take as escaping a separator is
/// written as (see the module doc).
const LONE_BACKSLASH: char = '\u{FF3C}';

/// A measurement name.
pub fn measurement(out: &mut String, s: &str) {
    escape(out, s, Part::Measurement);
}

/// A tag key or tag value.
pub fn key(out: &mut String, s: &str) {
    escape(out, s, Part::Tag);
}

/// A field key.
pub fn field_key(out: &mut String, s: &str) {
    escape(out, s, Part::FieldKey);
}

/// Whether `s` can be written as a tag key or value: InfluxDB has no
/// empty one.
fn tag_writable(s: &str) -> bool {
    !s.is_empty()
}

/// Whether `s` can be written as a field key.
fn field_key_writable(s: &str) -> bool {
    !s.is_empty()
}

/// A string field value, quotes included. A line break becomes a space:
/// InfluxDB 1.x takes one inside quotes, but a batch is cut at line
/// breaks when a refused write is narrowed down to its bad points, and a
/// text cut in three was three bad points.
pub fn string_value(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(if matches!(c, '\n' | '\r') { ' ' } else { c });
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
    fn new(line: &'a mut String, name: &str, tags: &BTreeMap<Cow<'_, str>, &str>) -> Self {
        let start = line.len();
        measurement(line, name);
        for (k, v) in tags {
            // InfluxDB refuses empty tag values: an absent tag says the same.
            if !tag_writable(v) || !tag_writable(k) {
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
        if !v.is_finite() || !field_key_writable(name) {
            return;
        }
        self.sep();
        field_key(self.line, name);
        self.line.push('=');
        float(self.line, v);
    }

    /// `v` rounded, as an integer field (`12000i`); a value beyond the
    /// range of i64 is left out, as a non-finite float is.
    fn integer(&mut self, name: &str, v: f64) {
        // i64's range as f64: the upper bound, 2^63, is one past it.
        const RANGE: std::ops::Range<f64> = -9.223_372_036_854_776e18..9.223_372_036_854_776e18;
        let rounded = v.round();
        if !RANGE.contains(&rounded) || !field_key_writable(name) {
            return;
        }
        self.sep();
        field_key(self.line, name);
        let _ = write!(self.line, "={}i", rounded as i64);
    }

    fn string(&mut self, name: &str, v: &str) {
        if !field_key_writable(name) {
            return;
        }
        self.sep();
        field_key(self.line, name);
        self.line.push('=');
        string_value(self.line, v);
    }

    /// Ends the line; a point without fields is taken back.
    fn finish(self, time_ns: i64) {
        if self.fields == 0 {
            self.line.truncate(self.start);
            return;
        }
        let _ = writeln!(self.line, " {time_ns}");
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
    samples: SampleClock,
    units: Units,
    /// `unit_tag`: a point per metric, tagged with its unit.
    unit_tag: bool,
    /// `integer_fields`: readings written as integers.
    integers: std::collections::BTreeSet<String>,
    /// Every tag key a point of the measurement can have: a metric of one
    /// of these names is written as `{metric}_value`.
    tag_keys: std::collections::BTreeSet<String>,
    /// Each device's adapter, from its readings, for the windows and
    /// alerts that do not carry it: kept only while some adapter sets
    /// `units` (bounded like the [`SampleClock`]).
    adapters: HashMap<DeviceId, SourceId>,
}

impl Encoder {
    pub fn new(config: &InfluxConfig, registry: DeviceRegistry) -> Self {
        // Fields are on the readings' points only.
        let on_readings = GatewayKeys {
            unit: config.unit_tag,
            alert: false,
        };
        let tag_keys = registry
            .tag_keys()
            .into_iter()
            .map(|k| tag_key(k, on_readings).into_owned())
            .chain(["device", "name", "unit"].map(str::to_string))
            .collect();
        let pick = |s, m: &String| config.writes(s).then(|| m.clone());
        Self {
            readings: pick(Series::Readings, &config.measurement),
            aggregates: pick(Series::Aggregates, &config.aggregates_measurement),
            alerts: pick(Series::Alerts, &config.alerts_measurement),
            health: pick(Series::Health, &config.health_measurement),
            registry,
            samples: SampleClock::default(),
            units: Units::default(),
            unit_tag: config.unit_tag,
            integers: config.integer_fields.iter().cloned().collect(),
            tag_keys,
            adapters: HashMap::new(),
        }
    }

    /// States units with the config's overrides (the alerts' text, the
    /// `unit` tag) rather than the table's alone.
    pub fn with_units(mut self, units: Units) -> Self {
        self.units = units;
        self
    }

    fn unit_of(&self, device: &DeviceId, source: SourceId, metric: &str) -> MetricInfo {
        let source = if source == SourceId::UNKNOWN {
            self.adapters
                .get(device)
                .copied()
                .unwrap_or(SourceId::UNKNOWN)
        } else {
            source
        };
        let device_units = self.registry.get(device).map(|d| &d.units);
        self.units
            .of_device(device.as_str(), device_units, source, metric)
    }

    fn remember_adapters(&mut self, readings: &[Reading]) {
        if !self.units.by_adapter() {
            return;
        }
        for r in readings {
            if r.source() == SourceId::UNKNOWN || self.adapters.get(r.device()) == Some(&r.source())
            {
                continue;
            }
            if self.adapters.len() >= MAX_TRACKED_DEVICES {
                self.adapters.clear();
            }
            self.adapters.insert(r.device().clone(), r.source());
        }
    }

    /// The lines of one event (several for readings of several devices or
    /// times), each ending in `\n`; empty when this sink does not write it.
    pub fn encode(&mut self, event: &SinkEvent, out: &mut String) {
        match event {
            SinkEvent::Readings(r) => self.readings(r, out),
            SinkEvent::Window(w) => self.window(w, out),
            SinkEvent::Alert(a) => self.alert(a, out),
            // Device status is the upstream's and the dashboard's, command
            // results the upstream's.
            SinkEvent::Status(_) | SinkEvent::Command(_) | SinkEvent::ConfigState(_) => {}
            SinkEvent::JournalEpoch(epoch) => self.samples.start_epoch(*epoch),
        }
    }

    /// The keys the gateway writes itself on a point of this encoder.
    fn keys(&self, alert: bool) -> GatewayKeys {
        GatewayKeys {
            unit: self.unit_tag,
            alert,
        }
    }

    /// One point per sample, a field per metric: readings of one sample
    /// arrive next to each other, so neighbours of one device and time
    /// share a line until a metric repeats (see [`SampleClock`]).
    fn readings(&mut self, readings: &[Reading], out: &mut String) {
        self.remember_adapters(readings);
        let Some(name) = &self.readings else { return };
        if self.unit_tag {
            for r in readings {
                let time_ns = self.samples.time_ns(r);
                let info = self.unit_of(r.device(), r.source(), r.metric().as_str());
                let mut tags = device_tags(&self.registry, r.device(), self.keys(false));
                tags.insert("unit".into(), &info.unit);
                let mut p = Point::new(out, name, &tags);
                reading_value(&self.integers, &self.tag_keys, &mut p, r);
                p.finish(time_ns);
            }
            return;
        }
        let keys = self.keys(false);
        let mut rest = readings
            .iter()
            .map(|r| (r, self.samples.time_ns(r)))
            .peekable();
        while let Some((first, time_ns)) = rest.next() {
            let tags = device_tags(&self.registry, first.device(), keys);
            let mut p = Point::new(out, name, &tags);
            reading_value(&self.integers, &self.tag_keys, &mut p, first);
            // The clock gave a repeated metric the next time, so one
            // time never carries a field twice.
            while let Some((r, _)) =
                rest.next_if(|(r, t)| *t == time_ns && r.device() == first.device())
            {
                reading_value(&self.integers, &self.tag_keys, &mut p, r);
            }
            p.finish(time_ns);
        }
    }

    fn window(&self, w: &WindowEvent, out: &mut String) {
        let Some(name) = &self.aggregates else { return };
        if self.unit_tag {
            for (metric, s) in &w.metrics {
                let info = self.unit_of(&w.device, SourceId::UNKNOWN, metric);
                let mut tags = device_tags(&self.registry, &w.device, self.keys(false));
                tags.insert("unit".into(), &info.unit);
                let mut p = Point::new(out, name, &tags);
                window_fields(&mut p, metric, s);
                p.finish(w.start.as_millis().saturating_mul(NS_PER_MS));
            }
            return;
        }
        let tags = device_tags(&self.registry, &w.device, self.keys(false));
        let mut p = Point::new(out, name, &tags);
        for (metric, s) in &w.metrics {
            window_fields(&mut p, metric, s);
        }
        p.finish(w.start.as_millis().saturating_mul(NS_PER_MS));
    }

    /// The gateway's own health: one point of named values, now.
    pub fn health(&self, gateway: &str, values: &[(&str, f64)], time_ms: i64, out: &mut String) {
        let Some(name) = &self.health else { return };
        let tags = BTreeMap::from([("gateway".into(), gateway)]);
        let mut p = Point::new(out, name, &tags);
        for (k, v) in values {
            p.float(k, *v);
        }
        p.finish(time_ms.saturating_mul(NS_PER_MS));
    }

    fn alert(&self, a: &AlertEvent, out: &mut String) {
        let Some(name) = &self.alerts else { return };
        let mut tags = device_tags(&self.registry, &a.device, self.keys(true));
        tags.insert("rule".into(), &a.rule);
        tags.insert("metric".into(), &a.metric);
        tags.insert("kind".into(), &a.kind);
        tags.insert("state".into(), &a.state);
        let info = self.unit_of(&a.device, SourceId::UNKNOWN, &a.metric);
        let unit = if a.kind == "silence" {
            "s"
        } else {
            info.unit.as_str()
        };
        if self.unit_tag {
            tags.insert("unit".into(), unit);
        }
        let mut p = Point::new(out, name, &tags);
        p.float("value", a.value);
        p.float("limit", a.limit);
        if a.kind == "anomaly" {
            // `limit` is the detector's score there, not a bound in the unit.
            p.float("score", a.limit);
        }
        if let Some((lo, hi)) = a.expected {
            p.float("expected_low", lo);
            p.float("expected_high", hi);
        }
        // Grafana annotations show a text field: the numbers in the
        // metric's unit, an anomaly's score apart from its expected range.
        p.string("text", &a.facts().line(&info));
        p.finish(a.at.as_millis().saturating_mul(NS_PER_MS));
    }
}

/// A window's statistics of `metric`: `{metric}_avg`, `_min`, `_max`,
/// `_std`, `_count`.
fn window_fields(p: &mut Point<'_>, metric: &str, s: &gateway_core::event::MetricStats) {
    let mut field = String::with_capacity(metric.len() + 6);
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

/// A reading's field: a float, or an integer for `integer_fields`.
fn reading_value(
    integers: &std::collections::BTreeSet<String>,
    tag_keys: &std::collections::BTreeSet<String>,
    p: &mut Point<'_>,
    r: &Reading,
) {
    let metric = r.metric().as_str();
    let field = reading_field(metric, tag_keys);
    if !integers.is_empty() && integers.contains(metric) {
        p.integer(&field, r.value());
    } else {
        p.float(&field, r.value());
    }
}

/// A reading's field: its metric, or `{metric}_value` when a point of
/// the measurement can have a tag of that key (`device`, `name`, `unit`,
/// any device's registry tag), whichever device the reading is of. In a
/// measurement where a key is both a field and a tag, InfluxQL reads
/// `WHERE room = …` as the field: one stranger's `room` metric blanked
/// every panel that filters by room, for the retention of the shard.
///
/// A metric named as a renamed one's field (`name_value`, beside the
/// metric `name`) is renamed the same way (`name_value_value`), so no two
/// metrics share a field: in one point one of the two values was lost,
/// across points one series held both metrics. Every other name is kept.
fn reading_field<'m>(
    metric: &'m str,
    tag_keys: &std::collections::BTreeSet<String>,
) -> Cow<'m, str> {
    // `time` is InfluxDB's own column: a field of that name is dropped
    // from its point, or the point refused when it is the only one.
    let taken = |m: &str| tag_keys.contains(m) || m == "time";
    let mut stem = metric;
    loop {
        if taken(stem) {
            return format!("{metric}_value").into();
        }
        match stem.strip_suffix("_value") {
            Some(shorter) => stem = shorter,
            None => return metric.into(),
        }
    }
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
