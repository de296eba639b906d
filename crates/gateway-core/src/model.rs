//! The reading model every adapter produces and every transform consumes.
//!
//! Identifiers are validated newtypes because they end up inside MQTT topic
//! levels and JSON keys upstream: a device id containing `/` or `#` would
//! silently publish to the wrong topic, so it is refused at the edge.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id_text::IdText;

/// Longest device id accepted. Long enough for URNs and Zigbee friendly names.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest metric name accepted.
pub const MAX_METRIC_LEN: usize = 64;

/// Why an identifier or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long, at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} contains {ch:?}, which cannot stand in an MQTT topic level")]
    ForbiddenChar { what: &'static str, ch: char },
    #[error("value is not a finite number")]
    NotFinite,
    #[error("timestamp {0} is outside the representable range")]
    TimeOutOfRange(String),
    #[error(
        "expected a MAC address (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff), got {0:?}"
    )]
    NotMac(String),
}

fn check_topic_level(what: &'static str, s: &str, max: usize) -> Result<(), ModelError> {
    if s.is_empty() {
        return Err(ModelError::Empty { what });
    }
    if s.len() > max {
        return Err(ModelError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        return Err(ModelError::ForbiddenChar { what, ch });
    }
    Ok(())
}

// Shared, not owned: every reading carries its device and metric, and a
// line of four values made eight string allocations (and their frees) when
// these were `String`s; a clone is now a reference count, or a copy for an
// interned id (`crate::id_text`).
macro_rules! topic_level_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $canon:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(IdText);

        impl $name {
            /// Validates and wraps an identifier.
            ///
            /// # Errors
            /// Empty, too long, or containing `/`, `+`, `#` or a control character.
            pub fn new(s: impl Into<String>) -> Result<Self, ModelError> {
                let mut s = s.into();
                check_topic_level($what, &s, $max)?;
                $canon(&mut s);
                Ok(Self(IdText::shared(s)))
            }

            #[inline]
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The same id, its text kept for the life of the process so
            /// that cloning it costs no reference count: for ids an adapter
            /// holds and stamps on reading after reading. Past
            /// [`crate::id_text::INTERN_LIMIT`] texts per process, a plain
            /// clone.
            #[must_use]
            pub fn interned(&self) -> Self {
                Self(self.0.interned())
            }

            /// Whether [`Self::interned`] found room for this id's text.
            pub fn is_interned(&self) -> bool {
                self.0.is_interned()
            }

            /// Where its text is shared: equal for clones of one id, so
            /// a cache can know an id by identity without reading it.
            #[inline]
            pub fn text_addr(&self) -> usize {
                self.0.addr()
            }

            /// Whether `other` is a clone of this id (the same shared
            /// text), which implies equality without comparing text.
            #[inline]
            pub fn same_text(&self, other: &Self) -> bool {
                self.0.addr() == other.0.addr()
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.0.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

topic_level_newtype!(
    /// A device's id as the sensor side knows it: a MAC, a DevEUI or a topic
    /// level. It is one MQTT topic level upstream (`{prefix}/{device}/...`).
    ///
    /// A MAC or an EUI is one device whatever notation or case it arrives
    /// in, so it is kept in one text ([`canonical_device_id`]): every
    /// adapter, the `[[device]]` registry and the pages build ids here, and
    /// one device is one series, one alert and one row everywhere.
    DeviceId,
    "device id",
    MAX_DEVICE_ID_LEN,
    canonical_device_id
);

topic_level_newtype!(
    /// A metric's name (`temperature`, `co2`), a JSON key upstream.
    MetricName,
    "metric name",
    MAX_METRIC_LEN,
    |_: &mut String| {}
);

impl DeviceId {
    /// The device id of a MAC (or EUI-64) read from a field that declares
    /// one, such as a CSV column named `mac`: any notation
    /// ([`crate::hardware_address::HardwareAddress::parse`]), even bare
    /// decimal digits, which [`DeviceId::new`] would take for a serial
    /// number.
    ///
    /// # Errors
    /// [`ModelError::NotMac`] for anything else: boot noise glued to a
    /// MAC (`rl~lxA2:B2:…`) names no device, and taking it would make one.
    pub fn mac(text: &str) -> Result<Self, ModelError> {
        let address = crate::hardware_address::HardwareAddress::parse(text).ok_or_else(|| {
            let shown: String = text.chars().take(40).collect();
            ModelError::NotMac(shown)
        })?;
        Self::new(address.canonical())
    }
}

/// Rewrites `id` in place to the one text of its hardware address when
/// it is plainly one: a MAC-48 or EUI-64 with `:` or `-` between its hex
/// pairs, or bare hex digits with a letter among them, in any case
/// (`crate::hardware_address`). A MAC becomes `aa:bb:cc:dd:ee:ff`, an EUI-64
/// `70b3d57ed0001234`, as BlueZ, ChirpStack and this gateway's own BLE and
/// LoRaWAN adapters print them; names and topic levels (`Living Room`)
/// are left as they are.
pub fn canonical_device_id(id: &mut String) {
    crate::hardware_address::canonicalise(id);
}

/// A wall-clock instant in whole milliseconds since the Unix epoch, UTC.
///
/// Milliseconds are finer than any sensor here reports and keep window
/// arithmetic in plain integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(i64);

/// Earliest timestamp accepted: 1970. Later bounds come from chrono's range.
const MIN_MILLIS: i64 = 0;
/// Latest timestamp accepted: year 9999, so every value formats as RFC 3339.
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// The latest timestamp there is (end of 9999): a bound for times read
    /// from outside (a query's `to=`), so arithmetic on them cannot overflow.
    pub const MAX: Self = Self(MAX_MILLIS);

    /// # Errors
    /// Before 1970 or after 9999.
    pub fn from_millis(ms: i64) -> Result<Self, ModelError> {
        if (MIN_MILLIS..=MAX_MILLIS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(ModelError::TimeOutOfRange(ms.to_string()))
        }
    }

    /// Fractional epoch seconds, as SenML and JSON payloads carry them.
    ///
    /// # Errors
    /// Non-finite or out of range.
    pub fn from_secs_f64(secs: f64) -> Result<Self, ModelError> {
        if !secs.is_finite() {
            return Err(ModelError::NotFinite);
        }
        let ms = (secs * 1000.0).round();
        if ms < MIN_MILLIS as f64 || ms > MAX_MILLIS as f64 {
            return Err(ModelError::TimeOutOfRange(secs.to_string()));
        }
        Ok(Self(ms as i64))
    }

    /// # Errors
    /// Not RFC 3339, or out of range.
    pub fn parse_rfc3339(s: &str) -> Result<Self, ModelError> {
        let dt = DateTime::parse_from_rfc3339(s.trim())
            .map_err(|_| ModelError::TimeOutOfRange(s.to_string()))?;
        Self::from_millis(dt.timestamp_millis())
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time. Only for stamping data; timers use `Instant`.
    pub fn now() -> Self {
        // Straight from the system clock: chrono's `Utc::now()` builds a
        // calendar date only for it to be turned back into milliseconds,
        // a measurable share of ingest, which stamps every message.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(MIN_MILLIS, |d| {
                i64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS)
            });
        Self(ms.clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// Adds a signed number of milliseconds, saturating at the representable range.
    pub fn saturating_add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms).clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// RFC 3339 in UTC with a `Z`, seconds only when the instant is whole
    /// seconds (`2026-11-21T10:00:00Z`), milliseconds otherwise.
    pub fn to_rfc3339(self) -> String {
        let dt = Utc
            .timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default();
        let format = if self.0 % 1000 == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Millis
        };
        dt.to_rfc3339_opts(format, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// Where a reading's timestamp came from. Windows use either; the
/// distinction is kept for diagnostics and for later clock-skew checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// The sensor or its payload said when it measured.
    Event,
    /// The gateway stamped it on arrival.
    Arrival,
}

/// Which configured adapter produced a reading: its index in the
/// runtime's [`crate::component::Sources`] table. Two bytes, so that
/// every reading can carry it; [`SourceId::UNKNOWN`] for readings built
/// outside an adapter (tests, replays of a journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SourceId(pub u16);

impl SourceId {
    pub const UNKNOWN: Self = Self(0);
}

/// What a reading describes: a sensor, or the radio infrastructure in
/// between (a LoRaWAN forwarder's own `stat` counters), which the pages
/// show with the gateway's health instead of as a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subject {
    #[default]
    Device,
    Infrastructure,
}

/// One measured value of one metric of one device. The value is always finite:
/// the constructor is the single place where NaN and infinities are refused, so
/// no window downstream can be poisoned.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    device: DeviceId,
    metric: MetricName,
    value: f64,
    time: Timestamp,
    time_source: TimeSource,
    // In the padding after `time_source`: a reading stays 56 bytes.
    source: SourceId,
    subject: Subject,
}

impl Reading {
    /// # Errors
    /// [`ModelError::NotFinite`] for NaN or ±infinity.
    // Inlined: the call, out of line across crates, was a twenty-fifth of
    // an acknowledged CSV line's CPU and copied each reading twice.
    #[inline]
    pub fn new(
        device: DeviceId,
        metric: MetricName,
        value: f64,
        time: Timestamp,
        time_source: TimeSource,
    ) -> Result<Self, ModelError> {
        if !value.is_finite() {
            return Err(ModelError::NotFinite);
        }
        Ok(Self {
            device,
            metric,
            value,
            time,
            time_source,
            source: SourceId::UNKNOWN,
            subject: Subject::Device,
        })
    }

    /// The adapter that produced it; set by the adapter's ingress sender.
    pub fn source(&self) -> SourceId {
        self.source
    }

    pub fn set_source(&mut self, source: SourceId) {
        self.source = source;
    }

    pub fn subject(&self) -> Subject {
        self.subject
    }

    /// Marks a reading about the infrastructure, not a sensor.
    #[must_use]
    pub fn of_infrastructure(mut self) -> Self {
        self.subject = Subject::Infrastructure;
        self
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }
    pub fn metric(&self) -> &MetricName {
        &self.metric
    }
    pub fn value(&self) -> f64 {
        self.value
    }
    pub fn time(&self) -> Timestamp {
        self.time
    }
    pub fn time_source(&self) -> TimeSource {
        self.time_source
    }

    /// The same reading stamped at `time` on arrival: for a gateway stamp
    /// that queueing made stale, not for a sensor's own time.
    pub fn restamped(&self, time: Timestamp) -> Self {
        Self {
            time,
            time_source: TimeSource::Arrival,
            ..self.clone()
        }
    }
}

/// A device's connectivity as it announced it (MQTT Last Will and birth messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Online,
    Offline,
}

impl DeviceState {
    /// Accepts the payloads devices really send: `online`/`offline`, `1`/`0`,
    /// `true`/`false`, any case, surrounding white space ignored; and the
    /// Homie convention's `$state`: `ready` online, `lost` and
    /// `disconnected` offline (its `init`, `sleeping` and `alert` say
    /// nothing of whether the device is reachable, and are not states).
    pub fn parse(payload: &str) -> Option<Self> {
        match payload.trim().to_ascii_lowercase().as_str() {
            "online" | "1" | "true" | "up" | "connected" | "ready" => Some(Self::Online),
            "offline" | "0" | "false" | "down" | "disconnected" | "lost" => Some(Self::Offline),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// A change of a device's announced state.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub device: DeviceId,
    pub state: DeviceState,
    pub time: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_that_would_break_topics_are_refused() {
        for bad in ["", "a/b", "a+", "#", "tab\there"] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} accepted");
        }
        let long = "x".repeat(MAX_DEVICE_ID_LEN + 1);
        assert!(matches!(
            DeviceId::new(long),
            Err(ModelError::TooLong { .. })
        ));
        for good in [
            "a2:b2:c2:d2:e2:f2",
            "70b3d57ed0001234",
            "Living Room",
            "dev-1",
            "ROOM-ABCDEF12",
            "ABCDEFABCDEFG",
        ] {
            assert_eq!(DeviceId::new(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn macs_and_euis_are_one_id_in_any_case() {
        for (sent, id) in [
            ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"),
            ("Aa:bB:cc:DD:ee:FF", "aa:bb:cc:dd:ee:ff"),
            ("AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff"),
            ("70B3D57ED0001234", "70b3d57ed0001234"),
            ("70:B3:D5:7E:D0:00:12:34", "70b3d57ed0001234"),
            ("AABBCCDDEEFF", "aa:bb:cc:dd:ee:ff"),
            ("202401150001", "202401150001"),
            // Not a hardware address: a name keeps its case.
            ("AA:BB:CC:DD:EE:FG", "AA:BB:CC:DD:EE:FG"),
            ("AA:BB-CC:DD:EE:FF", "AA:BB-CC:DD:EE:FF"),
            ("Kitchen Sensor 1", "Kitchen Sensor 1"),
        ] {
            assert_eq!(DeviceId::new(sent).unwrap().as_str(), id, "{sent}");
        }
        assert_eq!(
            DeviceId::new("AA:BB:CC:DD:EE:FF").unwrap(),
            DeviceId::new("aa:bb:cc:dd:ee:ff").unwrap()
        );
        assert_eq!(
            DeviceId::mac("240128001502").unwrap().as_str(),
            "24:01:28:00:15:02",
            "a declared MAC, even in decimal digits"
        );
        assert!(matches!(
            DeviceId::mac("rl~lxA2:B2:C2:D2:E2:F2"),
            Err(ModelError::NotMac(_))
        ));
        let t = Timestamp(0);
        let m = MetricName::new("m").unwrap();
        let r = Reading::new(DeviceId::new("d").unwrap(), m, 1.0, t, TimeSource::Event).unwrap();
        assert_eq!(
            std::mem::size_of_val(&r),
            56,
            "provenance must not grow a reading"
        );
    }

    #[test]
    fn readings_refuse_non_finite_values() {
        let d = DeviceId::new("d").unwrap();
        let m = MetricName::new("m").unwrap();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let r = Reading::new(d.clone(), m.clone(), v, Timestamp(0), TimeSource::Event);
            assert_eq!(r, Err(ModelError::NotFinite));
        }
        assert!(Reading::new(d, m, f64::MAX, Timestamp(0), TimeSource::Event).is_ok());
    }

    #[test]
    fn timestamps_format_as_utc_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-11-21T11:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00Z");
        let t = Timestamp::from_millis(t.as_millis() + 250).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T10:00:00.250Z");
        assert_eq!(
            Timestamp::from_secs_f64(1_763_719_200.5)
                .unwrap()
                .as_millis(),
            1_763_719_200_500
        );
        assert!(Timestamp::from_secs_f64(f64::NAN).is_err());
        assert!(Timestamp::from_millis(-1).is_err());
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn device_state_accepts_common_spellings() {
        assert_eq!(DeviceState::parse(" Online\n"), Some(DeviceState::Online));
        assert_eq!(DeviceState::parse("OFFLINE"), Some(DeviceState::Offline));
        assert_eq!(DeviceState::parse("maybe"), None);
        // Homie's $state.
        assert_eq!(DeviceState::parse("ready"), Some(DeviceState::Online));
        assert_eq!(DeviceState::parse("lost"), Some(DeviceState::Offline));
        assert_eq!(DeviceState::parse("sleeping"), None);
    }
}
