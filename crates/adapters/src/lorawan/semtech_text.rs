//! The `rxpk` fields that are short texts or a data rate, read without an
//! allocation for the values every forwarder writes.

use std::fmt;

use serde::Deserialize;

/// A short text field of an `rxpk` (`modu`, `codr`, a LoRa `datr`): the
/// values forwarders write point to a static copy, anything else is owned.
/// An owned `String` for each of the three was three allocations and frees
/// an uplink, a tenth of the PUSH_DATA reader's cost (callgrind, issue 69).
pub type Text = std::borrow::Cow<'static, str>;

/// The `modu`, `codr` and LoRa `datr` values of the regions' plans, kept as
/// static strings. Exact matches only: any other spelling is kept as sent.
pub(super) const KNOWN_TEXTS: &[&str] = &[
    "LORA", "FSK", "4/5", "4/6", "4/7", "4/8", "OFF", "SF7BW125", "SF8BW125", "SF9BW125",
    "SF10BW125", "SF11BW125", "SF12BW125", "SF7BW250", "SF5BW125", "SF6BW125", "SF7BW500",
    "SF8BW500", "SF9BW500", "SF10BW500", "SF11BW500", "SF12BW500",
];

/// UTF-8 bytes as a [`Text`], as [`text`] makes it; `None` when they are
/// not UTF-8.
pub(super) fn text_of_bytes(b: &[u8]) -> Option<Text> {
    match KNOWN_TEXTS.iter().find(|k| k.as_bytes() == b) {
        Some(k) => Some(Text::Borrowed(k)),
        None => std::str::from_utf8(b).ok().map(|s| Text::Owned(s.to_owned())),
    }
}

/// `s` as a [`Text`]: borrowed from [`KNOWN_TEXTS`] when it is one of them.
pub fn text<S: AsRef<str> + Into<String>>(s: S) -> Text {
    let known = KNOWN_TEXTS.iter().find(|k| **k == s.as_ref());
    match known {
        Some(k) => Text::Borrowed(k),
        None => Text::Owned(s.into()),
    }
}

/// Data rate: a LoRa spreading factor and bandwidth, or an FSK bit rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRate {
    /// `"SF7BW125"`.
    Lora(Text),
    /// Bits per second, e.g. `50000`.
    Fsk(u32),
}

/// What `#[serde(untagged)]` accepted (a string, or an integer that fits a
/// `u32`), read directly: untagged buffered every value first, a third of
/// the cost of reading an `rxpk`.
impl<'de> Deserialize<'de> for DataRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DataRate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a LoRa data rate string or an FSK bit rate")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DataRate, E> {
                Ok(DataRate::Lora(text(v)))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<DataRate, E> {
                Ok(DataRate::Lora(text(v)))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DataRate, E> {
                u32::try_from(v)
                    .map(DataRate::Fsk)
                    .map_err(|_| E::custom(UNTAGGED_MISMATCH))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DataRate, E> {
                u32::try_from(v)
                    .map(DataRate::Fsk)
                    .map_err(|_| E::custom(UNTAGGED_MISMATCH))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The error `#[serde(untagged)]` gave for a `datr` of another type.
const UNTAGGED_MISMATCH: &str = "data did not match any variant of untagged enum DataRate";
