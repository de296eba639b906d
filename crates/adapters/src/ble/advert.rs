//! One BLE advertisement as the decoders see it, and its recorded form.
//!
//! The radio (btleplug over BlueZ) never hands us raw AD bytes: BlueZ gives
//! per-device maps of service data by UUID and manufacturer data by company
//! id (CRATES.md, btleplug 0.13). So that is the shape here too, and the
//! same shape is what `ble record` writes and `source = "replay"` reads, one
//! JSON object per line (issue #14):
//!
//! ```text
//! {"ts":"2026-11-21T10:00:00.000Z","mac":"54:48:E6:8F:80:A5","rssi":-67,
//!  "service_data":{"0000fcd2-0000-1000-8000-00805f9b34fb":"41e445…"},
//!  "manufacturer_data":{"0499":"0512FC…"}}
//! ```
//!
//! Service-data keys are a 128-bit UUID or a 16-bit one as 4 hex digits;
//! manufacturer-data keys are the company id as 4 hex digits; values are hex.
//! [`Advertisement::parse_line`] is total: any line gives an advertisement
//! or an [`AdvertError`] naming the field, never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use gateway_core::{DeviceId, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest line accepted (bytes). A legacy advertisement carries at most 31
/// bytes of AD data and an extended one 1650, so 16 KiB of JSON is far more
/// than any real capture line; the cap bounds the work per line.
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// Why a recorded line, a MAC or a UUID was refused. Count by [`AdvertError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    #[error("line is {len} bytes long, at most {MAX_LINE_LEN} are accepted")]
    TooLong { len: usize },
    #[error("not an advertisement object: {0}")]
    Json(String),
    #[error("`ts` {value:?} is not an RFC 3339 time")]
    Time { value: String },
    #[error("MAC {value:?}: expected six hex bytes separated by colons (a4:c1:38:8d:18:b2), or the twelve digits alone")]
    Mac { value: String },
    #[error("`rssi` {value} is outside -128..=127 dBm")]
    Rssi { value: i64 },
    #[error("service UUID {value:?}: expected 4 hex digits (fcd2) or a 128-bit UUID")]
    Uuid { value: String },
    #[error("company id {value:?}: expected 4 hex digits (0499)")]
    CompanyId { value: String },
    #[error("{field} value for {key:?} is not an even-length hex string")]
    Hex { field: &'static str, key: String },
}

impl AdvertError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "line_too_long",
            Self::Json(_) => "bad_json",
            Self::Time { .. } => "bad_time",
            Self::Mac { .. } => "bad_mac",
            Self::Rssi { .. } => "bad_rssi",
            Self::Uuid { .. } => "bad_uuid",
            Self::CompanyId { .. } => "bad_company_id",
            Self::Hex { .. } => "bad_hex",
        }
    }
}

/// A Bluetooth device address, in the order it is printed (`54:48:E6:8F:80:A5`
/// is `[0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]`), which is also the order the
/// BTHome nonce uses (bthome.io encryption page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The gateway's device id for this MAC: lower case with colons
    /// (`a4:c1:38:8d:18:b2`), the form `[[device]] id` uses (issue #14).
    pub fn device_id(&self) -> DeviceId {
        // Hex digits and colons are always a valid topic level of 17 bytes.
        DeviceId::new(self.to_string()).unwrap_or_else(|_| unreachable!())
    }
}

impl FromStr for Mac {
    type Err = AdvertError;

    /// Six hex bytes separated by `:` (or `-`), any case, or the twelve
    /// digits alone as some devices print them (Shelly's `A4C1388D18B2`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AdvertError::Mac {
            value: s.chars().take(40).collect(),
        };
        let mut out = [0u8; 6];
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
            }
            return Ok(Self(out));
        }
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            // `from_str_radix` alone would take a sign ("+b").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The Bluetooth Base UUID (Core spec Vol 3 Part B §2.5.1): a 16-bit UUID
/// `xxxx` stands for `0000xxxx-0000-1000-8000-00805f9b34fb`.
const BASE_UUID: u128 = 0x0000_0000_0000_1000_8000_0080_5f9b_34fb;

/// A GATT service UUID, kept as its full 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceUuid(pub u128);

impl ServiceUuid {
    /// BTHome (bthome.io format page: "the UUID is 0xFCD2").
    pub const BTHOME: Self = Self::from_u16(0xFCD2);
    /// Environmental Sensing, used by the PVVX and ATC1441 firmwares.
    pub const ENVIRONMENTAL_SENSING: Self = Self::from_u16(0x181A);

    /// A 16-bit UUID on the Bluetooth base.
    pub const fn from_u16(short: u16) -> Self {
        Self(BASE_UUID | (short as u128) << 96)
    }

    /// The 16-bit form, when this UUID is on the Bluetooth base.
    pub fn as_u16(self) -> Option<u16> {
        let short = (self.0 >> 96) as u32;
        (self.0 & !(0xFFFF_FFFFu128 << 96) == BASE_UUID && short <= 0xFFFF).then_some(short as u16)
    }
}

impl FromStr for ServiceUuid {
    type Err = AdvertError;

    /// `fcd2` (16-bit) or `0000fcd2-0000-1000-8000-00805f9b34fb`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AdvertError::Uuid {
            value: s.chars().take(40).collect(),
        };
        if s.len() == 4 {
            return parse_hex_u16(s).map(Self::from_u16).ok_or_else(bad);
        }
        let groups: Vec<&str> = s.split('-').collect();
        let shape = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(shape).any(|(g, n)| g.len() != n) {
            return Err(bad());
        }
        let digits: String = groups.concat();
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u128::from_str_radix(&digits, 16)
            .map(Self)
            .map_err(|_| bad())
    }
}

impl fmt::Display for ServiceUuid {
    /// The 128-bit form, lower case, as BlueZ prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

/// Four hex digits as a `u16` (a company id or a short UUID).
fn parse_hex_u16(s: &str) -> Option<u16> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

/// Bytes of a hex string (either case), or `None` if it is not one.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi << 4 | lo) as u8)
        })
        .collect()
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// One advertisement: who sent it, how loud, when, and its data maps.
#[derive(Debug, Clone, PartialEq)]
pub struct Advertisement {
    pub mac: Mac,
    /// dBm; BlueZ can report a device without one.
    pub rssi: Option<i8>,
    /// When it was received (wall clock, for stamping readings).
    pub time: Timestamp,
    /// Service data by UUID (a recorded line gives them in key order).
    pub service_data: Vec<(ServiceUuid, Vec<u8>)>,
    /// Manufacturer-specific data by Bluetooth SIG company id.
    pub manufacturer_data: Vec<(u16, Vec<u8>)>,
}

/// The recorded line before validation: serde checks the JSON shape, the
/// fields are then checked one by one so each error names its field.
#[derive(Deserialize)]
struct RawLine {
    ts: String,
    mac: String,
    #[serde(default)]
    rssi: Option<i64>,
    #[serde(default)]
    service_data: BTreeMap<String, String>,
    #[serde(default)]
    manufacturer_data: BTreeMap<String, String>,
}

impl Advertisement {
    /// An advertisement with no data yet.
    pub fn new(mac: Mac, rssi: Option<i8>, time: Timestamp) -> Self {
        Self {
            mac,
            rssi,
            time,
            service_data: Vec::new(),
            manufacturer_data: Vec::new(),
        }
    }

    /// The service data for `uuid`, if present.
    pub fn service(&self, uuid: ServiceUuid) -> Option<&[u8]> {
        self.service_data
            .iter()
            .find(|(u, _)| *u == uuid)
            .map(|(_, d)| d.as_slice())
    }

    /// The manufacturer data for `company`, if present.
    pub fn manufacturer(&self, company: u16) -> Option<&[u8]> {
        self.manufacturer_data
            .iter()
            .find(|(c, _)| *c == company)
            .map(|(_, d)| d.as_slice())
    }

    /// Parses one recorded line (see the module doc). Unknown keys are
    /// ignored so that a newer recorder's captures still play.
    ///
    /// # Errors
    /// [`AdvertError`] naming the first field that is malformed.
    pub fn parse_line(line: &str) -> Result<Self, AdvertError> {
        if line.len() > MAX_LINE_LEN {
            return Err(AdvertError::TooLong { len: line.len() });
        }
        let raw: RawLine =
            serde_json::from_str(line).map_err(|e| AdvertError::Json(e.to_string()))?;
        let time = Timestamp::parse_rfc3339(&raw.ts).map_err(|_| AdvertError::Time {
            value: raw.ts.chars().take(40).collect(),
        })?;
        let mac: Mac = raw.mac.parse()?;
        let rssi = match raw.rssi {
            None => None,
            Some(v) => Some(i8::try_from(v).map_err(|_| AdvertError::Rssi { value: v })?),
        };
        let mut adv = Self::new(mac, rssi, time);
        for (key, value) in &raw.service_data {
            let uuid: ServiceUuid = key.parse()?;
            let bytes = parse_hex(value).ok_or_else(|| AdvertError::Hex {
                field: "service_data",
                key: key.chars().take(40).collect(),
            })?;
            adv.service_data.push((uuid, bytes));
        }
        for (key, value) in &raw.manufacturer_data {
            let company = parse_hex_u16(key).ok_or_else(|| AdvertError::CompanyId {
                value: key.chars().take(40).collect(),
            })?;
            let bytes = parse_hex(value).ok_or_else(|| AdvertError::Hex {
                field: "manufacturer_data",
                key: key.clone(),
            })?;
            adv.manufacturer_data.push((company, bytes));
        }
        // One order and one entry per UUID or company, however the keys
        // were spelt: "fcd2" and its 128-bit form are one service, and a
        // line written back by `to_line` must read as the same
        // advertisement. The first spelling in the line's key order wins.
        adv.service_data.sort_by_key(|(uuid, _)| *uuid);
        adv.service_data.dedup_by_key(|(uuid, _)| *uuid);
        adv.manufacturer_data.sort_by_key(|(company, _)| *company);
        adv.manufacturer_data.dedup_by_key(|(company, _)| *company);
        Ok(adv)
    }

    /// The recorded line for this advertisement (no trailing newline), the
    /// inverse of [`Advertisement::parse_line`]: what `ble record` writes.
    pub fn to_line(&self) -> String {
        let service: serde_json::Map<String, serde_json::Value> = self
            .service_data
            .iter()
            .map(|(u, d)| (u.to_string(), to_hex(d).into()))
            .collect();
        let manufacturer: serde_json::Map<String, serde_json::Value> = self
            .manufacturer_data
            .iter()
            .map(|(c, d)| (format!("{c:04x}"), to_hex(d).into()))
            .collect();
        serde_json::json!({
            "ts": self.time.to_rfc3339(),
            "mac": self.mac.0.map(|b| format!("{b:02X}")).join(":"),
            "rssi": self.rssi,
            "service_data": service,
            "manufacturer_data": manufacturer,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_LINE: &str = r#"{"ts":"2026-11-21T10:00:00.000Z","mac":"54:48:E6:8F:80:A5","rssi":-67,"service_data":{"0000fcd2-0000-1000-8000-00805f9b34fb":"41e445f3c9962b332211006c7c4519"},"manufacturer_data":{"0499":"0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"}}"#;

    #[test]
    fn the_issue_example_line_parses() {
        let adv = Advertisement::parse_line(ISSUE_LINE).unwrap();
        assert_eq!(adv.mac, Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]));
        assert_eq!(adv.mac.to_string(), "54:48:e6:8f:80:a5");
        assert_eq!(adv.mac.device_id().as_str(), "54:48:e6:8f:80:a5");
        assert_eq!(adv.rssi, Some(-67));
        assert_eq!(adv.time.to_rfc3339(), "2026-11-21T10:00:00Z");
        assert_eq!(
            adv.service(ServiceUuid::BTHOME).unwrap()[..3],
            [0x41, 0xe4, 0x45]
        );
        assert_eq!(adv.manufacturer(0x0499).unwrap().len(), 24);
        assert_eq!(adv.manufacturer(0x004C), None);
    }

    #[test]
    fn short_and_long_uuids_are_the_same_service() {
        let short: ServiceUuid = "FCD2".parse().unwrap();
        let long: ServiceUuid = "0000fcd2-0000-1000-8000-00805F9B34FB".parse().unwrap();
        assert_eq!(short, long);
        assert_eq!(short, ServiceUuid::BTHOME);
        assert_eq!(short.as_u16(), Some(0xFCD2));
        assert_eq!(long.to_string(), "0000fcd2-0000-1000-8000-00805f9b34fb");
        // Not on the base: no 16-bit form.
        let custom: ServiceUuid = "6e400001-b5a3-f393-e0a9-e50e24dcca9e".parse().unwrap();
        assert_eq!(custom.as_u16(), None);
    }

    #[test]
    fn a_line_round_trips_through_to_line() {
        let adv = Advertisement::parse_line(ISSUE_LINE).unwrap();
        let again = Advertisement::parse_line(&adv.to_line()).unwrap();
        assert_eq!(adv, again);
    }

    #[test]
    fn missing_maps_and_rssi_are_empty() {
        let adv =
            Advertisement::parse_line(r#"{"ts":"2026-11-21T10:00:00Z","mac":"a4:c1:38:8d:18:b2"}"#)
                .unwrap();
        assert_eq!(adv.rssi, None);
        assert!(adv.service_data.is_empty() && adv.manufacturer_data.is_empty());
    }

    /// Found by the `ble_advert_line` fuzz target: a service's short and
    /// 128-bit spellings in one line sorted differently once written back.
    #[test]
    fn a_line_read_back_is_the_same_advertisement_however_its_keys_are_spelt() {
        let line = r#"{"ts":"2026-11-21T10:00:00Z","mac":"27:48:E6:8F:80:A5","service_data":{"0000fcd2-0000-1000-8000-00805f9b34fb":"14","6150":"a8","fcd2":"ff"},"manufacturer_data":{"04a9":"01","04A9":"02"}}"#;
        let adv = Advertisement::parse_line(line).unwrap();
        assert_eq!(
            Advertisement::parse_line(&adv.to_line()).as_ref(),
            Ok(&adv)
        );
        let uuids: Vec<u128> = adv.service_data.iter().map(|(u, _)| u.0).collect();
        assert_eq!(
            uuids,
            [
                0x0000_6150_0000_1000_8000_0080_5f9b_34fb,
                0x0000_fcd2_0000_1000_8000_0080_5f9b_34fb
            ]
        );
        assert_eq!(adv.manufacturer_data.len(), 1);
    }

    #[test]
    fn a_mac_is_read_with_colons_dashes_or_bare_in_any_case() {
        let want = Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]);
        for text in ["a4:c1:38:8d:18:b2", "A4-C1-38-8D-18-B2", "A4C1388D18B2"] {
            assert_eq!(text.parse::<Mac>(), Ok(want), "{text}");
        }
        for bad in ["A4C1388D18B", "A4C1388D18B2F", "A4C1388D18+2", "a4:c1:38:8d:18b2"] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_bad_field_has_its_own_error() {
        let base = |field: &str| {
            format!(r#"{{"ts":"2026-11-21T10:00:00Z","mac":"a4:c1:38:8d:18:b2",{field}}}"#)
        };
        let cases = [
            ("not json".to_string(), "bad_json"),
            (r#"{"mac":"a4:c1:38:8d:18:b2"}"#.to_string(), "bad_json"),
            (
                r#"{"ts":"yesterday","mac":"a4:c1:38:8d:18:b2"}"#.to_string(),
                "bad_time",
            ),
            (
                r#"{"ts":"2026-11-21T10:00:00Z","mac":"a4:c1:38:8d:18"}"#.to_string(),
                "bad_mac",
            ),
            (
                r#"{"ts":"2026-11-21T10:00:00Z","mac":"a4:c1:38:8d:18:b2:00"}"#.to_string(),
                "bad_mac",
            ),
            (
                r#"{"ts":"2026-11-21T10:00:00Z","mac":"a4:c1:38:8d:18:zz"}"#.to_string(),
                "bad_mac",
            ),
            (
                r#"{"ts":"2026-11-21T10:00:00Z","mac":"a4:c1:38:8d:18:+b"}"#.to_string(),
                "bad_mac",
            ),
            (base(r#""rssi":-300"#), "bad_rssi"),
            (base(r#""rssi":"x""#), "bad_json"),
            (base(r#""service_data":{"fcd":"00"}"#), "bad_uuid"),
            (
                base(r#""service_data":{"0000fcd2-0000-1000-8000-00805f9b34fbx":"00"}"#),
                "bad_uuid",
            ),
            (base(r#""service_data":{"+cd2":"00"}"#), "bad_uuid"),
            (base(r#""service_data":{"fcd2":"0"}"#), "bad_hex"),
            (base(r#""service_data":{"fcd2":"zz"}"#), "bad_hex"),
            (
                base(r#""manufacturer_data":{"499":"00"}"#),
                "bad_company_id",
            ),
            (base(r#""manufacturer_data":{"0499":"é0"}"#), "bad_hex"),
            (
                format!("{:width$}", "", width = MAX_LINE_LEN + 1),
                "line_too_long",
            ),
        ];
        for (line, kind) in cases {
            let err = Advertisement::parse_line(&line).unwrap_err();
            assert_eq!(err.kind(), kind, "{line:.80}: {err}");
        }
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(parse_hex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(parse_hex(""), Some(vec![]));
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("0g"), None);
        assert_eq!(to_hex(&[0x0a, 0xff]), "0aff");
    }
}
