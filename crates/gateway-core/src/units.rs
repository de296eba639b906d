//! What a metric's numbers mean: its quantity, its unit and how many
//! decimals a person needs, from one table of the names sensors use,
//! overridden by `[units]` (per metric), `[[adapter]] units` (every device
//! an adapter hears), the unit a device states itself (a BACnet object's
//! `units`, see [`Sources::report_units`]) and `[[device]] units` (per
//! device), the most specific winning; a person's `[[device]] units`
//! over what the device says.
//!
//! Decided by name, never by the value: a battery at 3.7 is volts on one
//! node and a nearly empty percentage on another, and only the config can
//! tell them apart (`battery_v` and `voltage` are volts, `battery` is a
//! percentage unless `units = { battery = "V" }` says otherwise).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::component::Sources;
use crate::model::SourceId;

/// How a metric is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    /// What is measured, for people (`temperature`, `CO₂`, `battery`).
    pub quantity: &'static str,
    /// The unit after the number; empty when not known.
    pub unit: String,
    /// Decimals to show; `None` when not known (then by magnitude).
    pub precision: Option<u8>,
    /// Where it sorts when one metric must stand for a device (lower
    /// first): air quality and temperature before the device's own
    /// battery and radio.
    pub rank: u8,
}

impl MetricInfo {
    /// `value` with the metric's precision and unit: `3.72 V`, `4.1 °C`.
    pub fn format(&self, value: f64) -> String {
        let number = self.number(value);
        if self.unit.is_empty() {
            number
        } else {
            format!("{number} {}", self.unit)
        }
    }

    /// `value` with the metric's precision, without the unit.
    pub fn number(&self, value: f64) -> String {
        if let Some(text) = huge(value) {
            return text;
        }
        match self.precision {
            Some(p) => format!("{value:.*}", usize::from(p)),
            None => format_by_magnitude(value),
        }
    }
}

/// An alert's value and what it was measured against, for people, in the
/// metric's unit: a threshold's bound, a rate's change per span, a
/// silence's wait, an anomaly's expected range with its score apart (a
/// score counts standard deviations, it is not in ppm). `kind` and the
/// numbers are an alert's (`limit` is an anomaly's score).
pub fn alert_texts(
    info: &MetricInfo,
    kind: &str,
    value: f64,
    limit: f64,
    expected: Option<(f64, f64)>,
) -> (String, String) {
    alert_texts_over(info, kind, value, limit, expected, None)
}

/// [`alert_texts`] with a rate rule's span, where the caller knows it:
/// `6.0 °C in 10 min` says what `6.0 °C change` does not.
pub fn alert_texts_over(
    info: &MetricInfo,
    kind: &str,
    value: f64,
    limit: f64,
    expected: Option<(f64, f64)>,
    span: Option<std::time::Duration>,
) -> (String, String) {
    if let ("rate", Some(span)) = (kind, span) {
        let span = span_text(span);
        return (
            format!("{} in {span}", info.format(value)),
            format!("{} in {span}", info.format(limit)),
        );
    }
    match kind {
        "silence" => (
            format!("{} s silent", format_by_magnitude(value)),
            format!("after {} s", format_by_magnitude(limit)),
        ),
        "anomaly" => (
            info.format(value),
            match expected {
                Some((lo, hi)) => format!(
                    "expected {}–{} · score {limit:.1}",
                    info.number(lo),
                    info.format(hi),
                ),
                None => format!("score {limit:.1}"),
            },
        ),
        "rate" => (
            format!("{} change", info.format(value)),
            format!("{} per span", info.format(limit)),
        ),
        _ => (info.format(value), info.format(limit)),
    }
}

/// A rule's span as people say it: `10 min`, `1 h`, `90 s`, `1 h 30 min`.
pub fn span_text(span: std::time::Duration) -> String {
    let s = span.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec} s"));
    }
    parts.join(" ")
}

/// What one alert transition says, as every output receives it.
#[derive(Debug, Clone, Copy)]
pub struct AlertFacts<'a> {
    pub rule: &'a str,
    /// `raised`, `cleared` or `suppressed`.
    pub state: &'a str,
    pub kind: &'a str,
    pub metric: &'a str,
    pub value: f64,
    pub limit: f64,
    pub expected: Option<(f64, f64)>,
}

impl AlertFacts<'_> {
    /// [`alert_texts`] of this alert.
    pub fn texts(&self, info: &MetricInfo) -> (String, String) {
        alert_texts(info, self.kind, self.value, self.limit, self.expected)
    }

    /// One line: `co2-anomaly raised anomaly: co2 894 ppm (expected
    /// 600–700 ppm · score 5.2)`.
    pub fn line(&self, info: &MetricInfo) -> String {
        let (value, against) = self.texts(info);
        let against = if self.kind == "threshold" {
            format!("limit {against}")
        } else {
            against
        };
        let metric = if self.metric.is_empty() || self.kind == "silence" {
            String::new()
        } else {
            format!("{} ", self.metric)
        };
        format!(
            "{} {} {}: {metric}{value} ({against})",
            self.rule, self.state, self.kind
        )
    }
}

/// Magnitudes from which a number is written with an exponent: where the
/// dashboard's live script (`toFixed`) switches to one too, so a value
/// the page updates reads as the server wrote it.
const EXPONENT_FROM: f64 = 1e21;

/// `v` as `1.5e+300` (as JavaScript writes it) when its magnitude is at
/// least [`EXPONENT_FROM`]: a sensor's garbage `1e308` was written out in
/// all its 309 digits, widening the overview row, the alert text upstream
/// and Home Assistant's to a third of a kilobyte. `None` below it.
fn huge(v: f64) -> Option<String> {
    if !v.is_finite() || v.abs() < EXPONENT_FROM {
        return None;
    }
    let text = format!("{v:e}");
    Some(match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => text,
    })
}

/// Decimals for a number of unknown meaning: enough to see a change.
pub fn format_by_magnitude(v: f64) -> String {
    if let Some(text) = huge(v) {
        return text;
    }
    let a = v.abs();
    if a >= 100.0 || (a.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// How a name is matched against a table row.
enum Match {
    Exact(&'static [&'static str]),
    Contains(&'static str),
    /// The name is one of these, or ends in `_` and one of them: a unit
    /// written at the end of a name (`daily_kwh`, `load_kw`, `flow_m3`).
    Suffix(&'static [&'static str]),
}

impl Match {
    fn matches(&self, metric: &str) -> bool {
        match self {
            Self::Exact(names) => names.contains(&metric),
            Self::Contains(part) => metric.contains(part),
            Self::Suffix(units) => units.iter().any(|u| {
                metric
                    .strip_suffix(u)
                    .is_some_and(|head| head.is_empty() || head.ends_with('_'))
            }),
        }
    }
}

struct Row {
    matches: Match,
    quantity: &'static str,
    unit: &'static str,
    precision: u8,
    rank: u8,
}

const fn row(
    matches: Match,
    quantity: &'static str,
    unit: &'static str,
    precision: u8,
    rank: u8,
) -> Row {
    Row {
        matches,
        quantity,
        unit,
        precision,
        rank,
    }
}

/// Rank of a metric the table does not know: after what it does, before
/// the device's own battery and radio.
const RANK_UNKNOWN: u8 = 50;
/// The device's upkeep (battery, radio): last.
const RANK_UPKEEP: u8 = 90;

/// First match wins: the specific names before the substrings that would
/// also catch them (`battery_v` before `batt`).
const TABLE: &[Row] = &[
    row(
        Match::Exact(&[
            "battery_v",
            "battery_voltage",
            "batt_v",
            "vbat",
            "bat_v",
            "vbatt",
        ]),
        "battery",
        "V",
        2,
        RANK_UPKEEP,
    ),
    row(
        Match::Exact(&["battery_mv", "vbat_mv", "batt_mv"]),
        "battery",
        "mV",
        0,
        RANK_UPKEEP,
    ),
    // A unit at the end of a name says more than a quantity's word inside
    // it (`voltage_mv` is millivolts, `power_kw` kilowatts): before them.
    row(Match::Contains("kwh"), "energy", "kWh", 2, 36),
    row(Match::Suffix(&["mwh"]), "energy", "MWh", 3, 36),
    row(Match::Suffix(&["wh"]), "energy", "Wh", 0, 36),
    row(Match::Suffix(&["kvarh"]), "reactive energy", "kvarh", 2, 36),
    row(Match::Suffix(&["kva"]), "apparent power", "kVA", 2, 37),
    row(Match::Suffix(&["kw"]), "power", "kW", 2, 37),
    row(Match::Suffix(&["w", "watts"]), "power", "W", 1, 37),
    row(Match::Suffix(&["mv"]), "voltage", "mV", 0, 40),
    row(Match::Suffix(&["ma"]), "current", "mA", 0, 38),
    row(Match::Suffix(&["hz"]), "frequency", "Hz", 2, 39),
    row(Match::Suffix(&["litres", "liters"]), "volume", "L", 1, 39),
    row(Match::Suffix(&["kpa"]), "pressure", "kPa", 2, 30),
    row(
        Match::Suffix(&["degf", "fahrenheit"]),
        "temperature",
        "°F",
        1,
        10,
    ),
    row(
        Match::Exact(&["temp_f", "temperature_f"]),
        "temperature",
        "°F",
        1,
        10,
    ),
    row(Match::Contains("volt"), "voltage", "V", 2, 40),
    row(Match::Contains("batt"), "battery", "%", 0, RANK_UPKEEP),
    row(Match::Contains("co2"), "CO₂", "ppm", 0, 0),
    // Milesight v2 firmware set to µg/m³ sends this channel instead.
    row(Match::Exact(&["tvoc_ug_m3"]), "TVOC", "µg/m³", 0, 5),
    row(Match::Contains("tvoc"), "TVOC", "ppb", 0, 5),
    // Formaldehyde and ozone (Milesight AM319 variants).
    row(Match::Contains("hcho"), "formaldehyde", "mg/m³", 2, 7),
    row(Match::Exact(&["o3"]), "ozone", "ppm", 2, 7),
    row(
        Match::Exact(&["pm1", "pm1_0", "pm2_5", "pm25", "pm10"]),
        "particulates",
        "µg/m³",
        0,
        6,
    ),
    row(Match::Contains("temp"), "temperature", "°C", 1, 10),
    row(Match::Contains("humid"), "humidity", "%", 1, 20),
    row(Match::Exact(&["rh"]), "humidity", "%", 1, 20),
    row(Match::Contains("pressure"), "pressure", "hPa", 1, 30),
    row(Match::Contains("illuminance"), "illuminance", "lx", 0, 35),
    row(Match::Contains("lux"), "illuminance", "lx", 0, 35),
    // Cayenne LPP's name for its illuminance type (`luminosity_<channel>`).
    row(Match::Contains("luminosity"), "illuminance", "lx", 0, 35),
    // Elsys ERS Sound peak and average level.
    row(Match::Contains("sound"), "sound level", "dB", 0, 36),
    row(Match::Contains("energy"), "energy", "kWh", 2, 36),
    row(Match::Contains("power"), "power", "W", 1, 37),
    row(Match::Contains("current"), "current", "A", 2, 38),
    row(Match::Contains("rssi"), "signal", "dBm", 0, RANK_UPKEEP + 1),
    row(
        Match::Contains("snr"),
        "signal-to-noise",
        "dB",
        1,
        RANK_UPKEEP + 2,
    ),
    // A Semtech forwarder's share of acknowledged upstream datagrams.
    row(
        Match::Exact(&["ackr"]),
        "acknowledged",
        "%",
        1,
        RANK_UPKEEP + 3,
    ),
    // Units the quantity words above already imply: only for a name
    // without one (`co2_ppm` stays CO₂, `battery_pct` a battery).
    row(
        Match::Suffix(&["degc", "celsius"]),
        "temperature",
        "°C",
        1,
        10,
    ),
    // After `tvoc_ug_m3` and the like, which are concentrations.
    row(Match::Suffix(&["m3"]), "volume", "m³", 3, 39),
    row(Match::Suffix(&["hpa", "mbar"]), "pressure", "hPa", 1, 30),
    row(Match::Suffix(&["ppm"]), "concentration", "ppm", 0, 5),
    row(Match::Suffix(&["ppb"]), "concentration", "ppb", 0, 5),
    row(Match::Suffix(&["lux", "lx"]), "illuminance", "lx", 0, 35),
    row(Match::Suffix(&["dbm"]), "signal", "dBm", 0, RANK_UPKEEP + 1),
    row(Match::Suffix(&["pct", "percent"]), "", "%", 0, RANK_UNKNOWN),
];

// A row is remembered by its index as a `u8`.
const _: () = assert!(TABLE.len() <= u8::MAX as usize);

/// Decimals for a unit set in the config, where the table's row (if any)
/// was for another unit.
fn precision_of_unit(unit: &str) -> Option<u8> {
    Some(match unit {
        "V" | "A" | "kWh" | "kW" | "kVA" | "kvarh" | "kPa" | "bar" | "Hz" => 2,
        "MWh" | "m³" => 3,
        "°C" | "°F" | "K" | "hPa" | "W" | "dB" | "m/s" | "L" => 1,
        "mg/m³" => 2,
        "%" | "ppm" | "ppb" | "mV" | "mA" | "lx" | "dBm" | "Pa" | "µg/m³" | "s" | "Wh" => 0,
        _ => return None,
    })
}

/// The quantity a unit can only be of (not `%` or `ppm`, which many are).
fn quantity_of_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "°C" | "°F" | "K" => "temperature",
        "Pa" | "hPa" | "kPa" | "bar" | "mbar" => "pressure",
        "lx" => "illuminance",
        "Wh" | "kWh" | "MWh" => "energy",
        "W" | "kW" | "MW" => "power",
        "A" | "mA" => "current",
        "V" | "mV" | "kV" => "voltage",
        _ => return None,
    })
}

/// Names whose row is remembered, per thread: beyond it the memory
/// starts over, so names sent by the network cannot grow it without bound.
const ROWS_REMEMBERED: usize = 1024;

/// The table's row (its index) for each name asked about lately, emptied
/// when the gateway asks its caches to let go after a burst
/// ([`crate::cache_release`]): a name kept from the burst's end pins the
/// heap's free memory around it.
#[derive(Default)]
struct Remembered {
    /// Seeded like the other maps of names from the network (SipHash was
    /// half of a look-up here).
    rows: HashMap<Box<str>, Option<u8>, crate::hash::SeededState>,
    seen: crate::cache_release::Seen,
}

thread_local! {
    static ROW_OF: RefCell<Remembered> = RefCell::new(Remembered::default());
}

/// The table's first row matching `metric`, by its lower-cased name.
fn scan(metric: &str) -> Option<u8> {
    let m = metric.to_ascii_lowercase();
    let i = TABLE.iter().position(|r| r.matches.matches(&m))?;
    u8::try_from(i).ok()
}

/// [`scan`], remembered: every output asks about each metric of each
/// window, and lower-casing the name and scanning the table cost about
/// 3 900 instructions a time (issue 69), a lookup here about a tenth.
fn row_of(metric: &str) -> Option<&'static Row> {
    let i = ROW_OF
        .try_with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.seen.asked() {
                memo.rows = HashMap::default();
            }
            if let Some(&i) = memo.rows.get(metric) {
                return i;
            }
            let i = scan(metric);
            if memo.rows.len() >= ROWS_REMEMBERED {
                memo.rows.clear();
            }
            memo.rows.insert(metric.into(), i);
            i
        })
        // A thread being torn down: no memory, the scan still answers.
        .unwrap_or_else(|_| scan(metric))?;
    TABLE.get(usize::from(i))
}

/// What the table alone says about `metric`.
pub fn known(metric: &str) -> MetricInfo {
    match row_of(metric) {
        Some(r) => MetricInfo {
            quantity: r.quantity,
            unit: r.unit.to_string(),
            precision: Some(r.precision),
            rank: r.rank,
        },
        None => MetricInfo {
            quantity: "",
            unit: String::new(),
            precision: None,
            rank: RANK_UNKNOWN,
        },
    }
}

/// The table with the config's overrides. Cheap to clone into the pages.
#[derive(Debug, Clone, Default)]
pub struct Units {
    /// `[units]`: metric → unit, for every device.
    global: BTreeMap<String, String>,
    /// `[[adapter]] units`, by adapter name.
    adapters: BTreeMap<String, BTreeMap<String, String>>,
    /// The table a reading's [`SourceId`] indexes, to find its adapter.
    sources: Sources,
}

impl Units {
    pub fn new(global: BTreeMap<String, String>) -> Self {
        Self {
            global,
            ..Self::default()
        }
    }

    /// With each adapter's `units`, found through `sources` (the table the
    /// readings' [`SourceId`]s index).
    pub fn with_adapters(
        mut self,
        adapters: BTreeMap<String, BTreeMap<String, String>>,
        sources: Sources,
    ) -> Self {
        self.adapters = adapters;
        self.sources = sources;
        self
    }

    /// The table a reading's [`SourceId`] indexes.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Some adapter overrides a unit: only then is a device's adapter
    /// worth remembering where a window or an alert does not carry it.
    pub fn by_adapter(&self) -> bool {
        !self.adapters.is_empty()
    }

    /// `metric` as `device_units` (its `[[device]] units`), then its
    /// adapter's `units` (the adapter of `source`), then `[units]`, then
    /// the table say.
    pub fn of(
        &self,
        device_units: Option<&BTreeMap<String, String>>,
        source: SourceId,
        metric: &str,
    ) -> MetricInfo {
        self.resolve(None, device_units, source, metric)
    }

    /// [`Self::of`] for the device `device`, with the unit it states
    /// itself (below its `[[device]] units`, above the rest): what every
    /// output asks about a device's metric.
    pub fn of_device(
        &self,
        device: &str,
        device_units: Option<&BTreeMap<String, String>>,
        source: SourceId,
        metric: &str,
    ) -> MetricInfo {
        self.resolve(Some(device), device_units, source, metric)
    }

    /// [`Self::of_device`]'s unit alone, without a copy where it is the
    /// table's or the config's: asked for each metric of each window.
    pub fn unit_of_device<'a>(
        &'a self,
        device: &str,
        device_units: Option<&'a BTreeMap<String, String>>,
        source: SourceId,
        metric: &str,
    ) -> Cow<'a, str> {
        // The order `resolve` sets a unit in; the table's unit when none
        // is set (a set one equal to it reads the same).
        if let Some(unit) = device_units.and_then(|u| u.get(metric)) {
            return Cow::Borrowed(unit);
        }
        if let Some(unit) = self.sources.reported_unit(device, metric) {
            return Cow::Owned(unit);
        }
        if let Some(unit) = self.adapter_unit(source, metric) {
            return Cow::Owned(unit);
        }
        if let Some(unit) = self.global.get(metric) {
            return Cow::Borrowed(unit);
        }
        Cow::Borrowed(row_of(metric).map_or("", |r| r.unit))
    }

    fn resolve(
        &self,
        device: Option<&str>,
        device_units: Option<&BTreeMap<String, String>>,
        source: SourceId,
        metric: &str,
    ) -> MetricInfo {
        let mut info = known(metric);
        let stated = device.and_then(|d| self.sources.reported_unit(d, metric));
        let set = device_units
            .and_then(|u| u.get(metric))
            .cloned()
            .or_else(|| stated.clone())
            .or_else(|| self.adapter_unit(source, metric))
            .or_else(|| self.global.get(metric).cloned());
        if let Some(unit) = set {
            if unit != info.unit {
                info.precision = precision_of_unit(&unit);
                info.unit = unit;
            }
        }
        // A device that states °C for `supply_air` says what it measures
        // too, where the name does not (Home Assistant's device class).
        if info.quantity.is_empty() && stated.as_deref() == Some(info.unit.as_str()) {
            info.quantity = quantity_of_unit(&info.unit).unwrap_or("");
        }
        info
    }

    fn adapter_unit(&self, source: SourceId, metric: &str) -> Option<String> {
        if self.adapters.is_empty() || source == SourceId::UNKNOWN {
            return None;
        }
        let name = self.sources.get(source)?.name;
        self.adapters.get(&name)?.get(metric).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge value is written with an exponent, as the live script
    /// writes it; every digit of 1e308 made a 309-character number.
    #[test]
    fn huge_values_are_written_with_an_exponent() {
        let temperature = MetricInfo {
            quantity: "temperature",
            unit: "°C".into(),
            precision: Some(1),
            rank: 0,
        };
        assert_eq!(temperature.number(1e308), "1e+308");
        assert_eq!(temperature.format(-2.5e21), "-2.5e+21 °C");
        assert_eq!(temperature.number(21.46), "21.5");
        assert_eq!(temperature.number(1e20), "100000000000000000000.0");
        assert_eq!(
            format_by_magnitude(1.2345678901234568e29),
            "1.2345678901234568e+29"
        );
        assert_eq!(format_by_magnitude(123_456.0), "123456");
        let long = MetricInfo {
            precision: None,
            ..temperature
        };
        assert_eq!(long.number(f64::MAX).len(), "1.7976931348623157e+308".len());
    }

    #[test]
    fn the_table_decides_by_name() {
        for (metric, unit, shown) in [
            ("temperature", "°C", "4.0 °C"),
            ("humidity", "%", "4.0 %"),
            ("co2", "ppm", "4 ppm"),
            ("battery", "%", "4 %"),
            ("battery_v", "V", "4.00 V"),
            ("voltage", "V", "4.00 V"),
            ("pressure", "hPa", "4.0 hPa"),
            ("rssi", "dBm", "4 dBm"),
            ("gas", "", "4"),
            // What the LoRaWAN vendor codecs emit.
            ("tvoc", "ppb", "4 ppb"),
            ("tvoc_ug_m3", "µg/m³", "4 µg/m³"),
            ("hcho", "mg/m³", "4.00 mg/m³"),
            ("o3", "ppm", "4.00 ppm"),
            ("pm2_5", "µg/m³", "4 µg/m³"),
            ("luminosity_5", "lx", "4 lx"),
            ("illuminance", "lx", "4 lx"),
            ("ext_temperature", "°C", "4.0 °C"),
            ("external_temperature_2", "°C", "4.0 °C"),
            ("relative_humidity_8", "%", "4.0 %"),
            ("barometric_pressure_10", "hPa", "4.0 hPa"),
            ("adc_voltage", "V", "4.00 V"),
            ("sound_avg", "dB", "4 dB"),
            // An energy meter's counters and a unit at the end of a name.
            ("total_kwh", "kWh", "4.00 kWh"),
            ("kwh", "kWh", "4.00 kWh"),
            ("kwh_today", "kWh", "4.00 kWh"),
            ("import_wh", "Wh", "4 Wh"),
            ("load_kw", "kW", "4.00 kW"),
            ("power_w", "W", "4.0 W"),
            ("power", "W", "4.0 W"),
            ("voltage_mv", "mV", "4 mV"),
            ("grid_hz", "Hz", "4.00 Hz"),
            ("water_m3", "m³", "4.000 m³"),
            ("temp_f", "°F", "4.0 °F"),
            ("co_ppm", "ppm", "4 ppm"),
            ("co2_ppm", "ppm", "4 ppm"),
            ("battery_pct", "%", "4 %"),
            ("current_ma", "mA", "4 mA"),
            ("pressure_kpa", "kPa", "4.00 kPa"),
            // Not units: a name merely ending in those letters.
            ("show", "", "4"),
            ("flow", "", "4"),
        ] {
            let info = known(metric);
            assert_eq!(info.unit, unit, "{metric}");
            assert_eq!(info.format(4.0), shown, "{metric}");
        }
        assert!(known("co2").rank < known("temperature").rank);
        assert!(known("temperature").rank < known("battery").rank);
        assert!(known("gas").rank < known("rssi").rank);
        assert_eq!(known("co2_ppm").quantity, "CO₂");
        assert_eq!(known("battery_pct").quantity, "battery");
        assert_eq!(known("daily_kwh").quantity, "energy");
    }

    #[test]
    fn a_remembered_row_is_the_one_the_scan_finds_even_past_the_bound() {
        let names = [
            "temperature",
            "Temperature",
            "CO2_PPM",
            "battery_v",
            "gas",
            "x",
        ];
        for _ in 0..2 {
            for name in names {
                assert_eq!(
                    row_of(name).map(|r| r.unit),
                    scan(name).map(|i| TABLE[usize::from(i)].unit),
                    "{name}"
                );
            }
        }
        assert_eq!(known("Temperature").unit, "°C");
        // Names sent by the network: the memory starts over, the answers
        // stay right.
        for i in 0..(2 * ROWS_REMEMBERED + 3) {
            let name = format!("zone{i}_temp");
            assert_eq!(known(&name).unit, "°C");
            assert!(ROW_OF.with(|r| r.borrow().rows.len()) <= ROWS_REMEMBERED);
        }
        assert_eq!(known("battery_v").unit, "V");
        assert_eq!(known("gas").unit, "");
    }

    #[test]
    fn the_memory_let_go_after_a_burst_gives_the_same_answers() {
        let names = ["temperature", "CO2_PPM", "battery_v", "gas", "zone7_temp"];
        let before: Vec<_> = names.iter().map(|n| known(n)).collect();
        for i in 0..20 {
            known(&format!("burst{i}_temp"));
        }
        assert!(ROW_OF.with(|r| r.borrow().rows.len()) >= names.len() + 20);
        crate::cache_release::ask();
        // Emptied at the next look, then filled again by the same answers.
        let after: Vec<_> = names.iter().map(|n| known(n)).collect();
        assert_eq!(ROW_OF.with(|r| r.borrow().rows.len()), names.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (b.quantity, &b.unit, b.precision, b.rank),
                (a.quantity, &a.unit, a.precision, a.rank)
            );
        }
    }

    #[test]
    fn the_config_overrides_per_metric_and_per_device() {
        let none = SourceId::UNKNOWN;
        let units = Units::new(BTreeMap::from([("battery".into(), "V".into())]));
        assert_eq!(units.of(None, none, "battery").format(3.712), "3.71 V");
        let device = BTreeMap::from([("battery".to_string(), "%".to_string())]);
        assert_eq!(
            units.of(Some(&device), none, "battery").format(87.0),
            "87 %"
        );
        assert_eq!(units.of(Some(&device), none, "temperature").unit, "°C");
        // A unit the table has no precision for: by magnitude.
        let odd = BTreeMap::from([("gas".to_string(), "kΩ".to_string())]);
        assert_eq!(units.of(Some(&odd), none, "gas").format(12.34), "12.3 kΩ");
    }

    #[test]
    fn a_rate_says_its_span() {
        let t = known("temperature");
        let span = Some(std::time::Duration::from_secs(600));
        assert_eq!(
            alert_texts_over(&t, "rate", 6.0, 6.0, None, span),
            (
                "6.0 °C in 10 min".to_string(),
                "6.0 °C in 10 min".to_string()
            )
        );
        assert_eq!(
            span_text(std::time::Duration::from_secs(5400)),
            "1 h 30 min"
        );
        assert_eq!(span_text(std::time::Duration::from_secs(90)), "1 min 30 s");
        assert_eq!(span_text(std::time::Duration::from_secs(3600)), "1 h");
    }

    #[test]
    fn an_anomaly_is_told_in_its_unit_with_its_score_apart() {
        let co2 = known("co2");
        let (value, against) = alert_texts(&co2, "anomaly", 894.0, 5.23, Some((580.4, 702.6)));
        assert_eq!(value, "894 ppm");
        assert_eq!(against, "expected 580–703 ppm · score 5.2");
        let facts = AlertFacts {
            rule: "co2-anomaly",
            state: "raised",
            kind: "anomaly",
            metric: "co2",
            value: 894.0,
            limit: 5.23,
            expected: Some((580.4, 702.6)),
        };
        assert_eq!(
            facts.line(&co2),
            "co2-anomaly raised anomaly: co2 894 ppm (expected 580–703 ppm · score 5.2)"
        );
        let t = known("temperature");
        assert_eq!(
            alert_texts(&t, "threshold", 9.24, 8.0, None),
            ("9.2 °C".to_string(), "8.0 °C".to_string())
        );
        assert_eq!(
            alert_texts(&t, "silence", 901.0, 900.0, None),
            ("901 s silent".to_string(), "after 900 s".to_string())
        );
    }

    #[test]
    fn the_device_beats_its_adapter_which_beats_units_and_the_table() {
        let sources = Sources::default();
        let lora = sources.register("lora-gw", "semtech_udp");
        let mqtt = sources.register("mqtt-local", "mqtt");
        let units = Units::new(BTreeMap::from([("pressure".into(), "kPa".into())])).with_adapters(
            BTreeMap::from([(
                "lora-gw".to_string(),
                BTreeMap::from([
                    ("battery".to_string(), "V".to_string()),
                    ("pressure".to_string(), "Pa".to_string()),
                ]),
            )]),
            sources,
        );
        assert!(units.by_adapter());
        // The adapter's unit for its devices only.
        assert_eq!(units.of(None, lora, "battery").format(3.7), "3.70 V");
        assert_eq!(units.of(None, mqtt, "battery").format(87.0), "87 %");
        assert_eq!(units.of(None, SourceId::UNKNOWN, "battery").unit, "%");
        // The adapter's over [units]; [units] for the others.
        assert_eq!(units.of(None, lora, "pressure").unit, "Pa");
        assert_eq!(units.of(None, mqtt, "pressure").unit, "kPa");
        // The device's over its adapter's.
        let device = BTreeMap::from([("battery".to_string(), "mV".to_string())]);
        assert_eq!(units.of(Some(&device), lora, "battery").unit, "mV");
        // A metric nobody overrides: the table's.
        assert_eq!(units.of(None, lora, "temperature").unit, "°C");
    }

    #[test]
    fn what_a_device_states_beats_the_adapter_and_the_table_not_its_config() {
        let sources = Sources::default();
        let bms = sources.register("bms", "bacnet");
        let units = Units::new(BTreeMap::from([("flow".into(), "m³/h".into())])).with_adapters(
            BTreeMap::from([(
                "bms".to_string(),
                BTreeMap::from([("supply_air".to_string(), "K".to_string())]),
            )]),
            sources.clone(),
        );
        sources.report_units(
            "ahu-1",
            BTreeMap::from([
                ("supply_air".to_string(), "°C".to_string()),
                ("flow".to_string(), "L/s".to_string()),
                ("discharge_temp".to_string(), "°F".to_string()),
            ]),
        );
        let of = |device_units: Option<&BTreeMap<String, String>>, metric: &str| {
            units.of_device("ahu-1", device_units, bms, metric)
        };
        // Over the adapter's, [units] and the name table.
        assert_eq!(of(None, "supply_air").format(21.44), "21.4 °C");
        assert_eq!(of(None, "flow").unit, "L/s");
        assert_eq!(of(None, "discharge_temp").unit, "°F");
        // What it measures, from a unit that can only be of one thing.
        assert_eq!(of(None, "supply_air").quantity, "temperature");
        assert_eq!(of(None, "flow").quantity, "");
        // A person's [[device]] units over what the device says.
        let device = BTreeMap::from([("flow".to_string(), "L/min".to_string())]);
        assert_eq!(of(Some(&device), "flow").unit, "L/min");
        // Another device, or no device named: unchanged.
        assert_eq!(units.of_device("ahu-2", None, bms, "flow").unit, "m³/h");
        assert_eq!(units.of(None, bms, "discharge_temp").unit, "°C");
        // A new report replaces the old one.
        sources.report_units("ahu-1", BTreeMap::new());
        assert_eq!(of(None, "supply_air").unit, "K");
    }

    /// The unit alone (what the upstream's windows show) is the unit of
    /// the whole answer, through every layer that can set it.
    #[test]
    fn the_unit_alone_is_the_whole_answers_unit() {
        let sources = Sources::default();
        let bms = sources.register("bms", "bacnet");
        let other = sources.register("other", "mqtt");
        let units = Units::new(BTreeMap::from([
            ("flow".into(), "m³/h".into()),
            ("temperature".into(), "°C".into()),
            ("odd".into(), String::new()),
        ]))
        .with_adapters(
            BTreeMap::from([(
                "bms".to_string(),
                BTreeMap::from([
                    ("supply_air".to_string(), "K".to_string()),
                    ("battery".to_string(), "V".to_string()),
                ]),
            )]),
            sources.clone(),
        );
        sources.report_units(
            "ahu-1",
            BTreeMap::from([
                ("supply_air".to_string(), "°C".to_string()),
                ("flow".to_string(), "L/s".to_string()),
            ]),
        );
        let configured = BTreeMap::from([
            ("flow".to_string(), "L/min".to_string()),
            ("co2".to_string(), "ppm".to_string()),
            ("humidity".to_string(), String::new()),
        ]);
        let metrics = [
            "supply_air",
            "flow",
            "battery",
            "temperature",
            "Temperature_2",
            "co2",
            "humidity",
            "odd",
            "no_such_metric",
            "",
        ];
        for device in ["ahu-1", "ahu-2"] {
            for device_units in [None, Some(&configured)] {
                for source in [bms, other, SourceId::UNKNOWN] {
                    for metric in metrics {
                        assert_eq!(
                            units.unit_of_device(device, device_units, source, metric),
                            units.of_device(device, device_units, source, metric).unit,
                            "{device} {device_units:?} {source:?} {metric}"
                        );
                    }
                }
            }
        }
    }
}
