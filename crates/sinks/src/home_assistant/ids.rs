//! Unique ids and topic levels that no device can share with another.
//!
//! Home Assistant accepts `[a-zA-Z0-9_-]` in a discovery topic's object id,
//! and keys an entity by its `unique_id`: two entities with one id are one
//! entity, and the last config wins. Flattening ids to `[a-z0-9_-]`, as the
//! gateway did, made a stranger's device `fridge` with metric
//! `2_temperature` the kitchen's `fridge_2` `temperature`, and `hall way`
//! the same device as `hall_way`. The rules here are injective and
//! stateless (the same id gives the same text in every run and release),
//! and keep the earlier text wherever that one was not ambiguous:
//!
//! - A part is **plain** when it is already `[a-z0-9_-]` with no leading,
//!   trailing or doubled `_`: it stands for itself. A MAC or EUI-64 with
//!   colons (as the gateway stores them, lower case) stands as its hex
//!   pairs joined by `_`, as before.
//! - Anything else is **escaped**: each character outside `[a-z0-9-]`
//!   becomes `_<hex of its code point>_`, and the level starts with `_`
//!   (`hall way` → `_hall_20_way`), which no plain part does.
//! - One level can be claimed by two ids: a MAC's `aa_bb_…` and a device
//!   literally named so. A device in `[[device]]` keeps the plain text;
//!   between equals the MAC does. The other is escaped.
//! - In an object id, device and key are joined by `_` (`_alert_` for a
//!   rule), which plain parts contain too: `fridge_2_temperature` reads
//!   as `fridge_2` + `temperature` or `fridge` + `2_temperature`. The text
//!   belongs to one reading of it, chosen from the text alone: the longest
//!   device in `[[device]]`; else the longest MAC; else the reading whose
//!   key is the longest of the metric names devices commonly send
//!   ([`METRIC_WORDS`], frozen: `house_meter` + `energy`, `esp` +
//!   `battery_v`); else the shortest device. Every other pair is written
//!   `<device escaped>__<key escaped>`, and plain text never holds `__`.
//!   So a stranger cannot take a registered device's ids, nor those of a
//!   device sending a common metric, by choosing its own.

use std::collections::BTreeSet;

/// Metric names devices commonly send, sorted. Frozen: a name added here
/// may give an existing entity another id, so the list only serves to
/// read an ambiguous object id the way it was most likely meant.
pub const METRIC_WORDS: &[&str] = &[
    "ackr",
    "bat_v",
    "batt_mv",
    "batt_v",
    "battery",
    "battery_mv",
    "battery_v",
    "battery_voltage",
    "co",
    "co2",
    "contact",
    "count",
    "current",
    "dew_point",
    "distance",
    "door",
    "energy",
    "energy_kwh",
    "energy_wh",
    "ext_temperature",
    "external_temperature",
    "flow",
    "frequency",
    "gas",
    "hcho",
    "heat_index",
    "humidity",
    "iaq",
    "illuminance",
    "leak",
    "light",
    "linkquality",
    "lux",
    "moisture",
    "motion",
    "noise",
    "o3",
    "occupancy",
    "pm1",
    "pm10",
    "pm1_0",
    "pm25",
    "pm2_5",
    "power",
    "pressure",
    "rain",
    "rh",
    "rssi",
    "snr",
    "soil_moisture",
    "sound",
    "sound_avg",
    "sound_peak",
    "temp",
    "temperature",
    "tvoc",
    "tvoc_ug_m3",
    "uv",
    "vbat",
    "vbat_mv",
    "vbatt",
    "vibration",
    "voltage",
    "water_leak",
    "weight",
    "wind_speed",
];

/// What an id is written as in topics and object ids.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// The `[[device]]` ids: these win a level or an object id they share.
    registered: BTreeSet<String>,
}

impl Ids {
    pub fn new(registered: impl IntoIterator<Item = String>) -> Self {
        Self {
            registered: registered.into_iter().collect(),
        }
    }

    fn is_registered(&self, device: &str) -> bool {
        self.registered.contains(device)
    }

    /// A device as one topic level (and in its `identifiers`).
    pub fn device_level(&self, device: &str) -> String {
        match flat_device(device) {
            Some(flat) if self.level_owner(&flat).as_deref() == Some(device) => flat,
            _ => escaped_level(device),
        }
    }

    /// A metric or rule as one topic level. `availability` is the device's
    /// own topic beside its metrics: a metric of that name is escaped.
    pub fn key_level(key: &str) -> String {
        if plain(key) && key != "availability" {
            key.to_string()
        } else {
            escaped_level(key)
        }
    }

    /// The object id after `{gateway}_`: device and key joined by `sep`
    /// (`_` for a metric, `_alert_` for a rule).
    pub fn object_id(&self, device: &str, sep: &str, key: &str) -> String {
        let level = self.device_level(device);
        if !level.starts_with('_') && plain(key) {
            let text = format!("{level}{sep}{key}");
            let owner = self.pair_owner(&text, sep);
            if owner.as_ref().is_some_and(|(d, k)| d == device && k == key) {
                return text;
            }
        }
        format!("{}__{}", escape(device), escape(key))
    }

    /// The device a plain level stands for.
    fn level_owner(&self, level: &str) -> Option<String> {
        let literal = plain(level).then(|| level.to_string());
        let mac = mac_of_level(level);
        match (literal, mac) {
            (Some(l), Some(m)) => {
                if self.is_registered(&l) && !self.is_registered(&m) {
                    Some(l)
                } else {
                    Some(m)
                }
            }
            (l, m) => l.or(m),
        }
    }

    /// The (device, key) a plain object id stands for.
    fn pair_owner(&self, text: &str, sep: &str) -> Option<(String, String)> {
        // (device, key, its level's length), in the order of the cuts.
        let mut cuts = Vec::new();
        // Every cut, overlapping ones too (`a_alert_alert_b`).
        let at =
            (0..text.len()).filter(|&i| text.is_char_boundary(i) && text[i..].starts_with(sep));
        for i in at {
            let (level, key) = (&text[..i], &text[i + sep.len()..]);
            if level.is_empty() || !plain(key) {
                continue;
            }
            if let Some(device) = self.level_owner(level) {
                cuts.push((device, key.to_string(), i));
            }
        }
        let longest = |keep: &dyn Fn(&str) -> bool| {
            cuts.iter()
                .filter(|(d, _, _)| keep(d))
                .max_by_key(|(_, _, i)| *i)
                .cloned()
        };
        let common_metric = || {
            cuts.iter()
                .filter(|(_, k, _)| METRIC_WORDS.binary_search(&k.as_str()).is_ok())
                .min_by_key(|(_, _, i)| *i)
                .cloned()
        };
        longest(&|d| self.is_registered(d))
            .or_else(|| longest(&|d| d.contains(':')))
            .or_else(common_metric)
            .or_else(|| cuts.first().cloned())
            .map(|(d, k, _)| (d, k))
    }
}

/// `[a-z0-9_-]`, not empty, with no `_` at either end or doubled.
fn plain(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !part.starts_with('_')
        && !part.ends_with('_')
        && !part.contains("__")
}

/// The level a device would have without a rival: a MAC's pairs joined by
/// `_`, a plain id itself.
fn flat_device(device: &str) -> Option<String> {
    if is_hex_pairs(device, ':') {
        return Some(device.replace(':', "_"));
    }
    plain(device).then(|| device.to_string())
}

/// The MAC (or EUI-64) a level of 6 or 8 hex pairs joined by `_` spells.
fn mac_of_level(level: &str) -> Option<String> {
    is_hex_pairs(level, '_').then(|| level.replace('_', ":"))
}

/// 6 or 8 pairs of lower-case hex digits joined by `sep`.
fn is_hex_pairs(s: &str, sep: char) -> bool {
    let pairs: Vec<&str> = s.split(sep).collect();
    matches!(pairs.len(), 6 | 8)
        && pairs.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Every character outside `[a-z0-9-]` as `_<hex>_`: a code that reads
/// back one way only, since a kept character is never `_`.
fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            out.push(c);
        } else {
            out.push_str(&format!("_{:x}_", u32::from(c)));
        }
    }
    out
}

/// An escaped part as a level: `_` first, which no plain level has.
fn escaped_level(part: &str) -> String {
    format!("_{}", escape(part))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn metric_words_are_sorted_for_binary_search() {
        assert!(METRIC_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_that_flattened_without_loss_keep_their_text() {
        let ids = Ids::new(["fridge_2".to_string()]);
        for (device, key, want) in [
            (
                "a4:c1:38:00:11:22",
                "temperature",
                "a4_c1_38_00_11_22_temperature",
            ),
            ("fridge-7", "battery_v", "fridge-7_battery_v"),
            ("70b3d57ed0001234", "pm2_5", "70b3d57ed0001234_pm2_5"),
            ("fridge_2", "temperature", "fridge_2_temperature"),
            ("house_meter", "energy", "house_meter_energy"),
            ("living_room", "co2", "living_room_co2"),
            ("esp", "battery_v", "esp_battery_v"),
            ("meter", "energy_kwh", "meter_energy_kwh"),
        ] {
            assert_eq!(ids.object_id(device, "_", key), want);
            assert_eq!(ids.object_id(device, "_", key), legacy(device, key));
        }
        assert_eq!(
            ids.object_id("a4:c1:38:00:11:22", "_alert_", "too-hot"),
            "a4_c1_38_00_11_22_alert_too-hot"
        );
        assert_eq!(ids.device_level("a4:c1:38:00:11:22"), "a4_c1_38_00_11_22");
        assert_eq!(Ids::key_level("battery_v"), "battery_v");
    }

    fn legacy(device: &str, key: &str) -> String {
        use super::super::discovery::slug;
        format!("{}_{}", slug(device), slug(key))
    }

    #[test]
    fn look_alikes_from_the_issue_get_ids_of_their_own() {
        let ids = Ids::new(["fridge_2".to_string()]);
        // The registered kitchen fridge keeps its id; the stranger moves.
        assert_eq!(
            ids.object_id("fridge_2", "_", "temperature"),
            "fridge_2_temperature"
        );
        assert_eq!(
            ids.object_id("fridge", "_", "2_temperature"),
            "fridge__2_5f_temperature"
        );
        for (a, b) in [
            ("hall way", "hall_way"),
            ("aa:bb:cc:dd:ee:01", "aa_bb_cc_dd_ee_01"),
            ("会议室-1", "办公室-1"),
        ] {
            assert_ne!(ids.device_level(a), ids.device_level(b), "{a} / {b}");
            assert_ne!(
                ids.object_id(a, "_", "temperature"),
                ids.object_id(b, "_", "temperature"),
                "{a} / {b}"
            );
        }
        assert_eq!(ids.device_level("hall_way"), "hall_way");
        assert_eq!(ids.device_level("hall way"), "_hall_20_way");
        assert_eq!(ids.device_level("aa:bb:cc:dd:ee:01"), "aa_bb_cc_dd_ee_01");
        assert_eq!(
            ids.device_level("aa_bb_cc_dd_ee_01"),
            "_aa_5f_bb_5f_cc_5f_dd_5f_ee_5f_01"
        );
        // Registered, the literal one keeps the plain text.
        let reg = Ids::new(["aa_bb_cc_dd_ee_01".to_string()]);
        assert_eq!(reg.device_level("aa_bb_cc_dd_ee_01"), "aa_bb_cc_dd_ee_01");
        assert_ne!(reg.device_level("aa:bb:cc:dd:ee:01"), "aa_bb_cc_dd_ee_01");
        assert_eq!(Ids::key_level("availability"), "_availability");
    }

    /// A small alphabet that makes collisions likely: separators, hex,
    /// case, a space, a colon and a character outside ASCII.
    fn random_part(x: &mut u64, mac_bias: bool) -> String {
        let mut next = || {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        };
        if mac_bias && next() % 4 == 0 {
            let sep = if next() % 2 == 0 { ':' } else { '_' };
            let n = if next() % 2 == 0 { 6 } else { 8 };
            return (0..n)
                .map(|_| ["aa", "01", "0f", "b2"][(next() % 4) as usize])
                .collect::<Vec<_>>()
                .join(&sep.to_string());
        }
        const ALPHABET: [&str; 12] = ["a", "b", "2", "_", "_", "-", " ", ":", "A", "会", "f", "0"];
        let len = 1 + (next() % 7) as usize;
        (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn object_ids_and_levels_are_injective() {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for round in 0..40 {
            let devices: Vec<String> = (0..60).map(|_| random_part(&mut x, true)).collect();
            let keys: Vec<String> = (0..30).map(|_| random_part(&mut x, false)).collect();
            // Some of the devices are in [[device]].
            let ids = Ids::new(devices.iter().step_by(3 + round % 4).cloned());
            let mut levels: HashMap<String, &str> = HashMap::new();
            for d in &devices {
                let level = ids.device_level(d);
                assert!(
                    level
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{level}"
                );
                if let Some(other) = levels.insert(level.clone(), d) {
                    assert_eq!(other, d, "level {level}");
                }
            }
            let mut keys_seen: HashMap<String, &str> = HashMap::new();
            for k in &keys {
                if let Some(other) = keys_seen.insert(Ids::key_level(k), k) {
                    assert_eq!(other, k);
                }
            }
            for sep in ["_", "_alert_"] {
                let mut seen: HashMap<String, (&str, &str)> = HashMap::new();
                for d in &devices {
                    for k in &keys {
                        let id = ids.object_id(d, sep, k);
                        if let Some(other) = seen.insert(id.clone(), (d, k)) {
                            assert_eq!(other, (d.as_str(), k.as_str()), "{sep}: {id}");
                        }
                    }
                }
            }
        }
    }
}
